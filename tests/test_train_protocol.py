"""What the loop offers the coming families: frozen models as step constants, batches made from the
current model (host_batch), a fine-tuning start (train.init_from), several optimizers in one
state, and read-only restoring of any run's parameters."""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aigc_jax import families
from aigc_jax.config import ConfigError, apply_overrides
from aigc_jax.train import loop
from aigc_jax.train.checkpoints import CheckpointError
from aigc_jax.train.metrics import read_metrics
from aigc_jax.train.restore import restore_params
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task
from aigc_jax.train.update import apply_update
from configs import common

TEACHER = np.array([1.0, -2.0, 0.5, 3.0], np.float32)


def quiet(*_args):
    pass


def toy_config(*overrides):
    config = common.base("toy")
    config.train.update(num_steps=6, batch_size=8, log_every=1, eval_every=3, checkpoint_every=3,
                        progress_bar=False)
    config.lock()
    return apply_overrides(config, overrides)


def toy_task(config, calls=None):
    """Regression toward a frozen teacher, on inputs x ~ rng(seed, step) whose targets mix the
    teacher's answer with the current model's own (a stand-in for rollouts of the policy)."""
    tx = optax.sgd(0.05)

    def inputs(step):
        return np.random.default_rng([config.seed, step]).normal(size=(8, 4)).astype(np.float32)

    def init(rng):
        return TrainState.create({"w": 0.1 * jax.random.normal(rng, (4,))}, tx)

    def train_batch(step):  # shapes for compiling; host_batch makes the real ones
        return {"x": inputs(step), "own": np.zeros(8, np.float32)}

    def host_batch(state, step):
        if calls is not None:
            calls.append((step, int(jax.device_get(state.step))))
        x = inputs(step)
        return {"x": x, "own": x @ np.asarray(jax.device_get(state.params["w"]))}

    def loss_fn(params, batch, frozen):
        target = batch["x"] @ frozen["teacher"] + 0.1 * batch["own"]
        return jnp.mean(jnp.square(batch["x"] @ params["w"] - target))

    def train_step(state, batch, rng, frozen):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, frozen)
        state, norms = apply_update(state, grads, tx)
        return state.replace(step=state.step + 1), {"loss": loss, **norms}

    def eval_step(state, batch, frozen):
        error = jnp.sum(jnp.square(state.params["w"] - frozen["teacher"]))
        return {"error": error * jnp.sum(batch["weight"]), "count": jnp.sum(batch["weight"])}

    return Task(init=init, train_step=train_step, eval_step=eval_step, train_batch=train_batch,
                eval_batches=lambda: [{"x": inputs(10 ** 6), "weight": np.ones(8, np.float32)}],
                summarize_eval=lambda s: {"loss": float(s["error"] / s["count"])}, num_params=4,
                items_per_step=8, item_name="examples", frozen={"teacher": jnp.asarray(TEACHER)},
                host_batch=host_batch)


def test_host_batches_see_the_current_state_and_resume_bit_identically(tmp_path):
    config = toy_config()
    calls = []
    loop.train(config, str(tmp_path / "straight"), toy_task(config, calls), echo=quiet)
    assert calls == [(step, step) for step in range(6)]  # made at each step from that step's state
    half = apply_overrides(config.copy_and_resolve_references(), ["train.num_steps=3"])
    loop.train(half, str(tmp_path / "resumed"), toy_task(half), echo=quiet)
    messages = []
    loop.train(config, str(tmp_path / "resumed"), toy_task(config), echo=messages.append)
    assert "resumed from the checkpoint at step 3" in messages
    straight, resumed = restore_params(str(tmp_path / "straight")), restore_params(str(tmp_path / "resumed"))
    np.testing.assert_array_equal(straight.params["w"], resumed.params["w"])
    # The frozen teacher is a constant of the step: used (the error falls) but never saved.
    assert set(straight.params) == {"w"} and not straight.extra
    errors = [r["loss"] for r in read_metrics(str(tmp_path / "straight"), "eval")]
    assert errors[-1] < errors[0]


def test_host_batches_need_one_step_per_call(tmp_path):
    config = toy_config("train.steps_per_call=3", "train.log_every=3")
    with pytest.raises(ConfigError, match="host_batch.*train.steps_per_call=1"):
        loop.train(config, str(tmp_path / "run"), toy_task(config), echo=quiet)


def test_fine_tuning_starts_from_another_runs_parameters(tiny_lm_config, tmp_path):
    base = apply_overrides(tiny_lm_config, ["train.num_steps=10"])
    families.train(base, str(tmp_path / "base"), echo=quiet)
    source = restore_params(str(tmp_path / "base"))
    tuned = apply_overrides(base.copy_and_resolve_references(),
                            [f"train.init_from={tmp_path / 'base'}", "train.num_steps=2", "train.eval_every=2",
                             "optimizer.warmup_steps=1"])
    messages = []
    families.train(tuned, str(tmp_path / "tuned"), echo=messages.append)
    assert any(m.startswith(f"initialised the parameters from {tmp_path / 'base'}") for m in messages)
    first_eval = read_metrics(str(tmp_path / "tuned"), "eval")[0]
    assert first_eval["step"] == 0
    assert first_eval["loss"] == pytest.approx(read_metrics(str(tmp_path / "base"), "eval")[-1]["loss"], rel=1e-6)
    after = restore_params(str(tmp_path / "tuned"))
    assert after.step == 2
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(after.params),
                                                        jax.tree_util.tree_leaves(source.params)))
    wider = apply_overrides(tuned.copy_and_resolve_references(), ["model.embed_dim=48"])
    with pytest.raises(CheckpointError, match="do not fit"):
        families.train(wider, str(tmp_path / "wider"), echo=quiet)


def test_several_optimizers_update_only_their_own_part():
    params = {"policy": {"w": jnp.ones(3)}, "value": {"w": jnp.ones(2)}}
    txs = {"policy": optax.sgd(1.0), "value": optax.adam(0.1)}
    state = TrainState.create(params, txs)
    grads = {"w": jnp.full(3, 0.5)}
    new, norms = apply_update(state, grads, txs["policy"], part="policy")
    np.testing.assert_allclose(new.params["policy"]["w"], 0.5)
    np.testing.assert_array_equal(new.params["value"]["w"], 1.0)
    assert new.opt_state["value"] is state.opt_state["value"]
    assert float(norms["policy_grad_norm"]) == pytest.approx(np.sqrt(3 * 0.25))
    with pytest.raises(ValueError, match="optimizers for parts"):
        TrainState.create(params, {"policy": optax.sgd(1.0)})


def test_restoring_reads_only_and_skips_a_damaged_checkpoint(tmp_path):
    config = toy_config()
    workdir = str(tmp_path / "run")
    loop.train(config, workdir, toy_task(config), echo=quiet)
    before = sorted(os.listdir(workdir)), sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    newest = os.path.join(workdir, "checkpoints", "6")
    shutil.rmtree(os.path.join(newest, "default"))  # damaged: its arrays are gone
    run = restore_params(workdir)
    assert run.step == 3 and os.path.isdir(newest)
    assert (sorted(os.listdir(workdir)), sorted(os.listdir(os.path.join(workdir, "checkpoints")))) == before
    with pytest.raises(ConfigError, match="holds a 'toy' run, not 'lm'"):
        restore_params(workdir, task="lm")
    for step in ("3", "6"):
        shutil.rmtree(os.path.join(workdir, "checkpoints", step))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        restore_params(workdir)


def test_restoring_prints_no_storage_warnings(tmp_path, caplog):
    """Readers (experiments.sample, the math reports) restore without Orbax's read-only warnings."""
    import logging
    config = toy_config()
    workdir = str(tmp_path / "run")
    loop.train(config, workdir, toy_task(config), echo=quiet)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert restore_params(workdir).step == 6
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
