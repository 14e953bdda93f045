"""2-D convolution as one matrix product over shifted copies of the input (im2col).

XLA on CPU runs small convolutions far below its matrix-product speed: the project's 32x32
digit classifier trained at 1.9 s a step with flax's nn.Conv (lax.conv_general_dilated) and
0.8 s with this form on the 2-core machine (same outputs to the last bit; the benchmark is in
the commit that introduced this file), and second-order gradients of lax convolutions inside a
conditional were ~50x slower still (StyleGAN2's lazy path-length term). On accelerators both
forms compile to matrix units; this one costs k^2 times the input's memory in patches.

`Conv` is a drop-in for flax's nn.Conv with SAME padding: the same parameter names, shapes
(kernel [k, k, in, out], bias [out]) and initialisers, so checkpoints move between the two.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """[N, H, W, I] * [k, k, I, O] -> [N, ceil(H / stride), ceil(W / stride), O] with SAME padding
    (as lax's: the total padding split with the smaller half before)."""
    k = kernel.shape[0]
    if kernel.shape[1] != k:
        raise ValueError(f"square kernels only, got {kernel.shape[:2]}")
    n, h, w, c = x.shape
    if kernel.shape[2] != c:
        raise ValueError(f"kernel expects {kernel.shape[2]} input channels, the input has {c}")
    if k == 1 and stride == 1:
        return x @ kernel[0, 0]
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h, pad_w = max((out_h - 1) * stride + k - h, 0), max((out_w - 1) * stride + k - w, 0)
    padded = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    span_h, span_w = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
    patches = jnp.concatenate([padded[:, i:i + span_h:stride, j:j + span_w:stride, :]
                               for i in range(k) for j in range(k)], axis=-1)
    return patches @ kernel.reshape(k * k * c, kernel.shape[-1])


class Conv(nn.Module):
    """nn.Conv(features, (k, k), strides=(s, s), padding="SAME") computed by `conv2d`."""
    features: int
    kernel_size: tuple = (3, 3)
    strides: Any = 1
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size[0] if isinstance(self.kernel_size, (tuple, list)) else self.kernel_size
        stride = self.strides[0] if isinstance(self.strides, (tuple, list)) else self.strides
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        y = conv2d(x, kernel, stride)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,))
        return y
