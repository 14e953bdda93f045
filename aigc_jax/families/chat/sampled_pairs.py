"""Preference pairs from the SFT model's own samples, ranked by the judge: the setting of
InstructGPT's reward model (labellers rank K responses sampled from the model for one prompt) and
of DPO (pairs y1, y2 ~ pi_SFT(.|x), labelled by people), with the program standing in for people.

For each instruction, `samples` responses are drawn at `temperature`; the judge ranks them
(correct and concise > correct but rambling > wrong: instructions.judge_rank). Instructions whose
samples all share a rank give no pair (nothing to prefer). Otherwise, by `pairing`:
  extremes  the first best-ranked response against the first worst-ranked one: one pair;
  all       every pair of distinct responses whose ranks differ, better one chosen: InstructGPT's
            K-choose-2 comparisons of one ranking (up to 4 pairs from 4 samples split 2/2),
            so a pool of the same samples holds more of the policy's contrasts.

The sampled texts are cached (~/.cache/aigc_jax/chat_samples, or $AIGC_JAX_CHAT_SAMPLES; "off"
turns it off) under a hash of the policy (its module and parameters), the prompts and the
sampling settings, so the reward model and DPO of one SFT run sample its pool once. The texts are
a pure function of that key; an unreadable or mismatched cache file is reported and sampled again."""
from __future__ import annotations

import hashlib
import os
import warnings

import jax
import numpy as np

from aigc_jax import files
from aigc_jax.families.chat import answers
from aigc_jax.families.chat.instructions import judge_rank

PAIRINGS = ("extremes", "all")


def ranked_pair(item, responses: list):
    """(chosen, rejected) among one instruction's responses, or None when all share a rank."""
    ranks = [judge_rank(item, r) for r in responses]
    best, worst = max(ranks), min(ranks)
    if best == worst:
        return None
    return responses[ranks.index(best)], responses[ranks.index(worst)]


def ranked_pairs(item, responses: list, pairing: str = "extremes") -> list:
    """The (chosen, rejected) pairs of one instruction's responses under `pairing` (see above);
    "all" counts each pair of distinct texts once, in first-seen order."""
    if pairing == "extremes":
        pair = ranked_pair(item, responses)
        return [] if pair is None else [pair]
    if pairing != "all":
        raise ValueError(f"unknown pairing {pairing!r}; expected one of {PAIRINGS}")
    distinct = list(dict.fromkeys(responses))
    ranks = [judge_rank(item, r) for r in distinct]
    return [(a, b) for i, a in enumerate(distinct) for j, b in enumerate(distinct) if ranks[i] > ranks[j]]


def sampled_pool(chat, items: list, *, samples: int, temperature: float, seed: int, max_new_tokens: int,
                 batch: int, pairing: str = "extremes") -> tuple:
    """([(item, chosen, rejected)], instructions sampled): `samples` responses per instruction
    from chat's policy, in batches of `batch` rows (the last padded with repeats: one compiled
    decoder), deterministic per seed."""
    rows = [item for item in items for _ in range(samples)]
    path = cache_path(chat, rows, temperature, seed, max_new_tokens, batch)
    texts = cached_texts(path, len(rows)) if path else None
    if texts is None:
        texts = sample_texts(chat, rows, temperature=temperature, seed=seed, max_new_tokens=max_new_tokens,
                             batch=batch)
        if path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            files.write_json(path, texts)
    return [(item, *pair) for i, item in enumerate(items)
            for pair in ranked_pairs(item, texts[i * samples:(i + 1) * samples], pairing)], len(items)


def cache_dir() -> str:
    """Where sampled texts are kept ("" when $AIGC_JAX_CHAT_SAMPLES is "off")."""
    chosen = os.environ.get("AIGC_JAX_CHAT_SAMPLES", "")
    if chosen.lower() == "off":
        return ""
    return chosen or os.path.join(os.path.expanduser("~"), ".cache", "aigc_jax", "chat_samples")


def cache_path(chat, rows: list, temperature: float, seed: int, max_new_tokens: int, batch: int) -> str:
    directory = cache_dir()
    if not directory:
        return ""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(chat.params):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    digest.update(repr(([item.prompt for item in rows], temperature, seed, max_new_tokens, batch,
                        chat.tokenizer.vocab_size, repr(chat.model))).encode())
    return os.path.join(directory, f"samples_{digest.hexdigest()[:24]}.json")


def cached_texts(path: str, count: int):
    """The cached texts of `path`, or None (with a warning when the file exists but is unusable)."""
    if not os.path.exists(path):
        return None
    try:
        texts = files.read_json(path, "sampled-texts cache file")
        if not isinstance(texts, list) or len(texts) != count or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"it holds no list of {count} texts")
        return texts
    except (OSError, ValueError) as e:
        warnings.warn(f"sampled-texts cache file {path!r} is unusable ({e}); sampling again")
        return None


def sample_texts(chat, rows: list, *, temperature: float, seed: int, max_new_tokens: int, batch: int) -> list:
    """One sampled response text per row, in batches of `batch` rows (the last padded with
    repeats: one compiled decoder), deterministic per seed."""
    texts = []
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        padded = part + [part[0]] * (batch - len(part)) if len(rows) > batch else part
        key = jax.random.fold_in(jax.random.key(seed), 0x5A3 + start // batch)
        replies = answers.answer(chat.model, chat.params, chat.tokenizer, padded, key=key, temperature=temperature,
                                 max_new_tokens=max_new_tokens)
        texts += [text for text, _ in replies[:len(part)]]
    return texts
