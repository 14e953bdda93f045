"""Training and evaluation conversations from the checkable instructions, as fixed-width token rows.

An SFT conversation: an optional system turn (probability `system_prob`), optionally an earlier
exchange (another training instruction and its demonstration, probability `multi_turn_prob`),
then the instruction and its demonstration (wrong with probability `error_rate`). Each
conversation is one row of `width + 1` tokens, padded with <|end|> outside the loss mask:
inputs are the first `width`, targets the last `width`.
"""
from __future__ import annotations

import numpy as np

from aigc_jax.families.chat import instructions as ins
from aigc_jax.families.chat.template import ChatTokenizer, render

SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."


def question_turns(instruction: ins.Instruction, system: bool = False, history: tuple = ()) -> list:
    turns = [("system", SYSTEM_PROMPT)] if system else []
    return turns + list(history) + [("user", instruction.prompt)]


def sft_conversation(instruction, pool: list, rng: np.random.Generator, *, error_rate: float, system_prob: float,
                     multi_turn_prob: float) -> list:
    history = ()
    if rng.random() < multi_turn_prob:
        earlier = pool[rng.integers(len(pool))]
        history = (("user", earlier.prompt), ("assistant", ins.demonstration(earlier, rng, error_rate)))
    turns = question_turns(instruction, rng.random() < system_prob, history)
    return turns + [("assistant", ins.demonstration(instruction, rng, error_rate))]


def rows(tokenizer: ChatTokenizer, conversations: list, width: int) -> dict:
    """{inputs, targets [N, width] int32, mask [N, width] bool (loss on targets)}."""
    rendered = [render(tokenizer, turns) for turns in conversations]
    return pack(rendered, width, tokenizer.end_id)


def pack(rendered: list, width: int, pad_id: int) -> dict:
    longest = max(len(r.ids) for r in rendered)
    if longest > width + 1:
        raise ValueError(f"a conversation of {longest} tokens does not fit the model's context of {width} "
                         f"(+1 for the last target)")
    ids = np.full((len(rendered), width + 1), pad_id, np.int32)
    mask = np.zeros((len(rendered), width + 1), bool)
    for i, r in enumerate(rendered):
        ids[i, :len(r.ids)] = r.ids
        mask[i, :len(r.ids)] = r.loss_mask
    return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "mask": mask[:, 1:]}


def longest_conversation(tokenizer: ChatTokenizer, pool: list, multi_turn: bool) -> int:
    """About the tokens of the longest SFT conversation the pool can make: the system turn, the
    two longest instructions (the second as the earlier exchange when multi_turn) and answers."""
    by_length = sorted(pool, key=lambda i: len(i.prompt) + len(i.answer), reverse=True)[:2]
    if len(by_length) == 1:
        by_length = by_length * 2
    history = (("user", by_length[1].prompt), ("assistant", by_length[1].answer)) if multi_turn else ()
    turns = question_turns(by_length[0], True, history)
    # Wrong demonstrations can be a few characters longer than right ones (a carried digit).
    return len(render(tokenizer, turns + [("assistant", by_length[0].answer)]).ids) + 4
