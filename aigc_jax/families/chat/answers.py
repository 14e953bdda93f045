"""A chat policy's answers to instructions (the shared cached decoder, stopping at <|end|>) and
the judge's verdicts on them."""
from __future__ import annotations

import collections

import jax
import numpy as np

from aigc_jax.decoding import sampling
from aigc_jax.decoding.samplers import SamplingSettings
from aigc_jax.families.chat import instructions as ins
from aigc_jax.families.chat.conversations import question_turns
from aigc_jax.families.chat.template import ChatTokenizer, render


def answer(model, params, tokenizer: ChatTokenizer, items: list, *, seed: int = 0, temperature: float = 0.0,
           top_p: float = 1.0, max_new_tokens: int = 48, system: bool = False, key=None) -> list:
    """[(response text, response token ids incl. <|end|> when it stopped)] per instruction (sampled
    with `key` when given, else with the key of `seed`)."""
    prompts = [render(tokenizer, question_turns(item, system), open_assistant=True).ids for item in items]
    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                stop_tokens=(tokenizer.end_id,))
    width = max(len(p) for p in prompts)
    width = -(-width // 32) * 32  # a few compiled prompt widths
    out = sampling.generate(model, params, prompts, jax.random.key(seed) if key is None else key, settings,
                              pad_to=width)
    results = []
    for row, length in zip(out.tokens, out.lengths):
        ids = row[:length].tolist()
        text_ids = ids[:-1] if ids and ids[-1] == tokenizer.end_id else ids
        results.append((tokenizer.decode(text_ids), ids))
    return results


def scores(items: list, responses: list) -> dict:
    """Accuracy by the judge (overall and per kind), the concise fraction and mean length."""
    correct = [ins.is_correct(item, text) for item, text in zip(items, responses)]
    by_kind = collections.defaultdict(list)
    for item, ok in zip(items, correct):
        by_kind[item.kind].append(ok)
    out = {"accuracy": float(np.mean(correct)),
           "concise": float(np.mean([ins.is_concise(i, t) for i, t in zip(items, responses)])),
           "mean_length": float(np.mean([len(t) for t in responses]))}
    out.update({f"accuracy_{kind}": float(np.mean(v)) for kind, v in sorted(by_kind.items())})
    return out
