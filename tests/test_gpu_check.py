"""experiments/gpu_check.py, the first command on a new accelerator, end to end on its --tiny path:
prepares the standard-library corpus with BPE, trains GPT-3's config from it, samples, reports."""
import json

from aigc_jax import families
from experiments import gpu_check


def test_gpu_check_trains_from_a_prepared_dataset_samples_and_reports(tmp_path):
    result = gpu_check.main(["--tiny", f"--scratch={tmp_path}", f"--output={tmp_path / 'gpu.md'}"])
    assert result["config"] == "gpt3.py:tiny" and result["steps"] == 20 and result["vocab_size"] == 300
    assert result["final_val_loss"] < result["initial_val_loss"]  # it learnt from the shards
    assert result["tokens_per_second"] > 0 and result["sample"].startswith("def ") and len(result["sample"]) > 4
    report = (tmp_path / "gpu.md").read_text()
    assert f"{result['tokens_per_second']:,.0f}" in report and "def " in report
    assert json.loads((tmp_path / "gpu.json").read_text())["num_params"] == result["num_params"]


def test_the_gpu_configuration_is_valid_and_splits_its_batch(tmp_path):
    # The GPU path itself cannot run here; its config is checked. 64 x 2,048 tokens at once ran out
    # of the H200's memory (experiments/results/gpu.md), hence the micro-batches.
    gpu_check.prepare_corpus(str(tmp_path), 300, tiny=True)
    data = str(tmp_path / "stdlib_bpe300_tiny")
    config = gpu_check.run_config(gpu_check.parse([f"--scratch={tmp_path}"]), data)
    families.check_config(config)
    assert (config.train.batch_size, config.train.grad_accum_steps) == (64, 4)
    assert config.model.attention_impl == "cudnn" and config.model.dtype == "bfloat16"
    assert config.model.context_length == 2048
