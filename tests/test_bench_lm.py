"""experiments/bench_lm.py: its FLOP count, the PyTorch reference's architecture, and the
report of a short real run (no timing is asserted, only that the numbers hang together)."""
import json
import math
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import config as config_lib
from aigc_jax.nn.transformer import TransformerLM

from aigc_jax.nn.params import count_params
from experiments import bench_lm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = types.SimpleNamespace(preset="shakespeare_cpu", context=16, batch=2)


def our_model(args):
    layers, heads, width, context, batch, vocab, bias = bench_lm.bench_shape(args)
    model = TransformerLM(vocab_size=vocab, num_layers=layers, num_heads=heads, embed_dim=width,
                          context_length=context, use_bias=bias)
    return model, model.init(jax.random.key(0), jnp.zeros((1, context), jnp.int32))["params"]


def test_flops_per_step_is_6n_plus_12lct_with_n_counted_from_our_model():
    model, params = our_model(SMALL)
    n = count_params({"params": params}) - params["pos_embed"]["embedding"].size  # lookups cost no FLOPs
    layers, _, width, context, batch, _, _ = bench_lm.bench_shape(SMALL)
    expected = (6 * n + 12 * layers * width * context) * batch * context
    assert bench_lm.model_flops_per_step(SMALL) == pytest.approx(expected)


def test_pytorch_reference_is_our_architecture_logit_for_logit():
    torch = pytest.importorskip("torch")
    _, params = our_model(SMALL)
    reference = bench_lm.torch_gpt(SMALL)
    assert sum(p.numel() for p in reference.parameters()) == count_params({"params": params})
    t = lambda a: torch.from_numpy(np.asarray(a).copy())  # noqa: E731
    with torch.no_grad():
        reference.token.weight.copy_(t(params["token_embed"]["embedding"]))
        reference.position.weight.copy_(t(params["pos_embed"]["embedding"]))
        reference.norm.weight.copy_(t(params["final_norm"]["scale"]))
        reference.norm.bias.copy_(t(params["final_norm"]["bias"]))
        for i, block in enumerate(reference.blocks):
            ours = params[f"block_{i}"]
            for norm in ("norm1", "norm2"):
                getattr(block, norm).weight.copy_(t(ours[norm]["scale"]))
                getattr(block, norm).bias.copy_(t(ours[norm]["bias"]))
            for name, linear in (("qkv", ours["attn"]["qkv"]), ("out", ours["attn"]["out"]),
                                 ("up", ours["mlp"]["up"]), ("down", ours["mlp"]["down"])):
                getattr(block, name).weight.copy_(t(linear["kernel"]).T)  # torch stores [out, in]
                getattr(block, name).bias.copy_(t(linear["bias"]))
    tokens = np.random.default_rng(0).integers(0, 65, size=(2, 16))
    model, _ = our_model(SMALL)
    ours = model.apply({"params": params}, jnp.asarray(tokens, jnp.int32))
    ours = ours[0] if isinstance(ours, tuple) else ours
    theirs = reference(torch.from_numpy(tokens).long()).detach().numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=2e-4, rtol=1e-4)


def run_bench(*flags):
    return subprocess.run([sys.executable, "experiments/bench_lm.py", *flags], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_short_run_reports_consistent_numbers(tmp_path):
    out = run_bench("--context=16", "--batch=2", "--steps=4", "--warmup=2", "--steps_per_call=2", "--repeats=1",
                    "--micro_batches=2", "--skip_torch", f"--json={tmp_path / 'r.json'}")
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    row = report["table"]["jax"]
    step = row["step_ms"] / 1e3
    assert step > 0 and row["tokens_per_second"] == pytest.approx(2 * 16 / step)
    flops = bench_lm.model_flops_per_step(SMALL)
    assert row["mfu"] == pytest.approx(flops / step / report["peak_flops"])
    assert 0 < row["mfu"] < 1 and report["peak_flops"] > 1e9
    assert row["compile_seconds"] > 0 and row["xla_buffer_mb"] > 0
    assert abs(row["final_loss"] - math.log(65)) < 0.5  # six AdamW steps from a small init on random tokens
    assert "| aigc_jax (JAX/XLA) |" in out.stdout and "ratio" not in out.stdout  # no reference was run
    assert "2 micro-batch(es) unrolled" in out.stdout


def test_micro_batches_default_to_the_loops_config():
    recipe = config_lib.load_config(os.path.join(ROOT, "configs/gpt_char.py:shakespeare_cpu"))
    default = types.SimpleNamespace(micro_batches=-1, batch=0, preset="shakespeare_cpu")
    assert recipe.train.unroll_micro_batches and bench_lm.micro_batches(default) == recipe.train.grad_accum_steps
    assert bench_lm.micro_batches(types.SimpleNamespace(micro_batches=-1, batch=6, preset="shakespeare_cpu")) == 1
    assert bench_lm.micro_batches(types.SimpleNamespace(micro_batches=-1, batch=0, preset="gpt2_small")) == 1


def test_steps_must_divide_into_calls():
    out = run_bench("--steps=5", "--warmup=2", "--steps_per_call=2", "--skip_torch")
    assert out.returncode == 2 and "multiples of --steps_per_call" in out.stderr
    out = run_bench("--micro_batches=5", "--skip_torch")
    assert out.returncode == 2 and "--micro_batches=5 must be positive and divide the batch (12)" in out.stderr


@pytest.mark.slow  # test_short_run_reports_consistent_numbers covers the benchmark by default
def test_config_mode_times_the_loops_step(tmp_path):
    out = run_bench("--config=configs/gpt_char.py:tiny", "--steps=2", "--warmup=2", "--repeats=1",
                    f"--json={tmp_path / 'r.json'}")
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads((tmp_path / "r.json").read_text())["table"]["config"]
    assert row["step_ms"] > 0 and 0 < row["mfu"] < 1
    assert "configs/gpt_char.py:tiny" in out.stdout


@pytest.mark.slow
def test_recipe_bench_splits_each_run_into_phases_that_add_up(small_text_file, tmp_path):
    """experiments/bench_recipe.py on a few steps (JAX side only): the phases of each run add up
    to its wall time, and the second run finds the compilation cache warm."""
    out = tmp_path / "recipe.json"
    result = subprocess.run([sys.executable, "experiments/bench_recipe.py", f"--text={small_text_file}",
                             "--rounds=1", "--steps=20", "--warmup=2", "--eval_interval=10", "--eval_windows=24", "--skip_torch",
                             "--variant_flag=--config.train.grad_accum_steps=1",
                             "--variant_flag=--config.train.unroll_micro_batches=false", f"--json={out}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    first, warm = report["rows"]["ours, first run (empty cache)"], report["rows"]["ours (warm cache)"]
    variant = report["rows"]["ours --config.train.grad_accum_steps=1 --config.train.unroll_micro_batches=false "
                             "(warm cache)"]
    assert report["ratio_variant_over_ours"] == pytest.approx(variant["total"] / warm["total"])
    for row in (first, warm, variant):
        parts = sum(row[p] for p in ("startup", "compile_wait", "steps", "eval", "checkpoint", "end"))
        assert parts == pytest.approx(row["total"], rel=1e-6) and row["end"] >= 0
    assert warm["compile_seconds"] < first["compile_seconds"]
    assert report["sample_first_character_seconds"]["warm_cache"] > 0
