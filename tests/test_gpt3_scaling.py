"""GPT-3's sizes at scale on paper (aigc_jax/families/lm/scaling.py): the bytes of parameters and
optimizer state each device holds under the loop's shardings, counted by hand from the sharding
rules; 175B fits the chosen pod; and the LM train step compiled ahead of time on 8 simulated CPU
devices (a subprocess with XLA_FLAGS) puts each parameter where the rules say, with XLA's own
argument bytes equal to the sharding arithmetic."""
import json
import math
import os
import subprocess
import sys

import pytest

from aigc_jax.config import load_config
from aigc_jax.families.lm import scaling
from configs import gpt3
from tests.conftest import REPO, config_path

MESH_8 = (1, 4, 2)  # data, fsdp, tensor


def config_of(size):
    return load_config(config_path(f"gpt3.py:{size}"))


def param_floats_per_device(width, layers, vocab, context, fsdp, tensor):
    """By hand from SHARDING_RULES, for a (padded) vocabulary that tensor divides and a width that
    fsdp and tensor divide: the token embedding (vocab, embed) over (tensor, fsdp), the position
    table along embed over fsdp; the four weight matrices
    (qkv C x 3C, out C x C, up C x 4C, down 4C x C: 12 C^2) over fsdp x tensor; the qkv and
    up biases (3C + 4C) over tensor; the out and down biases and two layer norms (scale and
    bias: 6C) and the final norm (2C) replicated."""
    c = width
    embeddings = vocab * c / (fsdp * tensor) + context * c / fsdp
    per_layer = 12 * c * c / (fsdp * tensor) + 7 * c / tensor + 6 * c
    return embeddings + layers * per_layer + 2 * c


def test_state_bytes_per_device_on_eight_devices_by_hand_for_every_size():
    mesh = scaling.abstract_mesh(*MESH_8)
    for size in gpt3.TABLE_2_1:
        config = config_of(size)
        state = scaling.abstract_state(config)
        got = scaling.state_bytes_per_device(state, scaling.state_shardings(state, mesh))
        m = config.model
        vocab = scaling.build_model(config).padded_vocab_size
        assert vocab == 50_304 and m.embed_dim % 8 == 0  # 50,257 padded to 393 x 128
        params = 4 * param_floats_per_device(m.embed_dim, m.num_layers, vocab, m.context_length, fsdp=4, tensor=2)
        assert got["params"] == params, size
        # Adam's two moments sharded like their parameters, and two int32 step counters (Adam's and
        # the schedule's, replicated); the TrainState's own step.
        assert got["opt_state"] == 2 * params + 8, size
        assert got["other"] == 4 and got["total"] == got["params"] + got["opt_state"] + 4
        n = scaling.num_params(state)
        assert got["unsharded"] == 12 * n + 12  # float32 parameter + two moments, three int32 scalars
    # gpt3 small on 1 x 4 x 2, written out: token embedding 50,304 x 768 / 8, positions 2,048 x 768 / 4,
    # per layer 892,032 floats (221,184 + 73,728 + 294,912 + 294,912 matrices, 1,152 + 1,536 biases,
    # 4,608 replicated), 12 layers, final norm 1,536: 15,928,320 floats.
    small = scaling.abstract_state(config_of("small"))
    got = scaling.state_bytes_per_device(small, scaling.state_shardings(small, mesh))
    assert got["params"] == 4 * (4_829_184 + 393_216 + 12 * 892_032 + 1_536) == 63_713_280


def test_175b_state_fits_the_chosen_pod_and_not_one_device():
    config = config_of("175b")
    state = scaling.abstract_state(config)
    n = scaling.num_params(state)
    per_token = scaling.training_flops_per_token(config, n)
    m = config.model
    lookup = m.context_length * m.embed_dim  # the position table is looked up, not multiplied
    assert per_token == 6 * (n - lookup) + 12 * m.num_layers * m.embed_dim * m.context_length
    # The paper's Table D.1 puts 175B's training at 3.14e23 FLOPs: its 6 N over 300B tokens.
    assert 6 * (n - lookup) * gpt3.TOTAL_TOKENS == pytest.approx(3.14e23, rel=0.01)

    pod = scaling.PodAssumptions()
    total_flops = per_token * gpt3.TOTAL_TOKENS
    needed = total_flops / (312e12 * 0.4 * 30 * 86400)  # A100 bf16 peak, 40%, 30 days
    assert 512 < needed <= 1024 and scaling.pod_devices(total_flops) == 1024
    shape = scaling.pod_mesh_shape(1024, config.train.batch_size)
    assert shape == (1, 128, 8) and config.train.batch_size % 128 == 0
    got = scaling.state_bytes_per_device(state, scaling.state_shardings(state, scaling.abstract_mesh(*shape)))
    params = 4 * param_floats_per_device(m.embed_dim, m.num_layers, scaling.build_model(config).padded_vocab_size,
                                         m.context_length, fsdp=128, tensor=8)
    assert got["params"] == params and got["total"] == 3 * params + 12
    assert got["unsharded"] > 24 * pod.device_memory  # it does not fit one device, nor 24
    assert got["total"] + got["params"] < 0.05 * pod.device_memory  # state + gradients: < 5% of 80 GB
    assert scaling.training_days(total_flops, 1024) == pytest.approx(total_flops / (1024 * 312e12 * 0.4) / 86400)


def test_pod_mesh_rejects_a_batch_that_does_not_divide():
    with pytest.raises(ValueError, match="does not divide over fsdp = 128"):
        scaling.pod_mesh_shape(1024, 1000)


def compile_in_subprocess(size, tmp_path):
    out = tmp_path / f"{size}.json"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, os.path.abspath(__file__), size, str(out)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def check_compiled(r, size):
    config = config_of(size)
    c, vocab = config.model.embed_dim, scaling.build_model(config).padded_vocab_size
    assert r["devices"] == 8
    # The compiled step takes each parameter split as the rules say: qkv (embed, heads) over
    # (fsdp, tensor), the token embedding (vocab, embed), padded to 50,304 rows, over (tensor, fsdp).
    assert r["qkv"] == {"spec": ["fsdp", "tensor"], "shard": [c // 4, 3 * c // 2]}
    assert r["token_embed"] == {"spec": ["tensor", "fsdp"], "shard": [vocab // 2, c // 4]}
    assert r["mu_qkv_spec"] == ["fsdp", "tensor"]  # Adam's first moment like its parameter
    # Every device holds exactly the arithmetic's bytes (from each device's own index slices).
    assert r["device_bytes_min"] == r["device_bytes_max"] == r["state_total"]
    accum, micro, window = r["batch_shape"]
    assert accum * micro == config.train.batch_size and micro == 4 and window == config.model.context_length + 1
    # XLA's analysis of the partitioned step: its arguments are the state shard plus this device's
    # quarter of the batch (the rng key adds nothing), and the donated state is aliased in full.
    assert r["memory"]["argument"] == r["state_total"] + accum * (micro // 4) * window * 4
    assert r["memory"]["alias"] == r["state_total"]


def test_small_train_step_compiles_ahead_of_time_on_fsdp_and_tensor_axes(tmp_path):
    check_compiled(compile_in_subprocess("small", tmp_path), "small")


@pytest.mark.slow
def test_175b_train_step_compiles_ahead_of_time_on_eight_devices(tmp_path):
    check_compiled(compile_in_subprocess("175b", tmp_path), "175b")


def worker(size, out):
    """Compiles `size`'s train step on the 1 x 4 x 2 mesh of this process's 8 CPU devices."""
    import jax
    from aigc_jax import parallel
    config = config_of(size)
    mesh = parallel.make_mesh(dict(zip(parallel.MESH_AXES, MESH_8)))
    result = scaling.compile_train_step(config, mesh)
    state_sharding, _, _ = result.compiled.input_shardings[0]
    state = scaling.abstract_state(config)
    shardings = scaling.state_shardings(state, mesh)
    per_device = {d: 0 for d in mesh.devices.flat}
    for leaf, sharding in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(shardings)):
        for device, index in sharding.devices_indices_map(leaf.shape).items():
            per_device[device] += math.prod(len(range(*s.indices(n))) for s, n in zip(index, leaf.shape)) * leaf.dtype.itemsize

    def describe(sharding, shape):
        return {"spec": [s for s in sharding.spec] + [None] * (len(shape) - len(sharding.spec)),
                "shard": list(sharding.shard_shape(shape))}

    qkv = state.params["block_0"]["attn"]["qkv"]["kernel"]
    embed = state.params["token_embed"]["embedding"]
    mu = jax.tree_util.tree_leaves(state_sharding.opt_state, is_leaf=lambda x: hasattr(x, "mu"))
    mu_qkv = next(x for x in mu if hasattr(x, "mu")).mu["block_0"]["attn"]["qkv"]["kernel"]
    report = {"devices": jax.device_count(), "batch_shape": list(result.batch_shape), "memory": result.memory,
              "qkv": describe(state_sharding.params["block_0"]["attn"]["qkv"]["kernel"], qkv.shape),
              "token_embed": describe(state_sharding.params["token_embed"]["embedding"], embed.shape),
              "mu_qkv_spec": describe(mu_qkv, qkv.shape)["spec"],
              "state_total": scaling.state_bytes_per_device(state, shardings)["total"],
              "device_bytes_min": min(per_device.values()), "device_bytes_max": max(per_device.values()),
              "compile_seconds": result.compile_seconds}
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2])
