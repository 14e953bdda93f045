"""A reward model's pairwise accuracy on held-out pairs of two kinds: judge-written pairs (what
its training evaluation reports) and pairs of the SFT policy's own samples ranked by the judge
(what PPO will show it: the policy's outputs, and their mistakes)."""
from __future__ import annotations

import jax
import numpy as np

from aigc_jax.families.chat import preferences, rm_task, sampled_pairs, stages


def ranked_right(rm, pairs: list, batch: int = 64) -> np.ndarray:
    """[N] bool: whether `rm` scores pair i's chosen response higher, for pairs [(item, chosen,
    rejected)] (no system turn; ties count as wrong): the reward model's training evaluation
    (rm_task.pair_losses on preferences.evaluation_pairs batches) on any pairs."""
    width = stages.row_width(max(preferences.pair_tokens(rm.tokenizer, i, g, b, False) for i, g, b in pairs),
                             rm.model.context_length)
    rows = preferences.pair_rows(rm.tokenizer, pairs, [False] * len(pairs), width)
    right = jax.jit(lambda p, b: rm_task.pair_losses(rm.model, p, b)[1])
    batches = preferences.evaluation_pairs(rows, batch)
    out = np.concatenate([np.asarray(right(rm.params, b))[np.asarray(b["pair_weight"]) > 0] for b in batches])
    return out.astype(bool)


def pairwise_accuracy(rm, pairs: list, batch: int = 64) -> float:
    return float(np.mean(ranked_right(rm, pairs, batch)))


def accuracy_by_kind(pairs: list, right: np.ndarray) -> dict:
    """{kind: (pairwise accuracy, pairs)} of ranked_right's verdicts on `pairs`."""
    kinds = sorted({item.kind for item, _, _ in pairs})
    out = {}
    for kind in kinds:
        picks = np.array([item.kind == kind for item, _, _ in pairs])
        out[kind] = (float(np.mean(right[picks])), int(picks.sum()))
    return out


def heldout_pair_sets(reference, items: list, seed: int, samples: int = 4) -> dict:
    """{"judge-written": one constructed pair per held-out instruction, "SFT samples": pairs from
    `samples` responses of the reference policy per instruction (temperature 1) ranked by the judge}."""
    sampled, _ = sampled_pairs.sampled_pool(reference, items, samples=samples, temperature=1.0, seed=seed,
                                            max_new_tokens=48, batch=256)
    return {"judge-written": preferences.heldout_written(items, seed), "SFT samples": sampled}
