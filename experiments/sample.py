"""Samples text from a trained language model (its newest checkpoint and its tokenizer).

  python -m experiments.sample --workdir=runs/shakespeare --prompt="ROMEO:" \
      --num_samples=4 --temperature=0.8 --top_k=40 --seed=0

An empty --prompt starts from a newline. The same seed gives the same text. Prompt plus
new tokens longer than the model's context slide a window (see aigc_jax/decoding/sampling.py).
"""
import dataclasses

from absl import flags

from aigc_jax.families.lm import inference
from aigc_jax.decoding import sampling
from experiments import cli

flags.DEFINE_string("workdir", None, "A training run's workdir (config.json, tokenizer.json, checkpoints/).")
flags.DEFINE_string("prompt", "", "Text to continue; empty starts from a newline.")
flags.DEFINE_integer("num_samples", 4, "Samples to draw (one batch).")
flags.DEFINE_float("temperature", 0.8, "Divides the logits; 0 is greedy decoding.")
flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens; 0 = all.")
flags.DEFINE_float("top_p", 1.0, "Nucleus sampling: the smallest set of tokens with this much probability; 1 = all.")
flags.DEFINE_integer("max_new_tokens", 500, "Tokens to generate per sample.")
flags.DEFINE_string("stop_chars", "", "Characters that end a sample (each must be one token).")
flags.DEFINE_integer("window_shift", 0, "Tokens dropped when the window outgrows the context; 0 = a quarter of it.")
flags.DEFINE_integer("seed", 0, "Random seed.")

FLAGS = flags.FLAGS


def main(overrides):
    if overrides:
        raise cli.ConfigError("sample uses the run's saved config; --config.* overrides are not accepted")
    if not FLAGS.workdir:
        raise cli.ConfigError("--workdir is required")
    # Check the sampler settings before the (slower) checkpoint restore.
    settings = sampling.SamplingSettings(
        max_new_tokens=FLAGS.max_new_tokens, temperature=FLAGS.temperature, top_k=FLAGS.top_k,
        top_p=FLAGS.top_p, window_shift=FLAGS.window_shift)
    settings.validate(vocab_size=1 << 30)
    lm = inference.load_language_model(FLAGS.workdir)
    inference.encode_prompt(lm.tokenizer, FLAGS.prompt)  # names unknown characters before compiling
    settings = dataclasses.replace(settings, stop_tokens=inference.stop_tokens(lm.tokenizer, FLAGS.stop_chars))
    texts = inference.sample_text(lm, FLAGS.prompt, num_samples=FLAGS.num_samples, seed=FLAGS.seed,
                                  settings=settings)
    for i, text in enumerate(texts):
        print(f"--- sample {i} (step {lm.step}, seed {FLAGS.seed}) ---")
        print(FLAGS.prompt + text)


if __name__ == "__main__":
    cli.run(main)
