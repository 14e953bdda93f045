"""Judging a code model (aigc_jax/families/code/evaluate.py, experiments/codegen.py): pass@k from
sandbox verdicts, AlphaCode's filter-cluster-submit on programs whose behaviour is known, sampling
that does not depend on the batching, and the whole path from a tiny trained code model."""
import json
import subprocess
import sys

import numpy as np
import pytest

from aigc_jax import families
from aigc_jax.config import load_config
from aigc_jax.data import code_problems
from aigc_jax.decoding.sampling import SamplingSettings
from aigc_jax.families.code import evaluate
from aigc_jax.families.lm import inference
from aigc_jax.sandbox import Limits, Sandbox
from tests.conftest import REPO, config_path


@pytest.fixture(scope="module")
def box():
    with Sandbox(workers=2, limits=Limits(cpu_seconds=2, wall_seconds=4)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def problems():
    return code_problems.generate("held_out", 4, seed=0)


def wrong(problem):
    return "    raise ValueError('not this one')\n"


def equivalent(problem):
    """The canonical solution written differently: same behaviour, different text."""
    return "    result = None\n" + problem.canonical_solution


def test_the_completion_is_what_follows_the_whole_prompt():
    prompt = 'def f(x):\n    """Twice x."""\n'
    assert evaluate.after_prompt(prompt, "\n    return 2 * x\n") == "    return 2 * x\n"
    assert evaluate.after_prompt(prompt, " + 1") == " + 1"  # no newline reproduced: kept whole
    assert evaluate.after_prompt("def g():\n    ", "\n    return 1") == "return 1"


def test_pass_at_k_from_the_verdicts_of_known_completions(problems, box):
    completions = [[p.canonical_solution, wrong(p)] for p in problems[:2]] + [[wrong(p), wrong(p)] for p in problems[2:]]
    report = evaluate.codex_report(problems, completions, box, ks=[1, 2])
    assert report["correct_per_problem"] == [1, 1, 0, 0]
    assert report["pass_at_k"] == {1: pytest.approx(0.25), 2: pytest.approx(0.5)}
    assert report["statuses"] == {"passed": 2, "failed": 6} and report["solved_by_any"] == 2


def test_alphacode_filters_on_examples_clusters_by_behaviour_and_submits_the_largest(problems, box):
    # problem 0: a wrong program first, then three correct ones in two spellings -> one cluster, solved
    # problem 1: only wrong programs -> all filtered out, unsolved
    completions = [[wrong(problems[0]), problems[0].canonical_solution, equivalent(problems[0]),
                    problems[0].canonical_solution], [wrong(problems[1])] * 4]
    subset = problems[:2]
    passed = evaluate.codex_report(subset, completions, box, ks=[1])["passed"]
    report = evaluate.alphacode_report(subset, completions, passed, box, ks=[1, 4], num_submissions=1)
    assert report["by_k"][4]["n_at_k"] == 0.5  # problem 0 solved by its one submission
    assert report["by_k"][4]["filtered_out"] == pytest.approx(5 / 8)
    assert report["by_k"][1]["n_at_k"] == 0.0  # with only the first (wrong) sample nothing survives
    assert report["survivors_that_pass"] == 1.0
    inputs = evaluate.probe_inputs(problems[0], 5, seed=0)
    assert len(inputs) == 5 and inputs == evaluate.probe_inputs(problems[0], 5, seed=0)


@pytest.fixture(scope="module")
def tiny_code_model(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("code") / "run")
    config = load_config(config_path("codex.py:finetune,tiny"), ["train.progress_bar=false"])
    families.train(config, workdir)
    return workdir


def test_samples_do_not_depend_on_the_batching(tiny_code_model, problems):
    lm = inference.load_language_model(tiny_code_model)
    settings = SamplingSettings(max_new_tokens=12, temperature=1.0)
    prompts = [p.prompt for p in problems[:2]]
    small = evaluate.sample_completions(lm, prompts, 3, settings, seed=5, batch_size=2)
    large = evaluate.sample_completions(lm, prompts, 3, settings, seed=5, batch_size=8)
    assert small == large and len(small) == 2 and all(len(c) == 3 for c in small)
    assert all("\ndef" not in c and "\nclass" not in c for cs in small for c in cs)  # cut at stop sequences


def test_codegen_command_reports_pass_at_k_and_alphacode(tiny_code_model, tmp_path):
    out = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "experiments.codegen", f"--workdir={tiny_code_model}",
                             "--problems=synthetic", "--num_problems=3", "--samples=4", "--temperature=0.5,1.0",
                             "--ks=1,4", "--max_new_tokens=16", "--pipeline=alphacode", "--workers=2",
                             f"--json={out}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [row["temperature"] for row in report["rows"]] == [0.5, 1.0]
    for row in report["rows"]:
        assert sum(row["statuses"].values()) == 3 * 4  # every sample was judged
        assert 0.0 <= row["pass_at_k"]["1"] <= row["pass_at_k"]["4"] <= 1.0
        entry = row["alphacode"]["by_k"]["4"]
        assert 0.0 <= entry["n_at_k"] <= 1.0 and 0.0 <= entry["filtered_out"] <= 1.0
    assert np.isfinite(report["rows"][0]["pass_at_k"]["1"])
