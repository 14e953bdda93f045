"""Random numbers on CPU compiled as straight-line code instead of a loop.

JAX lowers its threefry2x32 hash (behind every jax.random call) on CPU as a five-iteration loop
and on GPU and TPU as the unrolled rounds. With jax 0.10.2 on the project's 2-core CPU (beside
two training runs), XLA took about 3 s to compile each such loop however small the array, 0.3 s
unrolled; a 4M-element normal draw ran in 46 ms unrolled against 190 ms. Programs with many
draws gain most (a tiny StyleGAN2's initialisation compiled in 12 s instead of 27-33 s; the
family contract's jit tests, one row per family, in 439 s instead of 587 s cold); one program
lost: the tiny StyleGAN2 train step, whose draws sit inside second-order gradients, compiled in
121-139 s against 96-101 s. The two lowerings do the same uint32 arithmetic, so the bits drawn
are identical (tests/test_threefry_cpu.py): this changes compile and run time, never a number.

`use_unrolled_lowering()` registers JAX's own unrolled rule for the CPU platform. It relies on
JAX internals; where they are missing (another JAX version) it changes nothing and says so by
returning False.
"""
from __future__ import annotations

_applied = False


def use_unrolled_lowering() -> bool:
    """Lowers threefry2x32 on CPU as unrolled rounds from now on; True when in effect."""
    global _applied
    if _applied:
        return True
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32
        rule = threefry2x32._threefry2x32_lowering_rule
        primitive = threefry2x32.threefry2x32_p
    except (ImportError, AttributeError):
        return False
    mlir.register_lowering(primitive, rule, platform="cpu")
    _applied = True
    return True
