"""The unrolled threefry lowering on CPU (aigc_jax/threefry_cpu.py): the same bits as JAX's own
rolled loop, compiled without a loop."""
import jax
import numpy as np

from aigc_jax import threefry_cpu


def draws(key):
    return {"normal": jax.random.normal(key, (5, 7, 3)), "bits": jax.random.bits(key, (33,)),
            "split": jax.random.key_data(jax.random.split(key, 4)), "uniform": jax.random.uniform(key, (2, 9))}


def test_the_unrolled_lowering_draws_the_rolled_loops_bits_without_a_loop():
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32
    assert threefry_cpu.use_unrolled_lowering()  # the test session's set-up has applied it already
    key = jax.random.key(7)
    unrolled = jax.jit(lambda k: draws(k))
    assert "while" not in unrolled.lower(key).compile().as_text()
    got = jax.device_get(unrolled(key))
    mlir.register_lowering(threefry2x32.threefry2x32_p, threefry2x32._threefry2x32_cpu_lowering_rule, platform="cpu")
    try:
        rolled = jax.jit(lambda k: draws(k))  # a new function: traced and lowered afresh, by JAX's CPU rule
        assert "while" in rolled.lower(key).compile().as_text()
        want = jax.device_get(rolled(key))
    finally:
        threefry_cpu._applied = False
        assert threefry_cpu.use_unrolled_lowering()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
