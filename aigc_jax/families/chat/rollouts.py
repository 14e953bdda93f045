"""PPO's rollouts, made on the host from the current policy (the loop's host_batch): prompts of
training instructions, responses sampled by the shared cached decoder up to <|end|> or
`max_response` tokens, laid out as token rows with the response masked, and the judge's verdict
on each response (logged beside the reward model's score, never used for training)."""
from __future__ import annotations

import jax
import numpy as np

from aigc_jax.decoding import sampling
from aigc_jax.decoding.samplers import SamplingSettings
from aigc_jax.families.chat import instructions as ins
from aigc_jax.families.chat.conversations import question_turns
from aigc_jax.families.chat.template import ChatTokenizer, render


def prompt_width(tokenizer: ChatTokenizer, pool: list, system: bool) -> int:
    """The padded prompt width of every rollout call (one compiled decoder): the longest prompt,
    rounded up to a multiple of 32."""
    longest = max(len(render(tokenizer, question_turns(i, system), open_assistant=True).ids) for i in pool)
    return -(-longest // 32) * 32


def rollout_rows(tokenizer: ChatTokenizer, prompts: list, responses: list, width: int) -> dict:
    """{inputs, targets, mask [N, width]}: prompt then response, the mask on the response tokens."""
    n = len(prompts)
    ids = np.full((n, width + 1), tokenizer.end_id, np.int32)
    mask = np.zeros((n, width + 1), bool)
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        total = len(prompt) + len(response)
        if total > width + 1:
            raise ValueError(f"a rollout of {total} tokens does not fit the context {width} (+1)")
        ids[row, :len(prompt)] = prompt
        ids[row, len(prompt):total] = response
        mask[row, len(prompt):total] = True
    return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "mask": mask[:, 1:]}


def make_rollouts(model, params, tokenizer: ChatTokenizer, items: list, key, *, width: int, prompt_pad: int,
                  max_response: int, temperature: float, system: list) -> dict:
    """Rows of sampled responses to `items` (system[i]: whether item i's prompt opens with the
    system turn), plus `correct` [N] (the judge), `judge_score` [N] (the judge's rank / 2: 1
    correct and concise, 0.5 correct but rambling, 0 wrong) and `stopped` [N] (ended with <|end|>)."""
    prompts = [render(tokenizer, question_turns(item, s), open_assistant=True).ids for item, s in zip(items, system)]
    settings = SamplingSettings(max_new_tokens=max_response, temperature=temperature,
                                stop_tokens=(tokenizer.end_id,))
    out = sampling.generate(model, params, prompts, key, settings, pad_to=prompt_pad)
    responses, correct, rank, stopped = [], [], [], []
    for item, row, length in zip(items, out.tokens, out.lengths):
        response = row[:length].tolist()
        ended = bool(response) and response[-1] == tokenizer.end_id
        text = tokenizer.decode(response[:-1] if ended else response)
        responses.append(response)
        correct.append(ins.is_correct(item, text))
        rank.append(ins.judge_rank(item, text))
        stopped.append(ended)
    batch = rollout_rows(tokenizer, prompts, responses, width)
    batch.update(correct=np.asarray(correct, np.float32), judge_score=np.asarray(rank, np.float32) / 2,
                 stopped=np.asarray(stopped, np.float32))
    return batch


def rollout_key(seed: int, step: int):
    return jax.random.fold_in(jax.random.key(seed), step)
