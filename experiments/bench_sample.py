"""Benchmark: tokens/s of KV-cache decoding against recomputing the whole window each step.

  python -m experiments.bench_sample                       # shakespeare_cpu model size, random weights
  python -m experiments.bench_sample --workdir=runs/shakespeare   # a trained run's weights and config

Both methods run the same jit-compiled loop (aigc_jax.decoding.sampling, method='cached' or
'naive'), the same sampler and the same context policy, and produce the same tokens;
the naive method runs a forward pass over every row's window at each step (padded to a
power-of-two bucket, as a static-shape JAX reference must), the cached one a single-token
step. Two settings:
  fits     context_length = prompt + new tokens, so no window ever slides: the naive
           method recomputes the whole prefix at each step (what small reference codebases do).
  window   the model's own context (64 for shakespeare_cpu): 256 new tokens overflow it and
           both methods follow the sliding-window policy (window_shift tokens dropped at a time).
Each cell is the median of --repeats timed runs after one compile-and-warm-up run.
"""
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from aigc_jax.decoding import sampling
from aigc_jax.config import load_config
from aigc_jax.nn.transformer import TransformerLM
from aigc_jax.nn.params import count_params
from experiments import cli

flags.DEFINE_string("workdir", "", "Optional trained LM workdir; default: random weights of the config's model.")
flags.DEFINE_string("model_config", "configs/gpt_char.py:shakespeare_cpu", "Model size when no --workdir is given.")
flags.DEFINE_integer("vocab_size", 65, "Vocabulary without --workdir (65 = tiny Shakespeare's characters).")
flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes.")
flags.DEFINE_integer("new_tokens", 256, "New tokens per row.")
flags.DEFINE_integer("prompt_length", 16, "Prompt tokens per row.")
flags.DEFINE_list("window_shifts", ["16", "1"], "window_shift values for the sliding-window setting.")
flags.DEFINE_integer("repeats", 5, "Timed runs per cell (median reported).")
flags.DEFINE_float("temperature", 0.8, "Sampler temperature.")
flags.DEFINE_integer("top_k", 40, "Sampler top-k.")

FLAGS = flags.FLAGS


def load_model():
    if FLAGS.workdir:
        from aigc_jax.families.lm import inference
        lm = inference.load_language_model(FLAGS.workdir)
        return lm.model, lm.params, f"{FLAGS.workdir} (step {lm.step})"
    config = load_config(FLAGS.model_config)
    model = TransformerLM.from_config(config.model, FLAGS.vocab_size)
    params = model.init(jax.random.key(0), jnp.zeros((1, model.context_length), jnp.int32))["params"]
    return model, params, f"{FLAGS.model_config}, random weights, vocabulary {FLAGS.vocab_size}"


def with_context(model: TransformerLM, params, context: int):
    """The same model with a longer context: a longer learned position table (random rows
    past the trained ones: speed does not depend on weight values)."""
    if context <= model.context_length:
        return model, params
    longer = model.clone(context_length=context)
    fresh = longer.init(jax.random.key(1), jnp.zeros((1, context), jnp.int32))["params"]
    if "pos_embed" in params:
        table = fresh["pos_embed"]["embedding"].at[:model.context_length].set(params["pos_embed"]["embedding"])
        params = {**params, "pos_embed": {"embedding": table}}
    return longer, params


def time_decoding(model, params, prompts, settings, method) -> tuple[float, np.ndarray]:
    """Median seconds of one generate() call, and its tokens (for the equality check)."""
    rng = jax.random.key(0)
    first = sampling.generate(model, params, prompts, rng, settings, method=method)  # compiles
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        sampling.generate(model, params, prompts, rng, settings, method=method)  # returns host arrays
        times.append(time.perf_counter() - start)
    return statistics.median(times), first.tokens


def main(overrides):
    if overrides:
        raise cli.ConfigError("bench_sample takes no --config.* overrides")
    model, params, source = load_model()
    load_before = os.getloadavg()[0]
    rows = []
    cases = [("fits", 0)] + [("window", int(s)) for s in FLAGS.window_shifts]
    for setting, shift in cases:
        if setting == "fits":
            case_model, case_params = with_context(model, params, FLAGS.prompt_length + FLAGS.new_tokens)
        else:
            case_model, case_params = model, params
        settings = sampling.SamplingSettings(max_new_tokens=FLAGS.new_tokens, temperature=FLAGS.temperature,
                                             top_k=FLAGS.top_k, window_shift=shift)
        for batch in (int(b) for b in FLAGS.batch_sizes):
            prompts = np.random.default_rng(batch).integers(0, model.vocab_size, (batch, FLAGS.prompt_length))
            cached_s, cached_tokens = time_decoding(case_model, case_params, list(prompts), settings, "cached")
            naive_s, naive_tokens = time_decoding(case_model, case_params, list(prompts), settings, "naive")
            same = bool(np.array_equal(cached_tokens, naive_tokens))
            total = batch * FLAGS.new_tokens
            label = (f"fits (context {case_model.context_length})" if setting == "fits" else
                     f"window (context {case_model.context_length}, shift {shift})")
            rows.append((label, batch, total / cached_s, total / naive_s, naive_s / cached_s, same))
            print(f"  {label}, batch {batch}: cached {cached_s * 1e3:.1f} ms, naive {naive_s * 1e3:.1f} ms", flush=True)
    load_after = os.getloadavg()[0]

    device = jax.devices()[0]
    print(f"\nmodel: {source}; {count_params(params):,} parameters; {model.num_layers} layers x "
          f"{model.embed_dim} wide, positions {model.positions}")
    print(f"device: {device.platform} ({device.device_kind}), {os.cpu_count()} CPU cores; 1-minute load "
          f"average {load_before:.1f} before, {load_after:.1f} after (above the core count: a shared machine)")
    print(f"prompt {FLAGS.prompt_length} tokens, {FLAGS.new_tokens} new tokens, temperature {FLAGS.temperature}, "
          f"top_k {FLAGS.top_k}; median of {FLAGS.repeats} runs after a warm-up\n")
    print("| setting | batch | cached tokens/s | naive tokens/s | speed-up (cached / naive) | same tokens |")
    print("| --- | ---: | ---: | ---: | ---: | :---: |")
    for label, batch, cached, naive, ratio, same in rows:
        print(f"| {label} | {batch} | {cached:,.0f} | {naive:,.0f} | {ratio:.1f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    cli.run(main)
