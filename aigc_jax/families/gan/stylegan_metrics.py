"""StyleGAN's latent-space measurements of a trained generator (EMA weights), in Z and in W:
perceptual path length and linear separability (aigc_jax/metrics/latent_space.py), with the
data source's feature network (its scoring classifier's penultimate layer) as the distance and
its classifier as the attribute labeller. Sample counts are config fields (eval.ppl_samples,
eval.separability_samples; 0 skips a metric); everything is seeded by config.seed, so a metric
of the same weights is the same number every time.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.families.gan.stylegan_model import truncate
from aigc_jax.metrics import latent_space

CHUNK = 250  # latent pairs / samples per compiled call


@functools.partial(jax.jit, static_argnames=("game", "feature_fn", "count", "space", "epsilon"))
def path_length_distances(state, rng, *, game, feature_fn, count: int, space: str, epsilon: float):
    """Squared feature distances [count] between images eps apart on random interpolation paths."""
    z_rng, t_rng, noise_rng = jax.random.split(rng, 3)
    z = jax.random.normal(z_rng, (2, count, game.z_dim))
    t = jax.random.uniform(t_rng, (count,), maxval=1.0 - epsilon)
    ema = state.extra["ema"]
    if space == "z":
        w_a = game.mapping(ema, latent_space.slerp(z[0], z[1], t))
        w_b = game.mapping(ema, latent_space.slerp(z[0], z[1], t + epsilon))
    else:
        w1, w2 = game.mapping(ema, z[0]), game.mapping(ema, z[1])
        w_a, w_b = latent_space.lerp(w1, w2, t), latent_space.lerp(w1, w2, t + epsilon)

    def features(w):  # the same noise for both ends of a step
        ws = jnp.repeat(w[:, None], game.num_ws, axis=1)
        return feature_fn((game.synthesis(ema, ws, noise_rng) + 1.0) / 2.0)

    return jnp.sum(jnp.square(features(w_a) - features(w_b)), axis=-1)


def perceptual_path_length(state, game, feature_fn, samples: int, epsilon: float, space: str, seed: int) -> dict:
    key = jax.random.key(seed)
    distances = [np.asarray(path_length_distances(state, jax.random.fold_in(key, i), game=game, feature_fn=feature_fn,
                                                  count=CHUNK, space=space, epsilon=epsilon))
                 for i in range(max(samples // CHUNK, 1))]
    return latent_space.path_length_from_distances(np.concatenate(distances), epsilon)


@functools.partial(jax.jit, static_argnames=("game", "count", "psi"))
def sample_with_latents(state, rng, *, game, count: int, psi: float = 1.0):
    """(z [count, z_dim], w [count, w_dim], images [count, S, S, C] in [0, 1])."""
    z_rng, noise_rng = jax.random.split(rng)
    z = jax.random.normal(z_rng, (count, game.z_dim))
    w = game.mapping(state.extra["ema"], z)
    ws = truncate(jnp.repeat(w[:, None], game.num_ws, axis=1), state.extra["w_avg"], psi)
    return z, w, (game.synthesis(state.extra["ema"], ws, noise_rng) + 1.0) / 2.0


def separability(state, game, attribute_fn, samples: int, seed: int) -> dict:
    """Linear separability of the attributes in Z and in W (keys prefixed z_ and w_)."""
    key = jax.random.fold_in(jax.random.key(seed), 0x5E9A)
    zs, ws, labels, confidences = [], [], {}, {}
    for i in range(max(samples // CHUNK, 1)):
        z, w, images = sample_with_latents(state, jax.random.fold_in(key, i), game=game, count=CHUNK)
        attributes, confidence = attribute_fn(np.asarray(images))
        zs.append(np.asarray(z))
        ws.append(np.asarray(w))
        for name in attributes:
            labels.setdefault(name, []).append(attributes[name])
            confidences.setdefault(name, []).append(confidence[name])
    labels = {k: np.concatenate(v) for k, v in labels.items()}
    confidences = {k: np.concatenate(v) for k, v in confidences.items()}
    out = {}
    for space, latents in (("z", np.concatenate(zs)), ("w", np.concatenate(ws))):
        for name, value in latent_space.linear_separability(latents, labels, confidences, seed=seed).items():
            out[f"{space}_{name}"] = value
    return out


def latent_space_metrics(state, game, source, config) -> dict:
    """PPL in Z and W and separability in Z and W, as far as the source can score them."""
    out = {}
    if config.eval.ppl_samples and source.feature_fn is not None:
        for space in ("z", "w"):
            result = perceptual_path_length(state, game, source.feature_fn, config.eval.ppl_samples,
                                            config.eval.ppl_epsilon, space, config.seed)
            out[f"ppl_{space}"] = result["ppl"]
    if config.eval.separability_samples and source.attribute_fn is not None:
        result = separability(state, game, source.attribute_fn, config.eval.separability_samples, config.seed)
        out.update({k: v for k, v in result.items() if k.endswith(("separability", "separability_attributes"))})
    return out


def style_sensitivity(g_params, game, count: int, seed: int) -> dict:
    """How much a generator's styles and images vary with z: per modulated layer, the standard
    deviation across `count` latents of each style s = affine(w) (averaged over channels) beside the
    mean |s| and their ratio style_cv (a demodulated convolution is blind to a common scale of its
    styles, so the ratio is what can still move its output), and the images' per-pixel standard
    deviation across the latents (one noise draw for all). A collapsed generator shows styles that
    still vary and images that do not. g_params: a state's extra["ema"], or freshly initialised ones."""
    z_rng, noise_rng = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0x57D))
    w = game.mapping(g_params, jax.random.normal(z_rng, (count, game.z_dim)))
    ws = jnp.repeat(w[:, None], game.num_ws, axis=1)
    images, captured = game.generator.apply(
        {"params": g_params}, ws, method="synthesis", rngs={"noise": noise_rng}, mutable=["intermediates"],
        capture_intermediates=lambda module, method: module.name == "affine" and method == "__call__")
    layers = {}
    for path, styles in jax.tree_util.tree_flatten_with_path(captured["intermediates"])[0]:
        layer = path[-5].key  # synthesis_net / b8_conv0 / conv / affine / __call__ / 0
        std, mean_abs = float(jnp.mean(jnp.std(styles, axis=0))), float(jnp.mean(jnp.abs(styles)))
        layers[layer] = {"style_std": std, "style_mean_abs": mean_abs, "style_cv": std / max(mean_abs, 1e-12)}
    by_resolution = sorted(layers, key=lambda name: (int(name[1:].split("_")[0]), name))  # b4_conv1 ... b32_torgb
    return {"layers": {name: layers[name] for name in by_resolution},
            "pixel_std": float(jnp.mean(jnp.std(images, axis=0)))}


def critic_collapse_response(critic, real, group_size: int) -> dict:
    """Does the critic penalise a collapsed batch? Its mean logit on `real` [N, ...] against
      one_image        N copies of real[0] (a batch collapsed onto one real image);
      copies_within    K = N / G images real[:K], each G times, every minibatch-stddev group holding
                       G copies of one image (group j = rows j, j + K, ...: the layer's grouping);
      copies_across    the same N images rearranged so that every group holds G different ones.
    The last two differ only in the minibatch standard deviation feature, so
    mbstd_penalty = copies_across - copies_within is what that layer does against collapse (zero
    when the critic has none). critic: images [N, ...] -> logits [N]; G = group_size (<= K)."""
    n = real.shape[0]
    g = max(min(group_size, n), 1)
    k = n // g
    if n % g or g > k:
        raise ValueError(f"critic_collapse_response: batch {n} needs a group size dividing it and at most "
                         f"{n} / group, got {group_size}")
    rows = np.arange(n)
    within = real[rows % k]  # row j + m K is real[j]: group j is G copies of real[j]
    across = real[(rows % k + rows // k) % k]  # group j holds real[j], real[j + 1], ..., G different images
    logit = lambda images: float(jnp.mean(critic(images)))  # noqa: E731
    out = {"real": logit(real), "one_image": logit(jnp.repeat(real[:1], n, axis=0)),
           "copies_within": logit(within), "copies_across": logit(across)}
    out["mbstd_penalty"] = out["copies_across"] - out["copies_within"]
    return out
