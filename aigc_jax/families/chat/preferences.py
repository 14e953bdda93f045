"""Preference pairs as token rows: for each instruction, the conversation with the chosen response
and the one with the rejected response (aigc_jax/families/chat/instructions.py ranks them by the
judge), the loss mask on the response tokens and their <|end|>."""
from __future__ import annotations

import numpy as np

from aigc_jax.families.chat import conversations, instructions as ins
from aigc_jax.families.chat.template import ChatTokenizer, render


def pair_rows(tokenizer: ChatTokenizer, items: list, rng: np.random.Generator, width: int, *, label_noise: float,
              system_prob: float) -> dict:
    """{chosen: rows, rejected: rows} (conversations.rows layout), row i of both one instruction."""
    chosen, rejected = [], []
    for item in items:
        turns = conversations.question_turns(item, rng.random() < system_prob)
        good, bad = ins.preference_pair(item, rng, label_noise)
        chosen.append(turns + [("assistant", good)])
        rejected.append(turns + [("assistant", bad)])
    return {"chosen": conversations.rows(tokenizer, chosen, width),
            "rejected": conversations.rows(tokenizer, rejected, width)}


def heldout_pairs(tokenizer: ChatTokenizer, items: list, seed: int, width: int) -> dict:
    """Fixed held-out pairs (no label noise, no system turn): one per held-out instruction."""
    return pair_rows(tokenizer, items, np.random.default_rng([seed, 0x9A1]), width, label_noise=0.0, system_prob=0.0)


def flat(pairs: dict) -> dict:
    """Chosen rows then rejected rows in one batch [2N, ...] (one forward pass for both)."""
    return {k: np.concatenate([pairs["chosen"][k], pairs["rejected"][k]]) for k in pairs["chosen"]}


def longest_pair(tokenizer: ChatTokenizer, pool: list, system: bool) -> int:
    """About the tokens of the longest pair conversation: the system turn (when there can be one),
    the longest prompt and the longest rambling answer (wrong answers are at most a few
    characters longer)."""
    prompt = max(pool, key=lambda i: len(i.prompt))
    answer = max(pool, key=lambda i: len(i.answer)).answer
    ramble = max(ins.RAMBLE_OPENINGS, key=len) + f" The answer is {answer}."
    turns = conversations.question_turns(prompt, system) + [("assistant", ramble)]
    return len(render(tokenizer, turns).ids) + 4
