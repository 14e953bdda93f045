"""Preference pairs as token rows: for each instruction, the conversation with the chosen response
and the one with the rejected response, the loss mask on the response tokens and their <|end|>.

Sources of training pairs (`data.pairs`):
  constructed  the judge writes both responses (instructions.preference_pair: correct beats wrong,
               concise beats rambling), whatever the policy would say;
  sampled      InstructGPT's comparisons and DPO's setting: responses sampled from the SFT model
               itself, ranked by the judge (sampled_pairs.py), so the pairs hold the model's own
               mistakes;
  mixed        half of every batch sampled pairs, half judge-written ones (a finite pool of the
               policy's contrasts, and fresh written pairs that do not run out).
Held-out pairs (the evaluation of the reward model and DPO's implicit reward) are constructed in
both cases, one per held-out instruction, so the two sources are scored on the same pairs."""
from __future__ import annotations

import numpy as np

from aigc_jax.config import ConfigError
from aigc_jax.families.chat import conversations, instructions as ins, sampled_pairs, stages
from aigc_jax.families.chat.template import ChatTokenizer, render
from aigc_jax.train.eval_batches import padded_batches


def pair_rows(tokenizer: ChatTokenizer, pairs: list, system: list, width: int) -> dict:
    """{chosen: rows, rejected: rows} (conversations.rows layout) of pairs [(item, chosen text,
    rejected text)], row i of both one pair; system[i]: the prompt opens with the system turn."""
    def conversations_of(pick: int) -> list:
        return [conversations.question_turns(pair[0], s) + [("assistant", pair[pick])] for pair, s in zip(pairs, system)]
    return {"chosen": conversations.rows(tokenizer, conversations_of(1), width),
            "rejected": conversations.rows(tokenizer, conversations_of(2), width)}


def constructed_pairs(items: list, rng: np.random.Generator, *, label_noise: float, system_prob: float) -> tuple:
    """(pairs, system flags): one judge-written pair per instruction."""
    pairs, system = [], []
    for item in items:
        system.append(rng.random() < system_prob)
        pairs.append((item, *ins.preference_pair(item, rng, label_noise)))
    return pairs, system


def heldout_written(items: list, seed: int) -> list:
    """The fixed held-out pairs [(item, chosen, rejected)]: one judge-written pair per held-out
    instruction, no label noise (shown without a system turn)."""
    return constructed_pairs(items, np.random.default_rng([seed, 0x9A1]), label_noise=0.0, system_prob=0.0)[0]


def heldout_pairs(tokenizer: ChatTokenizer, items: list, seed: int, width: int) -> dict:
    """Rows of the fixed held-out pairs (heldout_written)."""
    return pair_rows(tokenizer, heldout_written(items, seed), [False] * len(items), width)


def flat(pairs: dict) -> dict:
    """Chosen rows then rejected rows in one batch [2N, ...] (one forward pass for both)."""
    return {k: np.concatenate([pairs["chosen"][k], pairs["rejected"][k]]) for k in pairs["chosen"]}


def pair_tokens(tokenizer: ChatTokenizer, item, chosen: str, rejected: str, system: bool) -> int:
    turns = conversations.question_turns(item, system)
    return max(len(render(tokenizer, turns + [("assistant", r)]).ids) for r in (chosen, rejected))


def longest_pair(tokenizer: ChatTokenizer, pool: list, system: bool) -> int:
    """About the tokens of the longest constructed pair: the system turn (when there can be one),
    the longest prompt and the longest rambling answer (wrong answers are at most a few
    characters longer)."""
    prompt = max(pool, key=lambda i: len(i.prompt))
    answer = max(pool, key=lambda i: len(i.answer)).answer
    ramble = max(ins.RAMBLE_OPENINGS, key=len) + f" The answer is {answer}."
    return pair_tokens(tokenizer, prompt, ramble, ramble, system) + 4


def training_pairs(config, tokenizer: ChatTokenizer, train_items: list, width: int, salt: int, pool=None):
    """train_batch(step) of a pair stage: train.batch_size pairs, a pure function of (seed, step)
    (salt keeps the stages' draws apart), flat (chosen, then rejected). Without `pool`, judge-written
    pairs of training instructions; with it, pairs drawn from the pool [(item, chosen, rejected)],
    their order swapped with probability data.label_noise; with it and data.pairs='mixed', the
    first half of the batch from the pool, the rest judge-written."""
    d, size = config.data, config.train.batch_size
    from_pool = 0 if pool is None else size // 2 if d.pairs == "mixed" else size

    def train_batch(step: int) -> dict:
        rng = np.random.default_rng([config.seed, step, salt])
        pairs, system = [], []
        for i in rng.integers(len(pool), size=from_pool) if from_pool else []:
            item, good, bad = pool[i]
            system.append(rng.random() < d.system_prob)
            pairs.append((item, bad, good) if rng.random() < d.label_noise else (item, good, bad))
        items = [train_items[i] for i in rng.integers(len(train_items), size=size - from_pool)]
        written, written_system = constructed_pairs(items, rng, label_noise=d.label_noise, system_prob=d.system_prob)
        return flat(pair_rows(tokenizer, pairs + written, system + written_system, width))
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


def pair_data(config, sft, train_items: list, heldout: list, salt: int) -> tuple:
    """What the reward model and DPO train and evaluate on: (train_batch, eval batches, a line for
    the run's description). `sft` is the SFT run (its tokenizer; its policy samples the pool)."""
    d, tokenizer, model = config.data, sft.tokenizer, sft.model
    tokens = longest_pair(tokenizer, train_items + heldout, d.system_prob > 0)
    pool = None
    if d.pairs in ("sampled", "mixed"):
        pool, made = sampled_pairs.sampled_pool(sft, train_items[:d.pair_instructions], samples=d.pair_samples,
                                                temperature=d.pair_temperature, seed=config.seed,
                                                max_new_tokens=config.eval.max_new_tokens, batch=d.pair_batch,
                                                pairing=d.pairing)
        if not pool:
            raise ConfigError(f"data.pairs={d.pairs!r}: none of the {made} instructions' {d.pair_samples} "
                              "samples differ in the judge's rank; raise data.pair_samples or data.pair_temperature")
        tokens = max(tokens, max(pair_tokens(tokenizer, i, g, b, d.system_prob > 0) for i, g, b in pool))
        source = (f"{len(pool)} pairs ({d.pairing}) from {d.pair_samples} samples (temperature "
                  f"{d.pair_temperature}) of the SFT model on each of {made} training instructions, ranked by the judge"
                  + (", half of each batch; the other half judge-written pairs" if d.pairs == "mixed" else ""))
    else:
        source = f"judge-written pairs of {len(train_items)} training instructions"
    width = stages.row_width(tokens, model.context_length)
    train_batch = training_pairs(config, tokenizer, train_items, width, salt, pool)
    eval_set = evaluation_pairs(heldout_pairs(tokenizer, heldout, config.seed, width), config.eval.batch_size)
    return train_batch, eval_set, f"{source}, label noise {d.label_noise}; {len(heldout)} held-out pairs"
