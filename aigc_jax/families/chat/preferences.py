"""Preference pairs as token rows: for each instruction, the conversation with the chosen response
and the one with the rejected response (aigc_jax/families/chat/instructions.py ranks them by the
judge), the loss mask on the response tokens and their <|end|>."""
from __future__ import annotations

import numpy as np

from aigc_jax.families.chat import conversations, instructions as ins
from aigc_jax.families.chat.template import ChatTokenizer, render
from aigc_jax.train.eval_batches import padded_batches


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


def training_pairs(config, tokenizer: ChatTokenizer, train_items: list, width: int, salt: int):
    """train_batch(step) of a pair stage: train.batch_size pairs of training instructions, a pure
    function of (seed, step) (salt keeps the stages' draws apart), flat (chosen, then rejected)."""
    d = config.data

    def train_batch(step: int) -> dict:
        rng = np.random.default_rng([config.seed, step, salt])
        items = [train_items[i] for i in rng.integers(len(train_items), size=config.train.batch_size)]
        return flat(pair_rows(tokenizer, items, rng, width, label_noise=d.label_noise, system_prob=d.system_prob))
    return train_batch


def evaluation_pairs(pairs: dict, batch_size: int) -> list:
    """Evaluation batches of whole pairs: each batch's chosen rows then its rejected rows, with a
    per-pair weight (0 for padding pairs)."""
    padded = padded_batches({"chosen_" + k: v for k, v in pairs["chosen"].items()}
                            | {"rejected_" + k: v for k, v in pairs["rejected"].items()}, batch_size)
    out = []
    for b in padded:
        keys = [k[len("chosen_"):] for k in b if k.startswith("chosen_")]
        rows = {k: np.concatenate([b["chosen_" + k], b["rejected_" + k]]) for k in keys}
        rows["pair_weight"] = b["weight"]
        out.append(rows)
    return out
