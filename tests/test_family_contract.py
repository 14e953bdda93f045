"""The contract every family keeps with the one loop, one row per family (a new family adds a row).

For each: the Task's init, train and eval steps run under jit and change the state; train batches
are a pure function of (seed, step); a run stopped and resumed from its checkpoint ends bit for bit
where a straight run ends; the summary names the family's items and evaluation metric; an unknown
config field is refused by name.
"""
import dataclasses
import math

import jax
import numpy as np
import pytest

from aigc_jax import families, parallel
from aigc_jax.config import ConfigError, apply_overrides, load_config
from aigc_jax.train.metrics import read_metrics
from aigc_jax.train.placement import place
from aigc_jax.train.restore import restore_params
from tests.conftest import config_path


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    config: str
    overrides: tuple = ()
    needs_text: bool = False  # data.path = the session's small text file
    needs_chat_base: bool = False  # chat.base = the session's tiny base LM run
    needs_chat_sft: bool = False  # chat.sft = the session's tiny SFT run
    needs_chat_rm: bool = False  # chat.rm = the session's tiny reward model run (and chat.sft)

    def load(self, inputs: tuple, *extra: str):
        return load_config(config_path(self.config), ["train.progress_bar=false", *self.overrides, *inputs, *extra])


# Stateful options on where they exist (EMA, batch norm, packing, several critic steps, the
# gradient penalty's random interpolates, class conditioning), so resume equality covers them.
ROWS = [
    Row("lm", "gpt_char.py:tiny", ("optimizer.decay_steps=4", "optimizer.warmup_steps=1"), needs_text=True),
    Row("seq2seq", "seq2seq.py:tiny", ("optimizer.decay_steps=4", "optimizer.warmup_steps=1")),
    Row("gan_2d", "gan_2d.py:tiny", ("model.pack=2", "train.n_critic=2", "loss.name=wgan_gp",
                                     "train.ema_decay=0.9", "model.num_classes=8")),
    Row("dcgan", "dcgan.py:tiny", ("eval.classifier_steps=0", "train.ema_decay=0.9")),
    Row("stylegan", "stylegan.py:tiny"),  # r1_interval 3, pl_interval 2: the lazy terms at steps 0, 2, 3
    Row("clip", "clip.py:tiny", ("optimizer.decay_steps=4", "optimizer.warmup_steps=1")),
    Row("caption", "caption.py:tiny", ("optimizer.decay_steps=4", "optimizer.warmup_steps=1")),
    Row("clip_supervised", "clip.py:tiny,supervised", ("optimizer.decay_steps=4", "optimizer.warmup_steps=1")),
    Row("vae", "vae.py:tiny", ("optimizer.decay_steps=4", "optimizer.warmup_steps=1", "data.binarize=stochastic")),
    Row("flow_images", "realnvp.py:tiny", ("optimizer.decay_steps=4", "optimizer.warmup_steps=1")),
    Row("flow_2d", "realnvp.py:moons,tiny", ("optimizer.decay_steps=4", "optimizer.warmup_steps=1")),
    Row("wavenet", "wavenet.py:tiny", ("optimizer.decay_steps=4", "model.global_conditioning=true")),  # + the vocoder's mel
    Row("chat_sft", "chat.py:tiny", ("optimizer.decay_steps=4",), needs_chat_base=True),
    Row("chat_dpo", "chat.py:dpo,tiny", ("optimizer.decay_steps=4",), needs_chat_sft=True),
    Row("chat_rm", "chat.py:rm,tiny", ("optimizer.decay_steps=4",), needs_chat_sft=True),
    Row("chat_ppo", "chat.py:ppo,tiny", ("chat.kl_target=0.5",), needs_chat_sft=True,
        needs_chat_rm=True),  # rollouts from the state; the adaptive KL weight
]
SHORT = ("train.num_steps=4", "train.eval_every=2", "train.checkpoint_every=2", "train.log_every=1")


def quiet(*_args):
    pass


def leaves(tree):
    return [np.array(x, copy=True) for x in jax.tree_util.tree_leaves(tree)]


def uses_chat_runs(row: Row) -> bool:
    return row.needs_chat_base or row.needs_chat_sft or row.needs_chat_rm


def xdist_group(row: Row) -> str:
    """A row's tests run on one worker, one after the other, so its programs are compiled once and
    loaded from the compilation cache after; the chat rows share the session's tiny chat runs with
    tests/test_chat.py, trained once by one worker."""
    return "tiny_chat" if uses_chat_runs(row) else f"contract_{row.name}"


@pytest.fixture(params=[pytest.param(r, marks=pytest.mark.xdist_group(xdist_group(r))) for r in ROWS],
                ids=lambda row: row.name)
def row(request):
    return request.param


@pytest.fixture
def inputs(row, request) -> tuple:
    """The row's data overrides (a base run is trained only for the rows that need it)."""
    out = []
    if row.needs_text:
        out.append(f"data.path={request.getfixturevalue('small_text_file')}")
    if row.needs_chat_base:
        out.append(f"chat.base={request.getfixturevalue('tiny_chat_base')}")
    if row.needs_chat_sft:
        out.append(f"chat.sft={request.getfixturevalue('tiny_chat_sft')}")
    if row.needs_chat_rm:
        out.append(f"chat.rm={request.getfixturevalue('tiny_chat_rm')}")
    return tuple(out)


def test_steps_run_under_jit_and_batches_are_pure(row, inputs):
    # compiled as the loop compiles them (state donated, shardings explicit) from the resume test's
    # config: the same programs, so the row's second test loads them from the compilation cache
    config = row.load(inputs, *SHORT)
    assert config.task in families.FAMILIES
    task = families.build_task(config, "")
    assert "task" in task.model_fields and len(task.model_fields) > 1 and task.num_params > 0
    init_rng, rng = jax.random.split(jax.random.key(config.seed))
    # no weakly typed leaf: the loop compiles its step ahead for the state's shapes and dtypes, which
    # a restored checkpoint has too; a weak leaf would make the first call's program another one
    weak = [jax.tree_util.keystr(path) for path, leaf in jax.tree_util.tree_leaves_with_path(
        jax.eval_shape(task.init, init_rng)) if leaf.weak_type]
    assert not weak, f"weakly typed state leaves: {weak[:4]}"
    placement = place(task, parallel.make_mesh(config.get("mesh")), init_rng)
    state = placement.init(task, init_rng)
    batch = task.train_batch(3)
    for a, b in zip(leaves(batch), leaves(task.train_batch(3)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(batch), leaves(task.train_batch(4))))
    before = leaves(state.params)  # copies: the step donates the state's buffers
    frozen = placement.frozen_args(placement.put_frozen(task.frozen))  # other runs' models, constants of the steps
    step = placement.jit_train_step(task)
    new_state, metrics = step(state, batch, rng, *frozen)
    new_state, metrics = step(new_state, task.train_batch(1), rng, *frozen)  # a warm-up may start from rate 0
    assert int(new_state.step) == 2
    assert all(math.isfinite(float(v)) for v in jax.device_get(metrics).values())
    assert any(not np.array_equal(a, b) for a, b in zip(before, leaves(new_state.params)))
    sums = placement.jit_eval_step(task)(new_state, placement.put_eval(task.eval_batches()[0]), *frozen)
    summary = task.summarize_eval(jax.device_get(sums))
    assert all(math.isfinite(v) for v in summary.values())
    if task.eval_metric:
        assert task.eval_metric in summary


def test_stopped_and_resumed_run_equals_a_straight_run(row, inputs, tmp_path):
    config = row.load(inputs, *SHORT)
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    summary = families.train(config, straight, echo=quiet)
    families.train(apply_overrides(config.copy_and_resolve_references(), ["train.num_steps=2"]), resumed,
                   echo=quiet)
    messages = []
    families.train(config, resumed, echo=messages.append)
    assert "resumed from the checkpoint at step 2" in messages
    a, b = restore_params(straight), restore_params(resumed)
    assert a.step == b.step == 4
    for x, y in zip(leaves((a.params, a.extra)), leaves((b.params, b.extra)), strict=True):
        np.testing.assert_array_equal(x, y)
    untimed = lambda record: {k: v for k, v in record.items() if k != "elapsed_seconds"}  # noqa: E731
    assert [r["step"] for r in read_metrics(resumed, "eval")] == [0, 2, 4]
    assert untimed(read_metrics(resumed, "eval")[-1]) == untimed(read_metrics(straight, "eval")[-1])
    task = families.build_task(config, "")
    assert summary["item_name"] == task.item_name and summary["eval_metric"] == task.eval_metric
    assert f"{task.item_name}_per_second" in read_metrics(straight, "train")[-1]


def test_an_unknown_field_is_refused_by_name(row):
    with pytest.raises(ConfigError, match=r"unknown config field 'data\.no_such_field'"):
        row.load((), "data.no_such_field=1")
    with pytest.raises(ConfigError, match=r"unknown config field 'trian\.num_steps' \(did you mean 'train\.num_steps'"):
        row.load((), "trian.num_steps=1")


def test_every_config_has_a_tiny_variant_the_loop_accepts():
    """Tests and smoke runs use `:tiny`; each must be a valid, short run of a registered family."""
    import glob
    import os
    from aigc_jax.train.loop import check_steps_per_call
    names = sorted(os.path.basename(p) for p in glob.glob(config_path("*.py")))
    configs = [n for n in names if n not in ("__init__.py", "common.py")]
    assert len(configs) >= 7
    for name in configs:
        config = load_config(config_path(f"{name}:tiny"))
        assert config.task in families.FAMILIES, name
        assert config.train.num_steps <= 50, name
        check_steps_per_call(config.train)
    covered = {row.config.split(":")[0] for row in ROWS}
    # markov_lm is the lm family on generated data, gpt3 the lm family at the paper's sizes, codex the
    # lm family on code (trained and judged end to end in tests/test_codegen.py)
    assert covered >= set(configs) - {"markov_lm.py", "gpt3.py", "codex.py"}
