"""The im2col convolution (aigc_jax/nn/conv.py) against XLA's own, and as a drop-in for nn.Conv."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from aigc_jax.nn.conv import Conv, conv2d


@pytest.mark.parametrize("size,kernel,stride", [(8, 3, 1), (7, 3, 2), (8, 4, 2), (9, 1, 1), (6, 5, 3)])
def test_conv2d_equals_lax_same_padding(size, kernel, stride):
    x = jax.random.normal(jax.random.key(0), (2, size, size + 1, 3))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 4))
    want = jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    got = conv2d(x, w, stride)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_conv_module_takes_nn_conv_parameters_and_gives_its_outputs():
    x = jax.random.normal(jax.random.key(2), (3, 10, 10, 2))
    reference = nn.Conv(5, (3, 3), strides=(2, 2))
    params = reference.init(jax.random.key(3), x)
    ours = Conv(5, (3, 3), strides=(2, 2))
    assert jax.tree_util.tree_structure(ours.init(jax.random.key(3), x)) == jax.tree_util.tree_structure(params)
    np.testing.assert_allclose(np.asarray(ours.apply(params, x)), np.asarray(reference.apply(params, x)), atol=1e-5)
    with pytest.raises(ValueError, match="kernel expects 3 input channels, the input has 2"):
        conv2d(x, np.zeros((3, 3, 3, 1), np.float32))
