"""Diagnostic: one StyleGAN2 network inside the DCGAN task, to tell which side of our StyleGAN2
fails on MNIST (experiments/results/stylegan.md, "Which network fails").

  SWAP=d python -m experiments.stylegan_swap --config=configs/dcgan.py:mnist --workdir=runs/swap_d ...
      DCGAN's generator against our ResidualDiscriminator;
  SWAP=g python -m experiments.stylegan_swap --config=configs/dcgan.py:mnist --workdir=runs/swap_g ...
      our StyleGenerator (per-pixel noise off: the DCGAN task passes no noise key) against DCGAN's
      discriminator.
Everything else (optimizer, loss, data, evaluation) is the DCGAN task's. Both networks at the
StyleGAN2 config's sizes (32 channels, w 128, 8 mapping layers).
"""
import os

import flax.linen as nn

from aigc_jax.families.gan import model as gan_model, task as gan_task
from aigc_jax.families.gan.stylegan_model import ResidualDiscriminator, StyleGenerator
from experiments import cli, train

_original = gan_model.build_models


class StyleGeneratorForDCGANTask(nn.Module):
    """The DCGAN task's generator interface (z, labels, train) around our StyleGenerator."""
    image_size: int
    channels: int

    @nn.compact
    def __call__(self, z, labels=None, *, train: bool):
        return StyleGenerator(image_size=self.image_size, channels=self.channels, z_dim=z.shape[-1], w_dim=128,
                              channel_max=32, use_noise=False)(z)


def swapped_models(model_config, data_shape):
    generator, discriminator = _original(model_config, data_shape)
    side = os.environ.get("SWAP", "")
    if side == "d":
        discriminator = ResidualDiscriminator(image_size=data_shape[0], channel_max=32, mbstd_group=4)
    elif side == "g":
        generator = StyleGeneratorForDCGANTask(image_size=data_shape[0], channels=data_shape[2])
    else:
        raise SystemExit(f"set SWAP=d or SWAP=g (got {side!r})")
    return generator, discriminator


if __name__ == "__main__":
    gan_task.build_models = swapped_models
    cli.run(train.main)
