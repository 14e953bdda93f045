"""experiments/gpu_check.py, the first command on a new accelerator, end to end on its --tiny path:
prepares the standard-library corpus with BPE, trains GPT-3's config from it, samples, reports."""
import json

from experiments import gpu_check


def test_gpu_check_trains_from_a_prepared_dataset_samples_and_reports(tmp_path):
    result = gpu_check.main(["--tiny", f"--scratch={tmp_path}", f"--output={tmp_path / 'gpu.md'}"])
    assert result["config"] == "gpt3.py:tiny" and result["steps"] == 20 and result["vocab_size"] == 300
    assert result["final_val_loss"] < result["initial_val_loss"]  # it learnt from the shards
    assert result["tokens_per_second"] > 0 and result["sample"].startswith("def ") and len(result["sample"]) > 4
    report = (tmp_path / "gpu.md").read_text()
    assert f"{result['tokens_per_second']:,.0f}" in report and "def " in report
    assert json.loads((tmp_path / "gpu.json").read_text())["num_params"] == result["num_params"]
