"""Benchmark: WaveNet samples per second, fast generation (per-layer queues) against naive
generation (the full forward pass over the receptive field for every sample), and the real-time
factor of fast generation.

  python -m experiments.bench_wavenet                     # configs/wavenet.py's model (speaker-conditioned), random weights
  python -m experiments.bench_wavenet --workdir=runs/wn   # a trained run's weights and model

Both are jit-compiled `lax.scan` loops drawing the same samples (tests/test_wavenet.py checks it).
Each figure is the median of --repeats timed runs after one compile-and-warm-up run; naive
generation makes fewer samples (--naive_samples), as it is slow, and is compared per sample.
"""
import statistics
import time

from absl import flags

from experiments import cli

flags.DEFINE_string("workdir", "", "A WaveNet run; default: random weights of configs/wavenet.py:speaker.")
flags.DEFINE_integer("fast_samples", 16000, "Samples per fast-generation run (1 s at 16 kHz).")
flags.DEFINE_integer("naive_samples", 200, "Samples per naive-generation run.")
flags.DEFINE_integer("repeats", 3, "Timed runs per figure (median).")


def timed(fn, repeats: int) -> float:
    fn()  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(_):
    import jax
    import jax.numpy as jnp

    from aigc_jax.families.wavenet.generation import generate, generate_naive
    from aigc_jax.families.wavenet.model import receptive_field
    from aigc_jax.families.wavenet.task import build_model, load_trained
    from configs.wavenet import get_config
    if flags.FLAGS.workdir:
        config, model, params, _ = load_trained(flags.FLAGS.workdir)
        if model.mel_channels:
            model = model.clone(mel_channels=0)  # the vocoder's stack without its mel input: same cost per sample
            params = {k: v for k, v in params.items() if k not in ("upsampler", "mel_proj")}
    else:
        config = get_config("speaker")
        model = build_model(config)
        params = model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32), jnp.zeros((1,), jnp.int32))["params"]
    speaker = jnp.zeros((1,), jnp.int32) if model.num_speakers else None
    rng = jax.random.key(0)
    fast_n, naive_n, repeats = flags.FLAGS.fast_samples, flags.FLAGS.naive_samples, flags.FLAGS.repeats
    fast = timed(lambda: generate(model, params, rng, fast_n, speaker=speaker).block_until_ready(), repeats)
    naive = timed(lambda: generate_naive(model, params, rng, naive_n, speaker=speaker).block_until_ready(), repeats)
    fast_rate, naive_rate = fast_n / fast, naive_n / naive
    rate = config.data.sample_rate
    print(f"WaveNet: {len(model.dilations)} layers, receptive field {receptive_field(model.dilations)} samples, "
          f"residual {model.residual}, skip {model.skip}; batch 1; jax {jax.__version__} on "
          f"{jax.devices()[0].platform}")
    print("| generation | samples | seconds (median) | samples / s | real-time factor |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| fast (queues) | {fast_n} | {fast:.3f} | {fast_rate:,.0f} | {rate / fast_rate:.2f} |")
    print(f"| naive (full window) | {naive_n} | {naive:.3f} | {naive_rate:,.1f} | {rate / naive_rate:.1f} |")
    print(f"fast / naive: {fast_rate / naive_rate:.0f}x samples per second")


if __name__ == "__main__":
    cli.run(main)
