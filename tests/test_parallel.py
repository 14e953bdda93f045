"""Sharded training on 8 simulated CPU devices (subprocesses with XLA_FLAGS), multi-process
runs on localhost, checkpoints restored onto a different mesh, and mesh errors."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from aigc_jax import parallel
from aigc_jax.config import ConfigError, apply_overrides
from aigc_jax import families
from tests.conftest import REPO

WORKER = os.path.join(REPO, "tests", "parallel_worker.py")
TOLERANCE = 1e-5  # float32: reductions split over devices sum in another order


def run_worker(devices, *args, background=False):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, WORKER, *map(str, args)]
    if background:
        return subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def mesh_results(small_text_file, tmp_path_factory):
    """Three steps on every mesh of 8 devices against one device (one worker process)."""
    out = tmp_path_factory.mktemp("meshes") / "meshes.json"
    run_worker(8, "meshes", small_text_file, out)
    return json.loads(out.read_text())


@pytest.mark.xdist_group("meshes")
def test_every_mesh_computes_the_single_device_steps_with_sharded_parameters(mesh_results):
    results = mesh_results
    for shape, r in results.items():
        assert r["loss_diff"] < TOLERANCE and r["max_param_diff"] < TOLERANCE, (shape, r)
    assert results["(8, 1, 1)"]["sharded_params"] == []  # pure data parallel: replicated
    assert "block_0.attn.qkv.kernel" in results["(1, 8, 1)"]["sharded_params"]
    assert results["(1, 8, 1)"]["qkv_spec"] == ["fsdp", None]
    assert results["(2, 2, 2)"]["qkv_spec"] == ["fsdp", "tensor"]
    assert results["(1, 1, 8)"]["qkv_spec"] == [None, "tensor"]
    for shape in ("(1, 8, 1)", "(2, 2, 2)", "(1, 1, 8)"):
        # Adam's two moments are sharded like the parameters they follow.
        assert results[shape]["sharded_opt_leaves"] == 2 * len(results[shape]["sharded_params"])


def test_gan_step_on_eight_devices_equals_one_device(tmp_path):
    out = tmp_path / "gan.json"
    run_worker(8, "gan", out)
    result = json.loads(out.read_text())
    assert result["devices"] == 8
    assert any("batch_stats" in k for k in result["leaves"]) and any(k.startswith("extra.ema") for k in result["leaves"])
    assert result["max_diff"] < TOLERANCE and result["metric_diff"] < TOLERANCE, result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.xdist_group("meshes")
def test_two_processes_compute_the_same_steps_as_one(small_text_file, tmp_path, mesh_results):
    """Mesh (2, 2, 2) over two processes of 4 devices each equals the same mesh in one process."""
    port = free_port()
    multi = tmp_path / "multi.json"
    workers = [run_worker(4, "process", pid, port, small_text_file, multi, background=True) for pid in (0, 1)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n".join(o[-2000:] for o in outputs)
    a, b = json.loads(multi.read_text()), mesh_results["(2, 2, 2)"]
    assert abs(a["loss"] - b["loss"]) < TOLERANCE
    for name, value in b["params"].items():
        np.testing.assert_allclose(a["params"][name], value, atol=TOLERANCE, err_msg=name)


@pytest.mark.parametrize("save_mesh,save_devices,restore_mesh,restore_devices", [
    pytest.param("1,8,1", 8, "1,1,1", 1, marks=pytest.mark.slow),  # gathering: the other way is the default test
    ("1,1,1", 1, "2,2,2", 8)])
def test_checkpoint_restores_onto_another_mesh(small_text_file, tmp_path, save_mesh, save_devices,
                                               restore_mesh, restore_devices):
    workdir, saved, restored = tmp_path / "run", tmp_path / "saved.npz", tmp_path / "restored.npz"
    run_worker(save_devices, "save", small_text_file, workdir, save_mesh, saved)
    run_worker(restore_devices, "restore", small_text_file, workdir, restore_mesh, restored)
    a, b = np.load(saved), np.load(restored)
    assert int(a["step"]) == int(b["step"]) == 10
    assert (int(a["num_sharded"]) > 0) == (save_devices > 1)
    assert (int(b["num_sharded"]) > 0) == (restore_devices > 1)
    for name in a.files:
        if name not in ("step", "num_sharded"):
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_mesh_that_does_not_fit_the_devices_is_named():
    with pytest.raises(parallel.MeshError, match="needs 6 devices, but 8 are available"):
        parallel.mesh_shape({"data": 2, "fsdp": 3, "tensor": 1}, 8)
    with pytest.raises(parallel.MeshError, match=r"fixed axes \(3 devices\) do not divide the 8 devices"):
        parallel.mesh_shape({"data": -1, "fsdp": 3, "tensor": 1}, 8)
    assert parallel.mesh_shape({"data": -1, "fsdp": 2, "tensor": 2}, 8) == (2, 2, 2)
    assert parallel.mesh_shape(None, 4) == (4, 1, 1)


def test_mesh_and_batch_errors_come_before_compiling(tiny_lm_config, tmp_path):
    config = apply_overrides(tiny_lm_config, ["mesh.data=2"])
    with pytest.raises(parallel.MeshError, match="needs 2 devices, but 1 are available"):
        families.train(config, str(tmp_path / "run"), echo=lambda *_: None)
    import jax
    mesh = parallel.make_mesh(None, jax.devices()[:1])
    fake = type("FakeMesh", (), {"shape": {"data": 4, "fsdp": 2, "tensor": 1}})()
    with pytest.raises(parallel.MeshError, match="batch of 12 examples does not divide over data x fsdp = 4 x 2 = 8"):
        parallel.check_batch(np.zeros((1, 12, 5)), fake, 1, "the train batch")
    parallel.check_batch(np.zeros((1, 12, 5)), mesh, 1, "the train batch")


def test_xla_flags_after_jax_started_are_an_error_not_ignored():
    import ml_collections
    jax.numpy.zeros(1).block_until_ready()  # JAX is running in the test process
    with pytest.raises(ConfigError, match="before JAX's first computation"):
        parallel.apply_xla_flags(ml_collections.ConfigDict({"xla_flags": "--xla_cpu_enable_fast_math=false"}))
    assert parallel.apply_xla_flags(ml_collections.ConfigDict({"xla_flags": ""})) == ""


def test_cpu_devices_resolve_to_a_divisor_of_the_batch():
    assert parallel.resolve_cpu_devices(-1, batch_size=12, cores=2) == 2
    assert parallel.resolve_cpu_devices(-1, batch_size=12, cores=8) == 6  # largest count dividing 12
    assert parallel.resolve_cpu_devices(-1, batch_size=7, cores=4) == 1
    assert parallel.resolve_cpu_devices(0, batch_size=12, cores=8) == 0  # JAX's default
    assert parallel.resolve_cpu_devices(3, batch_size=12, cores=1) == 3
    with pytest.raises(parallel.MeshError, match="mesh.cpu_devices"):
        parallel.resolve_cpu_devices(-2, batch_size=12)


def test_split_cpu_runs_the_same_steps_as_one_device(small_text_file, tmp_path):
    """`mesh.cpu_devices=2` from the command line: two CPU devices, data parallel, same steps."""
    summaries, outputs = {}, {}
    for count in (0, 2):
        workdir = tmp_path / f"cpu{count}"
        # The 2-device run also passes config.xla_flags: its HLO dump shows that XLA got them.
        xla_flags = [f"--config.xla_flags=--xla_dump_to={tmp_path / 'dump'}"] if count else []
        result = subprocess.run(
            [sys.executable, "-m", "experiments.train", "--config=configs/gpt_char.py:tiny",
             f"--config.data.path={small_text_file}", "--config.train.progress_bar=false",
             f"--config.mesh.cpu_devices={count}", f"--workdir={workdir}", *xla_flags],
            cwd=REPO, capture_output=True, text=True, timeout=300,
            env=dict(os.environ, XLA_FLAGS=""))
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[count] = result.stdout
        summaries[count] = json.loads((workdir / "summary.json").read_text())
    assert "over 2 devices" in outputs[2] and "mesh:" not in outputs[0]
    assert any(p.name.endswith(".txt") for p in (tmp_path / "dump").iterdir())
    assert summaries[2]["last_train"]["loss"] == pytest.approx(summaries[0]["last_train"]["loss"], abs=TOLERANCE)
    assert summaries[2]["final_eval"]["loss"] == pytest.approx(summaries[0]["final_eval"]["loss"], abs=TOLERANCE)
