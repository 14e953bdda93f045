"""Trains any family on the one loop.

  python -m experiments.train --config=configs/gpt_char.py --workdir=runs/gpt
  python -m experiments.train --config=configs/gpt_char.py:tiny --config.model.num_layers=2 --workdir=runs/t

Running the same command again with the same workdir resumes from the newest checkpoint.
"""
from absl import flags

from aigc_jax import parallel
from aigc_jax.families import train
from experiments import cli

flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, the config and the tokenizer.")


def main(overrides):
    config = cli.config_from_flags(overrides)
    if not flags.FLAGS.workdir:
        raise cli.ConfigError("--workdir is required")
    parallel.prepare_host(config)  # XLA flags, CPU devices; before any computation
    parallel.initialize_distributed(config.get("distributed"))  # multi-host runs; before any computation
    train(config, flags.FLAGS.workdir)


if __name__ == "__main__":
    cli.run(main)
