"""Audio from a trained WaveNet run, by fast generation (aigc_jax/families/wavenet/generation.py).

  python -m experiments.synthesize --workdir=runs/wn_speaker --seconds=2 --speaker=3
  python -m experiments.synthesize --workdir=runs/wn_vocoder --mel=utterance.wav   # or a .npy [frames, n_mels]
  python -m experiments.synthesize --workdir=runs/wn_vocoder --mel=test:0          # a held-out corpus utterance

Writes WAV files (--out, default WORKDIR/synth/...) and prints the real-time factor (seconds of
compute per second of audio, compilation excluded).
"""
import os
import time

from absl import flags

from experiments import cli

flags.DEFINE_string("workdir", None, "A WaveNet run.")
flags.DEFINE_float("seconds", 2.0, "Length to generate (unconditional / speaker runs).")
flags.DEFINE_integer("speaker", 0, "Speaker id (runs with global conditioning).")
flags.DEFINE_string("mel", "", "Vocoder runs: a .npy of log-mel frames [frames, n_mels], a .wav file whose "
                               "log-mels to use, or SPLIT:INDEX for a corpus utterance (test:0).")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0: the most likely class each step).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("out", "", "Output WAV path (default WORKDIR/synth/<what>.wav).")


def conditioning_mel(config, spec: str):
    """(log-mel [frames, n_mels], reference waveform or None, a name) from --mel."""
    import numpy as np

    from aigc_jax.audio.wav import read_wav
    from aigc_jax.families.wavenet import data as wave_data
    d = config.data
    if ":" in spec and not os.path.exists(spec):
        split, index = spec.split(":", 1)
        count = {"train": d.num_train, "validation": d.num_validation, "test": d.num_test}.get(split)
        if count is None:
            raise cli.ConfigError(f"--mel={spec!r}: the split must be train, validation or test")
        utterances = wave_data.load_split(d, split, count, config.seed, d.crop_frames)  # as training and experiments.wavenet
        i = int(index)
        if not 0 <= i < len(utterances.mels):
            raise cli.ConfigError(f"--mel={spec!r}: the {split} split has {len(utterances.mels)} utterances")
        return utterances.mels[i], utterances.waveforms[i][1:], f"{split}{i}"
    if not os.path.exists(spec):
        raise FileNotFoundError(f"--mel: no file at {spec!r}")
    name = os.path.splitext(os.path.basename(spec))[0]
    if spec.endswith(".npy"):
        mel = np.load(spec).astype(np.float32)
        if mel.ndim != 2 or mel.shape[1] != d.n_mels:
            raise ValueError(f"--mel={spec!r} has shape {mel.shape}; the run expects [frames, {d.n_mels}]")
        return mel, None, name
    from aigc_jax.audio.resample import resample
    wave, rate = read_wav(spec)
    wave = resample(wave, rate, d.sample_rate)
    return wave_data.log_mel(wave, d), wave, name


def main(_):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from aigc_jax.audio.wav import write_wav
    from aigc_jax.families.wavenet.generation import generate
    from aigc_jax.families.wavenet.task import load_trained
    if not flags.FLAGS.workdir:
        raise cli.ConfigError("--workdir is required")
    config, model, params, step = load_trained(flags.FLAGS.workdir)
    d = config.data
    speaker = mel = None
    if model.num_speakers:
        if not 0 <= flags.FLAGS.speaker < model.num_speakers:
            raise cli.ConfigError(f"--speaker={flags.FLAGS.speaker}: the run has speakers 0-{model.num_speakers - 1}")
        speaker = jnp.array([flags.FLAGS.speaker])
    if model.mel_channels:
        if not flags.FLAGS.mel:
            raise cli.ConfigError("this run is a vocoder: pass --mel (a .npy, a .wav or test:0)")
        frames, _, name = conditioning_mel(config, flags.FLAGS.mel)
        mel = jnp.asarray(frames[None])
        count = frames.shape[0] * d.hop
    else:
        count = int(flags.FLAGS.seconds * d.sample_rate)
        name = f"speaker{flags.FLAGS.speaker}" if speaker is not None else "unconditional"
    rng = jax.random.key(flags.FLAGS.seed)
    run = lambda: generate(model, params, rng, count, speaker=speaker, mel=mel,  # noqa: E731
                           temperature=flags.FLAGS.temperature).block_until_ready()
    run()  # compile
    start = time.perf_counter()
    wave = np.asarray(run()[0])
    elapsed = time.perf_counter() - start
    out = flags.FLAGS.out or os.path.join(flags.FLAGS.workdir, "synth", f"{name}_step{step}.wav")
    write_wav(out, wave, d.sample_rate)
    audio_seconds = count / d.sample_rate
    print(f"wrote {out}: {audio_seconds:.2f} s of audio in {elapsed:.2f} s "
          f"(real-time factor {elapsed / audio_seconds:.2f}, {count / elapsed:,.0f} samples/s)")


if __name__ == "__main__":
    cli.run(main)
