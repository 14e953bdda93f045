"""StyleGAN2 (Karras et al. 2020), small, on the shapes world (aigc_jax/families/gan/stylegan_task.py).

Variants (`--config=configs/stylegan.py:VARIANT`, several joined by commas):
  shapes  (default) 32x32 RGB scenes of 1-3 objects from the procedural shapes world (20,000
          training scenes, rendered once and cached; 4 (shape, colour) pairs held out), scored by
          the project's factor classifier (aigc_jax/metrics/factor_classifier.py).
  mnist   28x28 MNIST IDX files (../shared/data/mnist by default) resized to 32x32, scored by
          the project's digit classifier.
  digits  scikit-learn's 8x8 digits.
  tiny    a few steps of a very small model (tests).
Ablations are fields: loss.pl_weight=0 (no path-length regularisation), loss.style_mixing=0,
loss.r1_gamma=0, train.ema_kimg=0, model.use_noise=False, model.mapping_layers=0 (w = normalised z,
the paper's Table 4; at this budget it is what kept MNIST from collapsing: experiments/results/
stylegan.md); loss.augment=translation,cutout adds DiffAugment (Zhao et al. 2020), not StyleGAN2's.

The paper's recipe, with sizes shrunk to a 2-core CPU: Adam lr 0.0025 (the paper: 0.002; its
small-resolution configs 0.0025), beta1 0, beta2 0.99, eps 1e-8; lazy R1 every 16 steps (gamma
here 0.05; the paper tunes gamma per data set, 0.01 for CIFAR-10), lazy path length every 4 steps
(weight 2, decay 0.01, batch shrink 2), style mixing 0.9, mapping 8 layers at lr x 0.01, G EMA
with a 10k-image half-life (the paper: 10k for its small configs) ramped up as 0.05 x the images
seen (the paper's code for its small-data configs; without it the EMA at step 500 still holds a
third of the random initialisation), w_avg decay 0.995. Channels
min(1024 / res, 32): 32 at every resolution (the paper: 512), for 0.36 s a step of 32 images on
the 2-core CPU (3,000 steps: about 20 minutes with the evaluations).
"""
import ml_collections

from configs import common

MNIST_IMAGES = "../shared/data/mnist/t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "../shared/data/mnist/t10k-labels-idx1-ubyte.gz"


def stylegan_adam(learning_rate: float = 0.0025) -> ml_collections.ConfigDict:
    return common.optimizer(learning_rate=learning_rate, min_learning_rate=learning_rate, schedule="constant",
                            warmup_steps=0, beta1=0.0, beta2=0.99, eps=1e-8)


def mnist(config):
    config.data.update(dataset="digits", path=MNIST_IMAGES, labels_path=MNIST_LABELS, image_size=32)
    config.eval.update(classifier_steps=2000)  # as configs/dcgan.py:mnist: both runs are scored by one classifier


def digits(config):
    config.data.update(dataset="digits", image_size=8)


def tiny(config):
    config.data.update(num_train=256, num_test=128, image_size=16)
    config.model.update(z_dim=16, w_dim=16, mapping_layers=2, channel_base=64, channel_max=8)
    config.train.update(num_steps=8, batch_size=8, log_every=4, eval_every=4, checkpoint_every=4)
    config.loss.update(r1_interval=3, pl_interval=2)  # in 4 steps both lazy terms run, apart and together
    config.eval.update(num_samples=64, batch_size=32, grid_samples=16, classifier_steps=30, ppl_samples=0,
                       separability_samples=0, factor_classifier_steps=20, factor_classifier_scenes=256)


def get_config(arg=None):
    config = common.base("stylegan")

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "shapes"  # shapes | digits; ignored when data.path is set
    config.data.path = ""  # an IDX (MNIST format, optionally .gz) or NPZ image file
    config.data.labels_path = ""
    config.data.test_fraction = 0.2  # for digits and files
    config.data.image_size = 32  # a power of two; the shapes world renders at it, other images are resized
    config.data.num_train = 20000  # shapes world scenes (train stream: no held-out pair)
    config.data.num_test = 2000
    config.data.min_objects = 1
    config.data.max_objects = 3

    config.model = ml_collections.ConfigDict()
    config.model.z_dim = 128
    config.model.w_dim = 128
    config.model.mapping_layers = 8
    config.model.mapping_lr_mul = 0.01
    config.model.channel_base = 1024  # channels at resolution r: min(channel_base / r, channel_max)
    config.model.channel_max = 32
    config.model.use_noise = True
    config.model.mbstd_group = 4  # minibatch standard deviation group; 0 or 1 turns it off

    config.loss = ml_collections.ConfigDict()
    config.loss.r1_gamma = 0.05
    config.loss.r1_interval = 16
    config.loss.pl_weight = 2.0
    config.loss.pl_interval = 4
    config.loss.pl_decay = 0.01
    config.loss.pl_batch_shrink = 2
    config.loss.style_mixing = 0.9
    config.loss.augment = ""  # differentiable augmentation for D: some of color,translation,cutout ("": none)

    config.g_optimizer = stylegan_adam()
    config.d_optimizer = stylegan_adam()

    config.train.num_steps = 3000
    config.train.batch_size = 32
    config.train.ema_kimg = 10.0  # generator EMA half-life in thousands of images; 0 = off
    config.train.ema_rampup = 0.05  # half-life at most this times the images seen so far; 0 = no ramp
    config.train.w_avg_decay = 0.995
    config.train.log_every = 100
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000

    config.eval.num_samples = 2000
    config.eval.batch_size = 250
    config.eval.grid_samples = 64
    config.eval.classifier_steps = 1500  # digit classifier (digits, MNIST); the shapes world's has its own settings
    config.eval.classifier_cache = ""  # "" = ~/.cache/aigc_jax/classifiers
    # The shapes world's judge (aigc_jax/metrics/factor_classifier.py), trained once and cached:
    config.eval.factor_classifier_steps = 3500
    config.eval.factor_classifier_scenes = 30000  # rendered training scenes (every (shape, colour) pair)
    config.eval.ppl_samples = 2000  # latent pairs per space (0: no PPL)
    config.eval.ppl_epsilon = 1e-4
    config.eval.separability_samples = 4000  # generated images (the most confident half is kept; 0: none)

    common.apply_variants(config, arg, {"shapes": lambda c: None, "mnist": mnist, "digits": digits, "tiny": tiny},
                          "stylegan")
    return config
