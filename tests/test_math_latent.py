"""Item 6 of the math reproductions: ELBO <= IWAE_k rising with k; a flow's density integrates to 1."""
import math

import numpy as np
import pytest

from aigc_jax.config import load_config
from aigc_jax.reproductions import latent_bounds
from tests.conftest import config_path


def test_grid_integral_of_a_standard_normal():
    def log_normal(x):
        return -0.5 * np.sum(x ** 2, axis=1) - math.log(2 * math.pi)
    expected = math.erf(4 / math.sqrt(2)) ** 2  # the mass inside [-4, 4]^2
    assert latent_bounds.grid_integral(log_normal, 4.0, 400) == pytest.approx(expected, abs=1e-5)


def test_item_6_quick(tmp_path):
    steps = ["train.progress_bar=false", "train.num_steps=300", "train.eval_every=300", "train.checkpoint_every=300"]
    vae = load_config(config_path("vae.py"), steps + ["eval.iwae_samples=10"])
    flow = load_config(config_path("realnvp.py:moons"), steps)
    report = latent_bounds.reproduce(str(tmp_path), vae, flow, str(tmp_path / "runs"), ks=(1, 10, 100),
                                     sample_budget=100, resolution=300)
    assert [c.passed for c in report.checks] == [True] * len(report.checks), report.checks
    for name in report.figures:
        assert (tmp_path / name).stat().st_size > 1000
