"""WaveNet's test NLL beside the baselines, on whole held-out utterances.

  python -m experiments.wavenet --workdir=runs/wn_vocoder [--orders=1,2,8,32] [--markdown=FILE]

Test split: `data.num_test` utterances of sentences never in training (aigc_jax/data/speech.py);
the baselines (aigc_jax/families/wavenet/baselines.py) are fitted on the run's training
utterances and scored on the same test samples' mu-law classes, in bits per sample.
"""
from absl import flags

from experiments import cli

flags.DEFINE_string("workdir", None, "A WaveNet run (categorical output).")
flags.DEFINE_string("orders", "1,2,8,32", "Orders of the linear-predictor baselines.")
flags.DEFINE_string("markdown", "", "Also write the table to this file.")


def main(_):
    import numpy as np

    from aigc_jax.audio import mulaw
    from aigc_jax.families.wavenet import baselines, data as wave_data, task as wave_task
    if not flags.FLAGS.workdir:
        raise cli.ConfigError("--workdir is required")
    config, model, params, step = wave_task.load_trained(flags.FLAGS.workdir)
    if model.output != "categorical":
        raise cli.ConfigError("the NLL table compares mu-law classes: it needs a categorical-output run")
    d = config.data
    train = wave_data.load_split(d, "train", d.num_train, config.seed, d.crop_frames)
    test = wave_data.load_split(d, "test", d.num_test, config.seed, d.crop_frames)
    train_waves = [w[1:] for w in train.waveforms]  # without the leading silence sample
    test_waves = [w[1:] for w in test.waveforms]
    train_classes = np.concatenate([np.asarray(mulaw.encode(w)) for w in train_waves])
    test_classes = np.concatenate([np.asarray(mulaw.encode(w)) for w in test_waves])
    rows = [("mu-law marginal (histogram of the training audio)", baselines.marginal_bits(train_classes, test_classes))]
    for order in [int(o) for o in flags.FLAGS.orders.split(",") if o]:
        rows.append((f"linear predictor, order {order}",
                     baselines.linear_predictor_bits(train_waves, test_waves, order, train_classes)))
    rows.append((f"WaveNet ({flags.FLAGS.workdir}, step {step})",
                 wave_task.utterance_nll_bits(model, params, test, d)))
    seconds = len(test_classes) / d.sample_rate
    lines = [f"Test: {len(test.mels)} held-out utterances, {seconds:.1f} s, {len(test_classes):,} samples at "
             f"{d.sample_rate} Hz ({test.description})", "", "| model | bits per sample |", "| --- | --- |"]
    lines += [f"| {name} | {bits:.3f} |" for name, bits in rows]
    text = "\n".join(lines)
    print(text)
    if flags.FLAGS.markdown:
        with open(flags.FLAGS.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    cli.run(main)
