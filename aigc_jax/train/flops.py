"""Peak FLOP/s per device kind, for model FLOP utilisation (MFU).

Dense bfloat16 peaks from the vendors' data sheets, per chip. A CPU has no fixed peak:
set train.peak_flops_per_device (experiments/bench_lm.py measures one), else MFU is not
reported. Override any entry the same way.
"""
from __future__ import annotations

import jax

PEAK_FLOPS_BY_DEVICE_KIND = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "A10G": 70e12,
    "V100": 125e12,
    "TPU v6": 918e12,
    "TPU v5p": 459e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v4": 275e12,
    "TPU v3": 123e12,
}


def peak_flops_per_device(override: float = 0.0, device=None) -> float:
    """The configured peak if set, else the table's entry for this device kind, else 0."""
    if override > 0:
        return float(override)
    kind = (device or jax.devices()[0]).device_kind
    for name, peak in PEAK_FLOPS_BY_DEVICE_KIND.items():
        if name.lower() in kind.lower():
            return peak
    return 0.0
