"""The shapes world and its factor classifier: a preview grid with captions, the rendering speed,
and the classifier's per-head accuracy on the test ("all" split) and held-out-pair scenes.

  python -m experiments.shapes_world --out=/tmp/shapes_world
  python -m experiments.shapes_world --out=/tmp/shapes_world --steps=300 --train_scenes=5000   # quicker

Writes DIR/shapes_world_preview.png (scenes of the "train" and "heldout" splits, 4x upscaled, row
major), DIR/shapes_world_captions.txt (one caption per grid cell, templates in turn) and
DIR/shapes_world_accuracy.md (the table printed at the end). The classifier is trained once
and cached (aigc_jax/metrics/factor_classifier.py); its training seconds are those measured when
it was trained.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from aigc_jax.host import machine


def preview(world, out: str, rows: int, columns: int, seed: int) -> list:
    """A grid of `rows` x `columns` scenes: the first rows from the train split, the last from the
    heldout split; returns the captions, cell by cell."""
    import numpy as np
    from aigc_jax.data import shapes
    from aigc_jax.image_grid import save_image_grid
    held_rows = max(1, rows // 4)
    parts = [shapes.sample_factors(world, seed, range((rows - held_rows) * columns), "train"),
             shapes.sample_factors(world, seed, range(held_rows * columns), "heldout")]
    factors = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    images = shapes.render(world, factors)
    save_image_grid(images, os.path.join(out, "shapes_world_preview.png"), columns=columns, scale=4)
    captions = []
    for n in range(len(images)):
        split = "train" if n < (rows - held_rows) * columns else "heldout"
        text = shapes.caption(shapes.scene_of(factors, n), template=n % shapes.NUM_TEMPLATES)
        captions.append(f"row {n // columns + 1}, column {n % columns + 1} ({split}): {text}")
    with open(os.path.join(out, "shapes_world_captions.txt"), "w") as f:
        f.write("\n".join(captions) + "\n")
    return captions


def render_speed(world, scenes: int) -> float:
    """Seconds to sample and render `scenes` scenes (one process, numpy)."""
    import numpy as np
    from aigc_jax.data import shapes
    start = time.perf_counter()
    shapes.render(world, shapes.sample_factors(world, 123, np.arange(scenes), "all"))
    return time.perf_counter() - start


def accuracy_table(world, accuracies: dict) -> str:
    from aigc_jax.metrics import factor_classifier as fc
    rows = ["| head | kind | chance (majority) | test (all pairs) | held-out pairs |", "| --- | --- | --- | --- | --- |"]
    sizes = fc.head_sizes(world)
    for name in fc.CATEGORICAL_HEADS:
        rows.append(f"| {name} | categorical, {sizes[name]} classes, argmax | {100 / sizes[name]:.1f}% "
                    f"| {100 * accuracies['test'][name]:.1f}% | {100 * accuracies['heldout'][name]:.1f}% |")
    rows.append(f"| main_pair | shape and colour both right | 3.1% | {100 * accuracies['test']['main_pair']:.1f}% "
                f"| {100 * accuracies['heldout']['main_pair']:.1f}% |")
    for name in fc.MULTI_LABEL_HEADS:
        for kind, label in (("exact", "every label right"), ("label", "mean per-label accuracy")):
            key = f"{name}_{kind}"
            rows.append(f"| {name} | multi-label, {sizes[name]} labels, {label} | - "
                        f"| {100 * accuracies['test'][key]:.1f}% | {100 * accuracies['heldout'][key]:.1f}% |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="Directory for the preview grid, captions and table.")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the preview scenes.")
    parser.add_argument("--render_scenes", type=int, default=20000, help="Scenes timed for rendering speed; 0 skips.")
    parser.add_argument("--steps", type=int, default=None, help="Classifier steps (default: FactorSettings').")
    parser.add_argument("--train_scenes", type=int, default=None, help="Classifier training scenes.")
    parser.add_argument("--cache_dir", default="", help="Classifier cache (default ~/.cache/aigc_jax/classifiers).")
    args = parser.parse_args(argv)

    import dataclasses
    from aigc_jax.data import shapes
    from aigc_jax.metrics import factor_classifier as fc

    os.makedirs(args.out, exist_ok=True)
    world = shapes.ShapesWorld()
    print(f"machine: {machine()}")
    print(f"world: {world}")
    for caption in preview(world, args.out, args.rows, args.columns, args.seed)[:8]:
        print(caption)
    print(f"preview grid: {os.path.join(args.out, 'shapes_world_preview.png')}")
    if args.render_scenes:
        seconds = render_speed(world, args.render_scenes)
        print(f"sampled and rendered {args.render_scenes:,} scenes in {seconds:.1f} s "
              f"({args.render_scenes / seconds:,.0f} scenes/s)")
    overrides = {k: v for k, v in (("steps", args.steps), ("train_scenes", args.train_scenes)) if v is not None}
    settings = dataclasses.replace(fc.FactorSettings(), **overrides)
    print(f"factor classifier: {settings}")
    start = time.perf_counter()
    _, _, accuracies, path = fc.load_or_train_factor_classifier(world, settings, cache_dir=args.cache_dir)
    print(f"classifier {path} ready in {time.perf_counter() - start:.1f} s (trained in "
          f"{accuracies['train_seconds']:.1f} s; loss {accuracies['first_loss']:.3f} over the first 50 steps, "
          f"{accuracies['last_loss']:.3f} over the last 50)")
    table = accuracy_table(world, accuracies)
    print(table)
    with open(os.path.join(args.out, "shapes_world_accuracy.md"), "w") as f:
        f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
