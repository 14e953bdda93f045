"""Variational autoencoder (aigc_jax/families/vae/).

Variants (`--config=configs/vae.py:VARIANT`):
  (none)    MLP encoder and decoder (2 ReLU layers of 256), latent 8, Bernoulli decoder on
            scikit-learn's 8x8 digits binarised at 0.5; 3000 Adam steps of 128 images.
  conv      the convolutional encoder/decoder (two stride-2 3x3 convolutions, 32 and 64 channels).
  gaussian  a Gaussian decoder (mean and floored standard deviation) on grey levels (no binarisation).
  mnist     MNIST from an IDX file (default: the shared t10k images, 8,000 train / 2,000 test after
            the fixed split), stochastically binarised, latent 16, 512 hidden; set data.path for yours.
  tiny      a few steps of a tiny model (tests).
Variants combine with commas, e.g. `:mnist,conv`.
"""
import ml_collections

from configs import common

MNIST_IMAGES = "../shared/data/mnist/t10k-images-idx3-ubyte.gz"


def get_config(arg=None):
    config = common.base("vae")

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "digits"  # embedded default; ignored when data.path is set
    config.data.path = ""  # an IDX (MNIST format, optionally .gz) or NPZ image file
    config.data.test_fraction = 0.2  # the fixed split's last 20% is the test set
    config.data.binarize = "threshold"  # threshold (x >= 0.5) | stochastic (Bernoulli, seeded) | none

    config.model = ml_collections.ConfigDict()
    config.model.kind = "mlp"  # mlp | conv
    config.model.decoder = "bernoulli"  # bernoulli (binary images) | gaussian (grey levels)
    config.model.latent_dim = 8
    config.model.hidden_dim = 256
    config.model.num_layers = 2  # ReLU layers in the MLP encoder and decoder each
    config.model.conv_channels = 32  # conv kind: channels of the first convolution (the second has twice)
    config.model.min_std = 0.01  # gaussian decoder: floor of the per-pixel standard deviation

    config.loss = ml_collections.ConfigDict()
    config.loss.beta = 1.0  # weight of the KL term (beta-VAE); 1 is the ELBO

    config.optimizer = common.optimizer()

    config.train.num_steps = 3000
    config.train.batch_size = 128
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000

    config.eval.iwae_samples = 100  # k of the IWAE bound
    config.eval.num_examples = 0  # test images to evaluate; 0 = all
    config.eval.grid_samples = 64  # prior samples in each samples/step_*.png
    config.eval.interpolation_steps = 8

    for variant in (arg or "").split(","):
        apply_variant(config, variant)
    return config


def apply_variant(config, variant):
    if variant == "":
        return
    if variant == "conv":
        config.model.kind = "conv"
    elif variant == "gaussian":
        config.model.decoder = "gaussian"
        config.data.binarize = "none"
    elif variant == "mnist":
        config.data.path = MNIST_IMAGES
        config.data.binarize = "stochastic"
        config.model.update(latent_dim=16, hidden_dim=512)
        config.train.update(num_steps=5000, eval_every=2500, checkpoint_every=2500)
    elif variant == "tiny":
        config.model.update(latent_dim=2, hidden_dim=16, num_layers=1, conv_channels=4)
        config.train.update(num_steps=20, batch_size=16, log_every=5, eval_every=10, checkpoint_every=10)
        config.optimizer.update(warmup_steps=2)
        config.eval.update(batch_size=16, iwae_samples=8, num_examples=32, grid_samples=4, interpolation_steps=3)
    else:
        raise ValueError(f"unknown vae variant {variant!r}; expected conv, gaussian, mnist or tiny "
                         f"(several may be joined with commas, e.g. mnist,conv)")
