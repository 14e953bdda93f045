"""A reward model's pairwise accuracy on held-out pairs of two kinds: judge-written pairs (what
its training evaluation reports) and pairs of the SFT policy's own samples ranked by the judge
(what PPO will show it: the policy's outputs, and their mistakes)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.families.chat import preferences, reward, sampled_pairs, stages


def pairwise_accuracy(rm, pairs: list, batch: int = 64) -> float:
    """Fraction of pairs [(item, chosen, rejected)] whose chosen response `rm` scores higher
    (no system turn; ties count as wrong)."""
    tok = rm.tokenizer
    width = stages.row_width(max(preferences.pair_tokens(tok, i, g, b, False) for i, g, b in pairs),
                             rm.model.context_length)
    rows = preferences.pair_rows(tok, pairs, [False] * len(pairs), width)
    score = jax.jit(lambda p, x, m: reward.rewards(rm.model, p, x, m))

    def scores(part: dict) -> np.ndarray:
        out, n = [], len(part["inputs"])
        for start in range(0, n, batch):
            x, m = part["inputs"][start:start + batch], part["mask"][start:start + batch]
            pad = batch - len(x)  # one compiled shape
            x, m = np.pad(x, ((0, pad), (0, 0))), np.pad(m, ((0, pad), (0, 0)))
            out.append(np.asarray(score(rm.params, jnp.asarray(x), jnp.asarray(m)))[:batch - pad])
        return np.concatenate(out)
    return float(np.mean(scores(rows["chosen"]) > scores(rows["rejected"])))


def heldout_pair_sets(reference, items: list, seed: int, samples: int = 4) -> dict:
    """{"judge-written": one constructed pair per held-out instruction, "SFT samples": pairs from
    `samples` responses of the reference policy per instruction (temperature 1) ranked by the judge}."""
    written, _ = preferences.constructed_pairs(items, np.random.default_rng([seed, 0x9A1]), label_noise=0.0,
                                               system_prob=0.0)
    sampled, _ = sampled_pairs.sampled_pool(reference, items, samples=samples, temperature=1.0, seed=seed,
                                            max_new_tokens=48, batch=256)
    return {"judge-written": written, "SFT samples": sampled}
