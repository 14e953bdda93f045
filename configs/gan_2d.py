"""GANs on 2-D mixtures of Gaussians: the mode-collapse benchmarks of VEEGAN and PacGAN.

Variants (`--config=configs/gan_2d.py:VARIANT`):
  ring  (default) 8 Gaussians on a circle of radius 1, standard deviation 0.01.
  grid  25 Gaussians at (-4 + 2i, -4 + 2j), i, j = 0..4 (spacing 2), standard deviation 0.05.
  tiny  a small ring run of 20 steps that compiles and runs in seconds (tests).

The data setups are exactly those of PacGAN (Lin et al. 2018), read from its released configs
(github.com/fjxmlzn/PacGAN: synthetic_data_experiments/2DRing_GAN&PacGAN/config.py and
2DGrid_GAN&PacGAN/config.py), which reuse VEEGAN's benchmark (Srivastava et al. 2017; its
ring notebook samples 8 modes, radius 1, std 0.01): 100,000 training points, 2,500
generated samples for evaluation, batch 100, a 2-D Gaussian latent, G with 4 ReLU layers and
batch norm, D with 3 maxout layers. Training is shortened to fit a 2-core CPU: 20,000 steps
(PacGAN: 400 epochs = 400,000 steps) with narrower networks (G 4 x 128, D 3 x 128 maxout of
3 pieces; PacGAN: 400 and 200 x 5 pieces), Adam at 5e-4 with beta1 0.5 (PacGAN: 1e-4, 0.8)
and an EMA of the generator weights (decay 0.999) for sampling. PacGAN's own networks and
optimizer: --config.model.g_hidden=400 --config.model.d_hidden=200 --config.model.d_maxout_pieces=5
--config.{g,d}_optimizer.learning_rate=1e-4 (and min_learning_rate) --config.{g,d}_optimizer.beta1=0.8
--config.train.ema_decay=0.
Switches: loss.name (minimax | nonsaturating | hinge | wgan_gp | least_squares), model.pack
(PacGAN m; PacGAN2 = 2), train.n_critic, train.ema_decay, loss.r1_gamma, model.num_classes
(8 or 25: conditional on the mixture component).
"""
import ml_collections

from configs import common


def get_config(arg=None):
    config = common.base("gan")

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "ring"  # ring | grid
    config.data.std = 0.01  # ring: 0.01 (PacGAN / VEEGAN); grid: 0.05
    config.data.ring_modes = 8
    config.data.ring_radius = 1.0
    config.data.grid_side = 5
    config.data.grid_spacing = 2.0
    config.data.num_train = 100_000  # the fixed training set (PacGAN: num_sample = 100000)

    config.model = ml_collections.ConfigDict()
    config.model.kind = "mlp"
    config.model.latent_dim = 2  # PacGAN: num_zdim = 2, z ~ N(0, I)
    config.model.g_hidden = 128  # PacGAN: 400
    config.model.g_layers = 4
    config.model.g_batch_norm = True
    config.model.bn_momentum = 0.9  # running average <- momentum * average + (1 - momentum) * batch
    config.model.d_hidden = 128  # PacGAN: 200
    config.model.d_layers = 3
    config.model.d_maxout_pieces = 3  # PacGAN: 5; 1: leaky-ReLU layers instead of maxout
    config.model.num_classes = 0  # > 0: conditional on the mixture component (= number of modes)
    config.model.pack = 1  # PacGAN: the discriminator judges `pack` samples jointly

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "nonsaturating"  # minimax | nonsaturating | hinge | wgan_gp | least_squares
    config.loss.gp_weight = 10.0  # WGAN-GP lambda (used by wgan_gp)
    config.loss.r1_gamma = 0.0  # R1 penalty gamma on real data, any loss; 0 = off

    config.g_optimizer = common.adam(5e-4, 0.5)  # PacGAN: Adam, learning rate 1e-4, beta1 0.8
    config.d_optimizer = common.adam(5e-4, 0.5)

    config.train.num_steps = 20_000
    config.train.batch_size = 100  # discriminator inputs (packs) per step; batch_size * pack samples
    config.train.n_critic = 1  # discriminator updates per generator update
    config.train.ema_decay = 0.999  # EMA of generator weights used for sampling; 0 = current weights
    config.train.log_every = 500
    config.train.eval_every = 5000
    config.train.checkpoint_every = 5000

    config.eval.num_samples = 2500  # VEEGAN / PacGAN: 2,500 generated samples
    config.eval.batch_size = 500
    config.eval.standing_stats_samples = 1000  # latents for the EMA generator's batch-norm statistics

    if arg in (None, "", "ring"):
        pass
    elif arg == "grid":
        config.data.dataset = "grid"
        config.data.std = 0.05
    elif arg == "tiny":
        config.data.num_train = 2000
        config.model.update(g_hidden=32, g_layers=2, d_hidden=32, d_layers=2, d_maxout_pieces=2)
        config.train.ema_decay = 0.0
        config.train.update(num_steps=20, batch_size=16, log_every=5, eval_every=10, checkpoint_every=10)
        config.eval.update(num_samples=200, batch_size=100, standing_stats_samples=64)
    else:
        raise ValueError(f"unknown gan_2d variant {arg!r}; expected ring, grid or tiny")
    return config
