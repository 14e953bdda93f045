"""Mode coverage of samples from a 2-D Gaussian mixture, as GAN papers measure it
(VEEGAN, Srivastava et al. 2017, sec. 5.1; PacGAN, Lin et al. 2018, sec. 5).

A generated sample is *high quality* if it lies within 3 standard deviations of its nearest
mode; *modes captured* counts the components whose mean is nearest to at least one
high-quality sample; *reverse KL* is KL(q || uniform) between the distribution q of the
high-quality samples over modes (their histogram, normalised) and the uniform distribution
over the K modes: sum_k q_k log(K q_k) = log K - H(q) (0 log 0 = 0). Missing modes enter
through the entropy; a run with no high-quality sample gets log K.
Evaluation steps return sums (over samples) that add across batches; the metrics finish them.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

HIGH_QUALITY_STDS = 3.0


def nearest_modes(samples: jax.Array, means: jax.Array, std: float) -> tuple[jax.Array, jax.Array]:
    """samples [N, 2], means [K, 2] -> (index of the nearest mean [N], its distance in stds [N])."""
    sq = jnp.sum(jnp.square(samples[:, None, :] - means[None, :, :]), axis=-1)  # [N, K]
    index = jnp.argmin(sq, axis=-1)
    return index, jnp.sqrt(jnp.min(sq, axis=-1)) / std


def mode_sums(samples: jax.Array, means: jax.Array, std: float, weight: jax.Array) -> dict:
    """Summable statistics of a batch: high-quality counts per mode [K], sample count, and the
    summed distance to the nearest mode (data units). weight [N] masks padding rows."""
    index, distance = nearest_modes(samples, means, std)
    high_quality = (distance < HIGH_QUALITY_STDS).astype(jnp.float32) * weight
    counts = jnp.zeros(means.shape[0], jnp.float32).at[index].add(high_quality)
    return {"mode_counts": counts, "count": jnp.sum(weight),
            "distance_sum": jnp.sum(distance * std * weight)}


def mode_collapse_metrics(mode_counts: np.ndarray, num_samples: float) -> dict:
    """From the high-quality histogram [K] and the number of samples: the papers' three metrics."""
    counts = np.asarray(mode_counts, np.float64)
    num_modes = len(counts)
    high_quality = counts.sum()
    if high_quality > 0:
        q = counts / high_quality
        nonzero = q[q > 0]
        reverse_kl = float(np.sum(nonzero * np.log(num_modes * nonzero)))
    else:
        reverse_kl = math.log(num_modes)
    return {"modes_captured": float(np.count_nonzero(counts)),
            "high_quality_percent": 100.0 * float(high_quality) / max(float(num_samples), 1.0),
            "reverse_kl": reverse_kl}
