"""The vocoder's table: held-out utterances rebuilt from their log-mels by a WaveNet run and by
Griffin-Lim from the same mels, scored against the originals (aigc_jax/families/wavenet/resynthesis.py).

  python -m experiments.vocoder --workdir=runs/wn_vocoder [--utterances=8] [--examples=2 --out=DIR]

Rows: the mu-law (8-bit) quantised original (the floor of any 256-class model's output), the
original with mu-law class noise of each --class_noise std (what a sampling vocoder whose
per-sample spread is that wide writes at best; its entropy in bits per sample beside it), fast
Griffin-Lim at each --gl_iterations, and WaveNet at each --temperatures. Columns: log-spectral
distance and mel-cepstral distortion in dB (aigc_jax/audio/distances.py; mean and spread over
utterances) and the seconds each took. --examples writes the first few utterances' original,
WaveNet and Griffin-Lim audio as WAV files, cut to --example_seconds, and one spectrogram picture.
"""
import os
import time

from absl import flags

from experiments import cli

flags.DEFINE_string("workdir", None, "A WaveNet vocoder run (model.local_conditioning=True).")
flags.DEFINE_integer("utterances", 8, "The first this many test utterances.")
flags.DEFINE_string("gl_iterations", "32,100", "Griffin-Lim iteration counts, one row each.")
flags.DEFINE_string("temperatures", "1.0", "WaveNet sampling temperatures, one row each.")
flags.DEFINE_string("class_noise", "", "Standard deviations (in mu-law classes) of noise added to the original's "
                                        "classes, one row each, e.g. 0.5,1,2,4.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("range_db", "60,80", "Spectral floors below each original's peak (dB), one pair of columns each: "
                                         "how deep the valleys between harmonics and formants count.")
flags.DEFINE_integer("examples", 0, "Write this many utterances' WAV files and a spectrogram picture to --out.")
flags.DEFINE_float("example_seconds", 2.0, "Length of the example WAV files and pictures.")
flags.DEFINE_string("out", "", "Folder for the examples (default WORKDIR/vocoder).")
flags.DEFINE_string("markdown", "", "Also write the table to this file.")


def spectrogram_picture(path: str, rows: dict, data_config, seconds: float) -> None:
    """One column per utterance, one row per source: log-magnitude STFTs in dB."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from aigc_jax.audio.spectral import magnitude_spectrogram
    d = data_config
    names, columns = list(rows), len(next(iter(rows.values())))
    fig, axes = plt.subplots(len(names), columns, figsize=(4 * columns, 2.2 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c, wave in enumerate(rows[name]):
            db = 20 * np.log10(np.maximum(np.asarray(magnitude_spectrogram(wave, d.n_fft, d.hop)), 1e-3)).T
            ax = axes[r][c]
            ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max(),
                      extent=(0, len(wave) / d.sample_rate, 0, d.sample_rate / 2000))
            ax.set_title(f"{name}, test utterance {c}", fontsize=8)
            ax.set_xlabel("s", fontsize=7)
            ax.set_ylabel("kHz", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def main(_):
    from aigc_jax.audio.wav import write_wav
    from aigc_jax.families.wavenet import data as wave_data, resynthesis, task as wave_task
    f = flags.FLAGS
    if not f.workdir:
        raise cli.ConfigError("--workdir is required")
    config, model, params, step = wave_task.load_trained(f.workdir)
    if not model.mel_channels:
        raise cli.ConfigError("the vocoder table needs a vocoder run (model.local_conditioning=True)")
    d = config.data
    test = wave_data.load_split(d, "test", d.num_test, config.seed, d.crop_frames)
    if not 1 <= f.utterances <= len(test.mels):
        raise cli.ConfigError(f"--utterances={f.utterances}: the test split has {len(test.mels)}")
    indices = list(range(f.utterances))
    ranges = [float(r) for r in f.range_db.split(",") if r]
    outputs, rows = {}, []

    def measure(name, make):
        start = time.perf_counter()
        waves = make()
        elapsed = time.perf_counter() - start
        outputs[name] = waves
        rows.append((name, [resynthesis.spectral_scores(test, waves, d, r) for r in ranges], elapsed))

    measure("original, mu-law quantised (8 bits)", lambda: resynthesis.class_noise_resynthesis(test, indices, 0.0))
    for std in [float(s) for s in f.class_noise.split(",") if s]:
        measure(f"original + mu-law class noise, std {std:g} ({resynthesis.rounded_gaussian_entropy_bits(std):.2f} bits)",
                lambda: resynthesis.class_noise_resynthesis(test, indices, std, f.seed))
    for iterations in [int(n) for n in f.gl_iterations.split(",") if n]:
        measure(f"Griffin-Lim, {iterations} iterations",
                lambda: resynthesis.griffin_lim_resynthesis(test, indices, d, iterations))
    for temperature in [float(t) for t in f.temperatures.split(",") if t]:
        measure(f"WaveNet ({f.workdir}, step {step}), temperature {temperature:g}",
                lambda: resynthesis.wavenet_resynthesis(model, params, test, indices, d, f.seed, temperature))
    seconds = sum(len(resynthesis.original(test, i)) for i in indices) / d.sample_rate
    lines = [f"Test: the first {len(indices)} held-out utterances, {seconds:.1f} s ({test.description}); "
             f"distances over speech frames (within 50 dB of each utterance's loudest), in dB, mean ± spread over "
             f"utterances, spectra floored a range below the original's peak; seconds include compilation", "",
             "| resynthesis | " + " | ".join(f"LSD, {r:g} dB range | MCD, {r:g} dB range" for r in ranges)
             + " | seconds |", "| --- |" + " --- | --- |" * len(ranges) + " --- |"]
    for name, scores, elapsed in rows:
        cells = [f"{s['lsd_db']:.2f} ± {s['lsd_sd']:.2f} | {s['mcd_db']:.2f} ± {s['mcd_sd']:.2f}" for s in scores]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {elapsed:.1f} |")
    text = "\n".join(lines)
    print(text)
    if f.markdown:
        with open(f.markdown, "w") as out:
            out.write(text + "\n")
    if f.examples:
        out_dir = f.out or os.path.join(f.workdir, "vocoder")
        os.makedirs(out_dir, exist_ok=True)
        keep = int(f.example_seconds * d.sample_rate)
        wavenet_name = next(name for name in outputs if name.startswith("WaveNet"))
        gl_name = [name for name in outputs if name.startswith("Griffin-Lim")][-1]
        sources = {"original": {i: resynthesis.original(test, i) for i in indices}, "WaveNet": outputs[wavenet_name],
                   "Griffin-Lim": outputs[gl_name]}
        shown = indices[:f.examples]
        for label, waves in sources.items():
            for i in shown:
                write_wav(os.path.join(out_dir, f"test{i}_{label.lower().replace('-', '_')}.wav"), waves[i][:keep],
                          d.sample_rate)
        picture = os.path.join(out_dir, "spectrograms.png")
        spectrogram_picture(picture, {label: [waves[i][:keep] for i in shown] for label, waves in sources.items()},
                            d, f.example_seconds)
        print(f"wrote {len(shown) * len(sources)} WAV files and {picture}")


if __name__ == "__main__":
    cli.run(main)
