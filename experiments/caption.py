"""Captions any image with a trained captioner (configs/caption.py):

  python -m experiments.caption --workdir=runs/caption --image=scene.png                 # beam search (width 4)
  python -m experiments.caption --workdir=runs/caption --image=scene.png --temperature=0.8 --samples=5 --top_p=0.9

The image is resized to the run's input size (bilinear), grey or RGB as the run was trained.
Prints each caption with its log-probability under the model.
"""
import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from aigc_jax.data import captions as caption_lib
from aigc_jax.families.clip import captioner_decoding
from aigc_jax.families.clip import data as clip_data
from aigc_jax.families.clip.captioner_model import from_config
from aigc_jax.train.restore import restore_params
from experiments import cli

flags.DEFINE_string("workdir", None, "A captioner run's workdir.")
flags.DEFINE_string("image", None, "An image file (PNG, JPEG, ...).")
flags.DEFINE_integer("beam", 4, "Beam width (1: greedy); ignored when --temperature > 0.")
flags.DEFINE_float("length_penalty", 0.0, "GNMT length penalty alpha for beam search.")
flags.DEFINE_float("temperature", 0.0, "> 0: sample instead of beam search.")
flags.DEFINE_integer("samples", 1, "Captions to sample (with --temperature).")
flags.DEFINE_float("top_p", 1.0, "Nucleus sampling threshold.")
flags.DEFINE_integer("top_k", 0, "Top-k sampling (0: off).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")

FLAGS = flags.FLAGS


def load(workdir: str):
    """(model, params, vocabulary, input shape) of a captioner run."""
    restored = restore_params(workdir, task="caption")
    vocab = caption_lib.load_vocab(workdir)
    return from_config(restored.config.model, vocab.size), restored.params, vocab, clip_data.load_input_shape(workdir)


def caption_image(workdir: str, image_path: str, *, beam: int = 4, length_penalty: float = 0.0,
                  temperature: float = 0.0, samples: int = 1, top_p: float = 1.0, top_k: int = 0,
                  seed: int = 0) -> list:
    """[(log-probability, caption)], best first for beam search, in draw order when sampling."""
    model, params, vocab, (size, _, channels) = load(workdir)
    image = jnp.asarray(clip_data.to_model_range(clip_data.read_image(image_path, size, channels))[None])
    if temperature > 0:
        settings = captioner_decoding.sampling_settings(model, temperature, top_k, top_p)
        keys = jax.random.split(jax.random.key(seed), samples)
        tokens, lengths, logprobs = captioner_decoding.sample(params, jnp.repeat(image, samples, axis=0), keys,
                                                              model=model, settings=settings)
        return [(float(np.sum(np.asarray(lp))), vocab.decode(row)) for row, lp in zip(np.asarray(tokens), logprobs)]
    if beam < 1:
        raise ValueError(f"--beam must be at least 1, got {beam}")
    tokens, _, logprobs = captioner_decoding.beam_search(params, image, model=model, beam_width=beam,
                                                         length_penalty_alpha=length_penalty)
    return [(float(lp), vocab.decode(row)) for row, lp in zip(np.asarray(tokens[0]), np.asarray(logprobs[0]))]


def main(overrides):
    if overrides:
        raise cli.ConfigError("caption uses the run's saved config; --config.* overrides are not accepted")
    if not FLAGS.workdir or not FLAGS.image:
        raise cli.ConfigError("--workdir and --image are required")
    for logprob, text in caption_image(FLAGS.workdir, FLAGS.image, beam=FLAGS.beam,
                                       length_penalty=FLAGS.length_penalty, temperature=FLAGS.temperature,
                                       samples=FLAGS.samples, top_p=FLAGS.top_p, top_k=FLAGS.top_k, seed=FLAGS.seed):
        print(f"{logprob:9.3f}  {text}")


if __name__ == "__main__":
    cli.run(main)
