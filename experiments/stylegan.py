"""Looks inside a trained StyleGAN2 run: sample grids with and without truncation, the style-mixing
grid (StyleGAN Figure 3), interpolations in Z and in W, the truncation trade-off (Frechet distance
against diversity as psi goes from 1 to 0), and perceptual path length and linear separability
in Z and in W, measured with the run's scoring network; and two probes of mode collapse: how much
the styles and the images vary with z (trained, and as initialised), and whether the discriminator
penalises a batch collapsed onto one real image (and how much of that its minibatch-stddev layer does).

  python -m experiments.stylegan --workdir=runs/stylegan_shapes --out=runs/stylegan_shapes/analysis

Writes PNG grids and analysis.json (every number, with the settings that made it) into --out.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from aigc_jax.families.gan import stylegan_metrics, stylegan_sampling, stylegan_task
from aigc_jax.image_grid import save_image_grid
from aigc_jax.train import loop
from experiments import cli

flags.DEFINE_string("workdir", None, "A StyleGAN2 run's workdir.")
flags.DEFINE_string("out", "", "Output directory; default WORKDIR/analysis.")
flags.DEFINE_string("psis", "1,0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1,0", "Truncation psis of the trade-off curve.")
flags.DEFINE_integer("truncation_samples", 1000, "Samples scored per psi.")
flags.DEFINE_integer("truncation_cutoff", -1, "Truncate only the ws of layers below this index (-1: all layers).")
flags.DEFINE_integer("ppl_samples", 2000, "Latent pairs per space for the perceptual path length (0: skip).")
flags.DEFINE_integer("separability_samples", 6000, "Generated images for linear separability (0: skip).")
flags.DEFINE_integer("seed", 0, "Seed of the latents and noise.")

FLAGS = flags.FLAGS


def main(overrides):
    if overrides:
        raise cli.ConfigError("stylegan uses the run's saved config; --config.* overrides are not accepted")
    if not FLAGS.workdir:
        raise cli.ConfigError("--workdir is required")
    psis = [float(p) for p in FLAGS.psis.split(",") if p]
    cutoff = None if FLAGS.truncation_cutoff < 0 else FLAGS.truncation_cutoff
    if any(not 0.0 <= p <= 1.0 for p in psis):
        raise ValueError(f"--psis must lie in [0, 1], got {FLAGS.psis}")
    out = FLAGS.out or os.path.join(FLAGS.workdir, "analysis")
    os.makedirs(out, exist_ok=True)
    trained = stylegan_task.load_trained(FLAGS.workdir)
    state, game, config = trained.state, trained.game, trained.config
    size = trained.source.example_shape[0]
    scale = max(1, 64 // size)
    report = {"workdir": FLAGS.workdir, "step": int(state.step), "seed": FLAGS.seed}

    z = stylegan_sampling.seed_latents(range(FLAGS.seed * 1000, FLAGS.seed * 1000 + 64), game.z_dim)
    for psi in (1.0, 0.7):
        images = stylegan_sampling.images_from_ws(state, game, stylegan_sampling.ws_of(state, game, z, psi, cutoff))
        save_image_grid(images, os.path.join(out, f"samples_psi{psi:g}.png"), columns=8, scale=scale)
    grid, labels = stylegan_sampling.style_mixing_grid(state, game, size, [1, 2], [10, 11, 12, 13, 14, 15])
    save_image_grid(grid.reshape((-1,) + grid.shape[2:]), os.path.join(out, "style_mixing.png"),
                    columns=grid.shape[1], scale=scale)
    report["style_mixing_rows"] = labels
    for space in ("z", "w"):
        rows = stylegan_sampling.interpolation_grid(state, game, [(1, 2), (3, 4), (5, 6), (7, 8)], 10, space)
        save_image_grid(rows.reshape((-1,) + rows.shape[2:]), os.path.join(out, f"interpolation_{space}.png"),
                        columns=rows.shape[1], scale=scale)

    report["style_sensitivity"] = stylegan_metrics.style_sensitivity(state.extra["ema"], game, 256, FLAGS.seed)
    # the generator as the run itself was initialised (the loop's init key): where the trained one started
    initial = stylegan_task.init_state(game, trained.source.example_shape, loop.run_keys(config.seed)[0])
    report["style_sensitivity_at_init"] = stylegan_metrics.style_sensitivity(
        initial.params["generator"], game, 256, FLAGS.seed)
    report["real_pixel_std"] = float(np.mean(np.std(trained.source.images, axis=0)))
    for key, label in (("style_sensitivity_at_init", "initialisation"), ("style_sensitivity", "trained (EMA)")):
        styles = report[key]["layers"].values()
        print(f"{label}, across 256 latents: pixel std {report[key]['pixel_std']:.3g} (training images: "
              f"{report['real_pixel_std']:.3g}); style std {min(v['style_std'] for v in styles):.3g}-"
              f"{max(v['style_std'] for v in styles):.3g} around mean |style| "
              f"{min(v['style_mean_abs'] for v in styles):.3g}-{max(v['style_mean_abs'] for v in styles):.3g} "
              f"(ratio {min(v['style_cv'] for v in styles):.2f}-{max(v['style_cv'] for v in styles):.2f})")
    group = max(game.discriminator.mbstd_group, 1)
    count = group * max(group, -(-config.train.batch_size // group))  # at least `group` distinct images per group
    picks = np.random.default_rng([FLAGS.seed, 0xC011]).choice(len(trained.source.images), count, replace=False)
    critic = jax.jit(lambda images: game.critic(state.params["discriminator"], images))
    report["critic_collapse"] = stylegan_metrics.critic_collapse_response(
        critic, jnp.asarray(trained.source.images[picks]), group)
    c = report["critic_collapse"]
    print(f"discriminator's mean logit on {count} real images {c['real']:.3f}; on one real image {count} times "
          f"{c['one_image']:.3f}; copies in the same minibatch-stddev group {c['copies_within']:.3f} against "
          f"spread over groups {c['copies_across']:.3f} (what the layer penalises: {c['mbstd_penalty']:.3f})")
    if trained.source.scores is not None:
        # the training images' own spread: the diversity a generator that covers the data reaches
        report["real_feature_spread"] = float(2.0 * np.trace(trained.source.scores.real_cov))
        print(f"real training images: feature_spread {report['real_feature_spread']:.4g}")
        report["truncation_cutoff"] = cutoff
        report["truncation"] = [{"psi": psi, **stylegan_task.score_samples(trained, FLAGS.truncation_samples, psi,
                                                                           FLAGS.seed, cutoff=cutoff)} for psi in psis]
        for row in report["truncation"]:
            shown = {k: v for k, v in row.items() if k != "psi" and np.isscalar(v) and not k.startswith("factor_tv_")}
            print(f"psi {row['psi']:.1f}: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
        plot_truncation(report["truncation"], os.path.join(out, "truncation.png"))
    if FLAGS.ppl_samples and trained.source.feature_fn is not None:
        for space in ("z", "w"):
            report[f"ppl_{space}"] = stylegan_metrics.perceptual_path_length(
                state, game, trained.source.feature_fn, FLAGS.ppl_samples, config.eval.ppl_epsilon, space, FLAGS.seed)
            print(f"perceptual path length in {space.upper()}: {report[f'ppl_{space}']['ppl']:.4g}")
    if FLAGS.separability_samples and trained.source.attribute_fn is not None:
        report["separability"] = stylegan_metrics.separability(state, game, trained.source.attribute_fn,
                                                               FLAGS.separability_samples, FLAGS.seed)
        for space in ("z", "w"):
            result = report["separability"]
            print(f"linear separability in {space.upper()}: {result[f'{space}_separability']:.4g} over "
                  f"{result[f'{space}_separability_attributes']} attributes that vary")
    with open(os.path.join(out, "analysis.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {out}")


def plot_truncation(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    spread = [r.get("feature_spread", np.nan) for r in rows]
    distance = [r.get("frechet_distance", np.nan) for r in rows]
    ax.plot(spread, distance, "o-")
    for r, x, y in zip(rows, spread, distance):
        ax.annotate(f"{r['psi']:g}", (x, y), fontsize=7)
    ax.set_xlabel("diversity: feature spread 2 tr(Cov)")
    ax.set_ylabel("Frechet distance (our feature net)")
    ax.set_title("truncation trade-off (labels: psi)")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    cli.run(main)
