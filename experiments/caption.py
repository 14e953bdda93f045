"""Captions any image with a trained captioner (configs/caption.py):

  python -m experiments.caption --workdir=runs/caption --image=scene.png                 # beam search (width 4)
  python -m experiments.caption --workdir=runs/caption --image=scene.png --temperature=0.8 --samples=5 --top_p=0.9

  python -m experiments.caption --workdir=runs/caption --grounding [--markdown]
      does the run read its images? Per word kind (colour, shape, size, ...) the loss of its test
      captions with their own images beside other items' images (caption_grounding.py).

The image is resized to the run's input size (bilinear), grey or RGB as the run was trained.
Prints each caption with its log-probability under the model.
"""
from absl import flags

from aigc_jax.families.clip import caption_grounding
from aigc_jax.families.clip.captioning import caption_image, grounding
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
flags.DEFINE_boolean("grounding", False, "Instead of captioning: per word kind, the test captions' loss with own vs other images.")
flags.DEFINE_boolean("markdown", False, "With --grounding: markdown tables.")

FLAGS = flags.FLAGS


def main(overrides):
    if overrides:
        raise cli.ConfigError("caption uses the run's saved config; --config.* overrides are not accepted")
    if FLAGS.grounding:
        if not FLAGS.workdir:
            raise cli.ConfigError("--workdir is required")
        for name, table in grounding(FLAGS.workdir).items():
            print(f"\n{name} test pairs:\n" + caption_grounding.format_table(table, markdown=FLAGS.markdown))
        return
    if not FLAGS.workdir or not FLAGS.image:
        raise cli.ConfigError("--workdir and --image are required")
    for logprob, text in caption_image(FLAGS.workdir, FLAGS.image, beam=FLAGS.beam,
                                       length_penalty=FLAGS.length_penalty, temperature=FLAGS.temperature,
                                       samples=FLAGS.samples, top_p=FLAGS.top_p, top_k=FLAGS.top_k, seed=FLAGS.seed):
        print(f"{logprob:9.3f}  {text}")


if __name__ == "__main__":
    cli.run(main)
