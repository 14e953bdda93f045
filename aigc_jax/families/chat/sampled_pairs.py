"""Preference pairs from the SFT model's own samples, ranked by the judge: the setting of
InstructGPT's reward model (labellers rank K responses sampled from the model for one prompt) and
of DPO (pairs y1, y2 ~ pi_SFT(.|x), labelled by people), with the program standing in for people.

For each instruction, `samples` responses are drawn at `temperature`; the judge ranks them
(correct and concise > correct but rambling > wrong: instructions.judge_rank). When the ranks
differ, the first best-ranked response is chosen against the first worst-ranked one: one pair per
instruction; instructions whose samples all share a rank give no pair (nothing to prefer)."""
from __future__ import annotations

import jax

from aigc_jax.families.chat import answers
from aigc_jax.families.chat.instructions import judge_rank


def ranked_pair(item, responses: list):
    """(chosen, rejected) among one instruction's responses, or None when all share a rank."""
    ranks = [judge_rank(item, r) for r in responses]
    best, worst = max(ranks), min(ranks)
    if best == worst:
        return None
    return responses[ranks.index(best)], responses[ranks.index(worst)]


def sampled_pool(chat, items: list, *, samples: int, temperature: float, seed: int, max_new_tokens: int,
                 batch: int) -> tuple:
    """([(item, chosen, rejected)], instructions sampled): `samples` responses per instruction
    from chat's policy, in batches of `batch` rows (the last padded with repeats: one compiled
    decoder), deterministic per seed."""
    rows = [item for item in items for _ in range(samples)]
    texts = []
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        padded = part + [part[0]] * (batch - len(part)) if len(rows) > batch else part
        key = jax.random.fold_in(jax.random.key(seed), 0x5A3 + start // batch)
        replies = answers.answer(chat.model, chat.params, chat.tokenizer, padded, key=key, temperature=temperature,
                                 max_new_tokens=max_new_tokens)
        texts += [text for text, _ in replies[:len(part)]]
    pool = []
    for i, item in enumerate(items):
        pair = ranked_pair(item, texts[i * samples:(i + 1) * samples])
        if pair is not None:
            pool.append((item, *pair))
    return pool, len(items)
