"""RealNVP normalising flow (aigc_jax/families/flow/).

Variants (`--config=configs/realnvp.py:VARIANT`):
  (none)        multi-scale RealNVP on scikit-learn's 8x8 digits (17 grey levels, uniformly
                dequantised; bits per dimension): 2 scales, 3 couplings per stage, residual s/t
                networks of 1 block x 32 channels; 2000 AdamW steps of 64 images (weight decay
                0.05: with 1,438 training images a wider or longer run overfits).
  moons         the 2-D flow (8 alternating couplings, MLP s/t networks of 2 x 128) on two moons,
                fresh batches of 256 points each step; nats per point and density heat maps.
                Other 2-D densities: --config.data.dataset=circles|spirals|checkerboard.
  mnist         MNIST from an IDX file (default: the shared t10k images), 256 levels, 3 scales, 64 channels.
  tiny          a few steps of a tiny image model (tests); combine with moons for a tiny 2-D run.
Variants combine with commas, e.g. `:moons,tiny`.
"""
import ml_collections

from configs import common

MNIST_IMAGES = "../shared/data/mnist/t10k-images-idx3-ubyte.gz"


def get_config(arg=None):
    config = common.base("flow")

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "digits"  # digits (images) | moons | circles | spirals | checkerboard (2-D)
    config.data.path = ""  # an IDX (MNIST format, optionally .gz) or NPZ image file; overrides dataset
    config.data.test_fraction = 0.2  # images: the fixed split's last 20% is the test set
    config.data.num_levels = 0  # images: grey levels L for dequantisation; 0 infers (17 digits, 256 8-bit)
    config.data.noise = 0.1  # 2-D: standard deviation of the Gaussian noise (not used by checkerboard)
    config.data.num_test = 2000  # 2-D: size of the fixed test sample; images: at most this many test images

    config.model = ml_collections.ConfigDict()
    config.model.num_couplings = 8  # 2-D: alternating affine couplings
    config.model.hidden_dim = 128  # 2-D: width of the MLP s/t networks
    config.model.num_hidden_layers = 2  # 2-D: hidden layers of the MLP s/t networks
    config.model.num_scales = 2  # images: scales of the multi-scale architecture
    config.model.couplings_per_scale = 3  # images: checkerboard (and channel) couplings per stage
    config.model.hidden_channels = 32  # images: channels of the residual s/t networks
    config.model.num_blocks = 1  # images: residual blocks per s/t network
    config.model.log_scale_bound = 3.0  # |log-scale| < bound, by bound * tanh(raw / bound)
    config.model.alpha = 0.05  # images: logit transform logit(alpha + (1 - 2 alpha) x)

    config.optimizer = common.optimizer()
    config.optimizer.min_learning_rate = 1e-5
    config.optimizer.weight_decay = 0.05  # decoupled (AdamW), matrices and kernels only
    config.optimizer.grad_clip = 100.0  # global norm; guards against rare spikes; 0 turns clipping off

    config.train.num_steps = 2000
    config.train.checkpoint_every = 1000

    config.eval.grid_samples = 64  # images: samples in each samples/step_*.png; 2-D: points in the scatter
    config.eval.temperature = 1.0  # images: samples use z ~ N(0, T^2 I)
    config.eval.plot_extent = 3.0  # 2-D: the heat map covers [-extent, extent]^2
    config.eval.grid_resolution = 200  # 2-D: heat-map cells per axis

    for variant in (arg or "").split(","):
        apply_variant(config, variant)
    return config


def apply_variant(config, variant):
    if variant == "":
        return
    if variant == "moons":
        config.data.dataset = "moons"
        config.train.update(batch_size=256, num_steps=3000)
        config.optimizer.weight_decay = 0.0  # fresh batches every step: nothing to overfit
        config.eval.update(batch_size=500, grid_samples=2000)
    elif variant == "mnist":
        config.data.path = MNIST_IMAGES
        config.model.update(num_scales=3, hidden_channels=64, num_blocks=2)
        config.train.update(num_steps=5000, eval_every=2500, checkpoint_every=2500)
    elif variant == "tiny":
        config.model.update(num_couplings=2, hidden_dim=8, num_hidden_layers=1, num_scales=2,
                            couplings_per_scale=1, hidden_channels=4, num_blocks=1)
        config.train.update(num_steps=20, batch_size=16, log_every=5, eval_every=10, checkpoint_every=10)
        config.optimizer.update(warmup_steps=2)
        config.data.num_test = 64
        config.eval.update(batch_size=32, grid_samples=16, grid_resolution=20)
    else:
        raise ValueError(f"unknown realnvp variant {variant!r}; expected moons, mnist or tiny "
                         f"(several may be joined with commas, e.g. moons,tiny)")
