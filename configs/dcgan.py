"""DCGAN (Radford et al. 2016) on small grey images.

Variants (`--config=configs/dcgan.py:VARIANT`):
  digits  (default) scikit-learn's 8x8 digits (embedded, no download): 1,437 training images.
  mnist   28x28 MNIST from IDX files: by default the reference copy of the MNIST test set,
          ../shared/data/mnist/t10k-{images-idx3,labels-idx1}-ubyte.gz (80% train, 20% test);
          any IDX file with --config.data.path=... (--config.data.labels_path=... for labels).
  shapes  32x32 RGB scenes of the procedural shapes world (aigc_jax/data/shapes.py), scored by the
          project's factor classifier: the StyleGAN2 comparison's baseline (configs/stylegan.py).
  tiny    a few steps of a very small model on the digits (tests).

Recipe from the DCGAN paper: Adam, learning rate 2e-4, beta1 0.5; batch norm in G, leaky ReLU
(slope 0.2) in D, strided / transposed convolutions, no pooling; tanh output, images in [-1, 1].
Evaluation (aigc_jax/metrics/): Frechet distance and classifier score in the feature space of a
small classifier trained on the same data set (cached under eval.classifier_cache, default
~/.cache/aigc_jax/classifiers) -- NOT Inception FID -- and a PNG sample grid per evaluation
(WORKDIR/samples/). Switches as in gan_2d.py: loss.name, model.pack, train.n_critic,
train.ema_decay, loss.r1_gamma, model.num_classes (10: class-conditional; grid columns = classes).
"""
import ml_collections

from configs import common

MNIST_IMAGES = "../shared/data/mnist/t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "../shared/data/mnist/t10k-labels-idx1-ubyte.gz"


def get_config(arg=None):
    config = common.base("gan")

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "digits"  # embedded default; ignored when data.path is set
    config.data.path = ""  # an IDX (MNIST format, optionally .gz) or NPZ image file
    config.data.labels_path = ""  # IDX labels for data.path (needed for scores and conditioning)
    config.data.test_fraction = 0.2
    config.data.image_size = 0  # 0: native size; else nearest-neighbour resize (divisible by 4)
    config.data.num_train = 20000  # shapes world only: scenes of its train stream (no held-out pair)
    config.data.num_test = 2000
    config.data.min_objects = 1
    config.data.max_objects = 3

    config.model = ml_collections.ConfigDict()
    config.model.kind = "dcgan"
    config.model.latent_dim = 32
    config.model.g_width = 128  # channels of G's S/4 map (S/2 map: half)
    config.model.d_width = 64  # channels of D's first convolution (second: double)
    config.model.bn_momentum = 0.9
    config.model.g_batch_norm = True  # False: G without batch norm (the StyleGAN2 mode-collapse diagnostic)
    config.model.num_classes = 0  # 10: class-conditional
    config.model.pack = 1  # PacGAN: images concatenated along channels

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "nonsaturating"  # minimax | nonsaturating | hinge | wgan_gp | least_squares
    config.loss.gp_weight = 10.0
    config.loss.r1_gamma = 0.0

    config.g_optimizer = common.adam(2e-4, 0.5)
    config.d_optimizer = common.adam(2e-4, 0.5)

    config.train.num_steps = 3000
    config.train.n_critic = 1
    config.train.ema_decay = 0.0
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000

    config.eval.num_samples = 1000
    config.eval.batch_size = 250
    config.eval.standing_stats_samples = 500
    config.eval.grid_samples = 100  # samples in each PNG grid
    config.eval.classifier_steps = 1500  # training steps of the scoring classifier; 0 = no scores
    config.eval.classifier_cache = ""  # directory; "" = ~/.cache/aigc_jax/classifiers
    # The shapes world's judge (aigc_jax/metrics/factor_classifier.py), trained once and cached:
    config.eval.factor_classifier_steps = 3500
    config.eval.factor_classifier_scenes = 30000  # rendered training scenes (every (shape, colour) pair)

    if arg in (None, "", "digits"):
        pass
    elif arg == "mnist":
        config.data.update(path=MNIST_IMAGES, labels_path=MNIST_LABELS)
        config.model.update(latent_dim=100, g_width=128, d_width=64)
        config.train.update(num_steps=5000, eval_every=1000)
        config.eval.update(classifier_steps=2000, grid_samples=64)
    elif arg == "shapes":
        config.data.update(dataset="shapes", image_size=32)
        config.model.update(latent_dim=128, g_width=128, d_width=64)
        config.train.update(num_steps=3000, batch_size=32, eval_every=1000)
        config.eval.update(num_samples=2000, grid_samples=64)
    elif arg == "tiny":
        config.model.update(latent_dim=8, g_width=16, d_width=8)
        config.train.update(num_steps=20, batch_size=16, log_every=5, eval_every=10, checkpoint_every=10)
        config.eval.update(num_samples=100, batch_size=50, standing_stats_samples=64, grid_samples=20,
                           classifier_steps=50, factor_classifier_steps=20, factor_classifier_scenes=256)
    else:
        raise ValueError(f"unknown dcgan variant {arg!r}; expected digits, mnist, shapes or tiny")
    return config
