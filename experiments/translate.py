"""Decodes inputs with a trained encoder-decoder (its saved config, vocabulary and newest checkpoint).

  python -m experiments.translate --workdir=/tmp/seq2seq/reverse --input="hello"
  python -m experiments.translate --workdir=/tmp/seq2seq/add --input="123+456=" --beam_width=4 --num_results=3

Several inputs may be given separated by --separator (default '|'). beam_width=1 with
length_penalty=0 is greedy decoding; each result is printed with its score
(log p / lp(|y|)) and log-probability in nats.
"""
from absl import flags

from aigc_jax.families.seq2seq import task as seq2seq
from experiments import cli

flags.DEFINE_string("workdir", None, "A seq2seq training run's workdir (config.json, tokenizer.json, checkpoints/).")
flags.DEFINE_string("input", None, "Source text to decode (several separated by --separator).")
flags.DEFINE_string("separator", "|", "Separates several inputs in --input; empty = one input.")
flags.DEFINE_integer("beam_width", 4, "Beam width; 1 (with length_penalty 0) is greedy decoding.")
flags.DEFINE_float("length_penalty", 0.6, "GNMT length-penalty exponent alpha; 0 ranks by log-probability.")
flags.DEFINE_integer("num_results", 1, "Best outputs to print per input (at most beam_width).")

FLAGS = flags.FLAGS


def main(overrides):
    if overrides:
        raise cli.ConfigError("translate uses the run's saved config; --config.* overrides are not accepted")
    if not FLAGS.workdir:
        raise cli.ConfigError("--workdir is required")
    if FLAGS.input is None:
        raise cli.ConfigError("--input is required")
    if FLAGS.beam_width < 1:
        raise ValueError(f"--beam_width must be at least 1, got {FLAGS.beam_width}")
    if not 1 <= FLAGS.num_results <= FLAGS.beam_width:
        raise ValueError(f"--num_results must be in 1..beam_width ({FLAGS.beam_width}), got {FLAGS.num_results}")
    texts = FLAGS.input.split(FLAGS.separator) if FLAGS.separator else [FLAGS.input]
    trained = seq2seq.load_trained(FLAGS.workdir)
    for text in texts:
        results = seq2seq.translate(trained, text, beam_width=FLAGS.beam_width, length_penalty=FLAGS.length_penalty,
                                    num_results=FLAGS.num_results)
        for rank, (output, score, logp) in enumerate(results):
            prefix = f"{text}\t->\t" if rank == 0 else "\t\t"
            print(f"{prefix}{output}\t(score {score:.4f}, log p {logp:.4f})")


if __name__ == "__main__":
    cli.run(main)
