"""Runs a grid of config points for several seeds and writes results.md + curves.png.

  python -m experiments.sweep --config=configs/gpt_char.py:tiny \
      --sweep=model.mlp=gelu,swiglu --sweep=model.positions=learned,rope --seeds=3 --workdir=runs/ablate

--mode=one_at_a_time runs the baseline plus each value alone (an ablation).
--print_commands prints one `experiments.train` command per run, to launch each as its own
job elsewhere; afterwards --report_only writes the report from their workdirs.
"""
import shlex
import sys

from absl import flags

from aigc_jax import parallel, sweep
from aigc_jax import families
from aigc_jax.families import train
from experiments import cli

flags.DEFINE_multi_string("sweep", [], "field=value1,value2,... (repeatable)")
flags.DEFINE_integer("seeds", 1, "seeds 0 .. seeds-1 per point")
flags.DEFINE_string("workdir", None, "sweep directory: one subdirectory per point and seed")
flags.DEFINE_enum("mode", "grid", ["grid", "one_at_a_time"], "cross product, or each value against the baseline")
flags.DEFINE_bool("print_commands", False, "print the train command of every run and exit")
flags.DEFINE_bool("report_only", False, "only write the report from finished runs")
flags.DEFINE_string("title", "Sweep", "report title")
FLAGS = flags.FLAGS


def main(overrides):
    if not FLAGS.workdir:
        raise cli.ConfigError("--workdir is required")
    config = cli.config_from_flags(overrides)
    points = sweep.expand_points(config, FLAGS.sweep, FLAGS.mode)  # validates before any run
    for point in points:  # every value's range or choice too, before the first run starts
        families.check_config(sweep.point_config(config, point, 0))
    parallel.prepare_host(config)  # every run of this process shares the XLA flags and CPU devices
    seeds = list(range(FLAGS.seeds))
    if FLAGS.print_commands:
        for point in points:
            for seed in seeds:
                print(sweep.run_command(FLAGS.config, overrides, point, seed, FLAGS.workdir))
        return
    if not FLAGS.report_only:
        quiet = config.train.progress_bar
        sweep.run_sweep(config, points, seeds, FLAGS.workdir,
                        lambda c, d: train(c, d, echo=print if not quiet else (lambda *_: None)))
    command = "python -m experiments.sweep " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = sweep.write_report(sweep.collect(points, seeds, FLAGS.workdir), FLAGS.workdir, FLAGS.title, command)
    print(open(path).read())


if __name__ == "__main__":
    cli.run(main)
