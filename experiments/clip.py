"""Uses trained contrastive image-text runs (configs/clip.py):

  python -m experiments.clip --workdirs=runs/clip_s0,runs/clip_sig_s0
      one table row per run from its newest evaluation: retrieval recall@1/5 on seen and held-out
      pairs, zero-shot accuracy per factor on seen and held-out (shape, colour) pairs beside chance,
      the shape-swap test (own caption against a one-shape-changed twin), seen and held-out side by
      side (their difference is the compositional gap); --markdown for a results file; --mean adds
      mean +- sd over the runs.
  python -m experiments.clip --workdirs=runs/clip_s0,runs/clip_cnn_s0 --probe
      linear-probe accuracy per factor of each run's image features (before the projection) on
      one-object scenes, beside the same encoder at its initialisation (linear_probe.py).
  python -m experiments.clip --workdirs=runs/clip_s0 --image_file=scene.png --texts="a red circle|a blue star"
      ranks the texts for any image (resized to the run's input) by the model's probabilities.
"""
import numpy as np
from absl import flags

from aigc_jax.families.clip import data as clip_data
from aigc_jax.families.clip import task as clip_task
from aigc_jax.families.clip import zero_shot
from aigc_jax.families.clip.model import clamp_log_scale
from aigc_jax.train.metrics import read_metrics
from experiments import cli

flags.DEFINE_string("workdirs", None, "Comma-separated workdirs of CLIP runs.")
flags.DEFINE_string("image_file", "", "An image file to score --texts against (with one workdir).")
flags.DEFINE_string("texts", "", "Candidate captions for --image_file, separated by '|'.")
flags.DEFINE_boolean("markdown", False, "Print the table as markdown.")
flags.DEFINE_boolean("mean", False, "A last row: mean and standard deviation over the runs (seeds of one setting).")
flags.DEFINE_boolean("probe", False, "Linear probes of the runs' image features (shapes world runs).")
flags.DEFINE_integer("probe_train", 3000, "One-object training scenes of the probes.")
flags.DEFINE_integer("probe_test", 1000, "One-object test scenes per split (seen and held-out pairs).")

FLAGS = flags.FLAGS
RETRIEVAL = [f"{split}_{way}_r@{k}" for split in ("seen", "heldout") for k in (1, 5) for way in ("i2t", "t2i")]


def final_eval(workdir: str) -> dict:
    records = read_metrics(workdir, "eval")
    if not records:
        raise FileNotFoundError(f"{workdir!r} has no evaluation records yet")
    return records[-1]


def table(workdirs: list, markdown: bool, mean: bool = False) -> str:
    """One row per run from its newest evaluation; mean: a last row of mean +- standard deviation
    over the runs (seeds of one setting)."""
    factors = zero_shot.SHAPE_FACTORS
    keys = (["loss"] + RETRIEVAL + ["seen_swap_shape", "heldout_swap_shape"] + [f"zs_seen_{f}" for f in factors] +
            [f"zs_heldout_{f}" for f in factors])
    header = (["run", "step", "loss"] + RETRIEVAL + ["swap seen", "swap held-out"] + [f"zs seen {f}" for f in factors] +
              [f"zs held-out {f}" for f in factors] + ["zs count"])
    chance = (["chance", ""] + [""] * (1 + len(RETRIEVAL)) + ["0.500"] * 2 +
              [f"{1 / zero_shot.NUM_CLASSES[f]:.3f}" for f in factors] * 2 + [""])
    rows, values = [header, chance], []
    for workdir in workdirs:
        r = final_eval(workdir)
        count_key = "zs_count_seen" if "zs_count_seen" in r else "zs_digits"
        values.append([r.get(k) for k in keys + [count_key]])
        rows.append([workdir, str(r["step"])] + ["-" if v is None else f"{v:.3f}" for v in values[-1]])
    if mean and len(values) > 1:
        columns = list(zip(*values))
        rows.append([f"mean +- sd ({len(values)} runs)", ""] +
                    ["-" if any(v is None for v in c) else f"{np.mean(c):.3f} +- {np.std(c, ddof=1):.3f}"
                     for c in columns])
    return format_rows(rows, markdown)


def probe_table(workdirs: list, train_count: int, test_count: int, markdown: bool) -> str:
    from aigc_jax.families.clip import linear_probe
    factors = zero_shot.SHAPE_FACTORS
    keys = [f"probe_seen_{f}" for f in factors] + [f"probe_heldout_{f}" for f in factors if f != "pair"]
    rows = [["run", "encoder weights"] + [k[len("probe_"):].replace("_", " ") for k in keys]]
    for workdir in workdirs:
        model, params, config, step = linear_probe.load_image_encoder(workdir)
        if not (config.data.dataset == "shapes" and not config.data.path and not config.data.pairs_path):
            raise ValueError(f"{workdir!r} was not trained on the shapes world: the probes need its factors")
        sets = linear_probe.probe_sets(config, train_count, test_count)
        init = linear_probe.init_params(model, config, sets["train"][0][:1])
        for label, weights in ((f"{config.task} (step {step})", params), ("initialisation", init)):
            result = linear_probe.probe_accuracies(model, weights, sets)
            rows.append([workdir, label] + [f"{result[k]:.3f}" for k in keys])
    return format_rows(rows, markdown)


def format_rows(rows: list, markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "| " + " | ".join("---" for _ in rows[0]) + " |")
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)


def rank_texts(workdir: str, image_path: str, texts: list) -> list:
    """[(probability, text)] best first: softmax over the texts of scale * cosine (CLIP's zero-shot)."""
    trained = clip_task.load_trained(workdir)
    size, _, channels = trained.image_shape
    image = clip_data.to_model_range(clip_data.read_image(image_path, size, channels))[None]
    image_emb = trained.embedder.images(trained.params, image)
    text_emb = trained.embedder.texts(trained.params, texts)
    scale = float(np.exp(clamp_log_scale(trained.params["log_scale"])))
    logits = scale * (image_emb @ text_emb.T)[0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return sorted(zip(probs.tolist(), texts), reverse=True)


def main(overrides):
    if overrides:
        raise cli.ConfigError("clip uses the runs' saved configs; --config.* overrides are not accepted")
    if not FLAGS.workdirs:
        raise cli.ConfigError("--workdirs is required")
    workdirs = [w for w in FLAGS.workdirs.split(",") if w]
    if FLAGS.image_file:
        texts = [t.strip() for t in FLAGS.texts.split("|") if t.strip()]
        if len(workdirs) != 1 or len(texts) < 2:
            raise cli.ConfigError("--image_file needs exactly one --workdirs run and at least two --texts separated by '|'")
        for prob, text in rank_texts(workdirs[0], FLAGS.image_file, texts):
            print(f"{prob:7.3f}  {text}")
        return
    if FLAGS.probe:
        print(probe_table(workdirs, FLAGS.probe_train, FLAGS.probe_test, FLAGS.markdown))
        return
    print(table(workdirs, FLAGS.markdown, FLAGS.mean))


if __name__ == "__main__":
    cli.run(main)
