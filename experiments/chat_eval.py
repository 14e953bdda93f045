"""Chat stages side by side on held-out instructions, scored by the programmatic judge.

  python -m experiments.chat_eval --workdir=runs/chat_base,runs/chat_sft,runs/chat_ppo,runs/chat_dpo \
      --reference=runs/chat_sft [--reward_models=runs/chat_rm] [--markdown=FILE]

Each --workdir (a base LM run or any chat stage) answers the held-out instructions of the
reference run's config (seed, kinds, count): greedy accuracy (overall and per kind), sampled
accuracy (temperature 1), the concise share, mean length, win rate against the reference's
greedy answers and the KL to the reference on sampled responses
(aigc_jax/families/chat/evaluation.py). --reward_models adds each reward model's pairwise accuracy
on held-out pairs, judge-written and sampled from the reference (reward_eval.py).
"""
from absl import flags

from experiments import cli

flags.DEFINE_string("workdir", None, "Runs to evaluate, comma-separated.")
flags.DEFINE_string("reference", "", "The SFT run: the held-out set's config, win rates and KL against it.")
flags.DEFINE_integer("num", 0, "Held-out instructions (0: the reference config's data.num_heldout; more than it "
                     "extends the same held-out list, still never trained on).")
flags.DEFINE_integer("samples", 1, "Sampled answers per instruction (temperature 1): the sampled accuracy and the "
                     "KL average over them.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("reward_models", "", "Reward model runs (comma-separated): their pairwise accuracy on held-out "
                    "judge-written pairs and on held-out pairs of the reference's own samples (needs --reference).")
flags.DEFINE_string("markdown", "", "Also write the table to this file.")


def main(_):
    from aigc_jax.config import load_config, load_saved_config
    from aigc_jax.families.chat import evaluation, policy, stages
    f = flags.FLAGS
    if not f.workdir:
        raise cli.ConfigError("--workdir is required (one or more runs, comma-separated)")
    if f.reference:
        config = load_saved_config(f.reference)
        if config.task not in policy.STAGES:
            raise cli.ConfigError(f"--reference={f.reference!r} is a {config.task} run; expected a chat policy")
    else:
        import os
        config = load_config(os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "chat.py"))
    if f.samples < 1 or f.num < 0:
        raise cli.ConfigError(f"--samples must be at least 1 (got {f.samples}) and --num at least 0 (got {f.num})")
    if f.num > config.data.num_heldout:  # the held-out list is prefix-stable: its first items stay the same
        config.data.num_heldout = f.num
    _, heldout = stages.instruction_sets(config)
    items = heldout[:f.num] if f.num else heldout
    reference = policy.load_chat_model(f.reference) if f.reference else None
    reference_row = None
    if reference is not None:
        reference_row = evaluation.evaluate(reference, items, seed=f.seed, samples=f.samples)
    rows = []
    for workdir in [w for w in f.workdir.split(",") if w]:
        chat = policy.load_chat_model(workdir)
        if chat.task not in ("lm",) + policy.STAGES:
            raise cli.ConfigError(f"{workdir!r} is a {chat.task} run: only policies answer (a reward model does not)")
        row = evaluation.evaluate(chat, items, reference=reference, seed=f.seed, samples=f.samples,
                                  reference_greedy=reference_row["greedy"] if reference_row else None)
        rows.append((f"{workdir} ({chat.task}, step {chat.step})", row))
    kinds = sorted(k for k in rows[0][1] if k.startswith("accuracy_"))
    head = ["run", "accuracy +- se", f"sampled accuracy +- se ({f.samples} per instruction)", "concise", "mean length"]
    head += (["accuracy - reference's (paired se)", "sampled accuracy - reference's (paired se)",
              "win rate vs reference", "KL to reference (nats)"] if reference is not None else [])
    head += [k.removeprefix("accuracy_") for k in kinds]
    lines = [f"Held-out: {len(items)} instructions (seed {config.seed}; never in any training stage)"
             + (f"; reference {f.reference}" if reference is not None else ""), "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, row in rows:
        cells = [f"{row['accuracy']:.3f} +- {row['stderr_accuracy']:.3f}",
                 f"{row['sampled_accuracy']:.3f} +- {row['stderr_sampled_accuracy']:.3f}", f"{row['concise']:.3f}",
                 f"{row['mean_length']:.1f}"]
        if reference is not None:
            for key in ("greedy_correct", "sampled_correct"):
                mean, error = evaluation.paired_difference(row[key], reference_row[key])
                cells.append(f"{mean:+.3f} +- {error:.3f}")
            cells += [f"{row['win_rate']:.3f}", f"{row['kl_to_reference']:.2f}"]
        cells += [f"{row[k]:.2f}" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if f.reward_models:
        lines += ["", *reward_table(f.reward_models.split(","), reference, items, config.seed)]
    text = "\n".join(lines)
    print(text)
    if f.markdown:
        with open(f.markdown, "w") as out:
            out.write(text + "\n")


def reward_table(workdirs: list, reference, items: list, seed: int) -> list:
    from aigc_jax.families.chat import policy, reward_eval
    if reference is None:
        raise cli.ConfigError("--reward_models needs --reference (the SFT policy whose samples make the pairs)")
    sets = reward_eval.heldout_pair_sets(reference, items, seed)
    sampled = sets["SFT samples"]
    kinds = sorted({item.kind for item, _, _ in sampled})
    head = ["reward model"] + [f"pairwise accuracy, {name} ({len(pairs)} pairs)" for name, pairs in sets.items()]
    head += [f"{kind} (SFT samples)" for kind in kinds]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for workdir in [w for w in workdirs if w]:
        rm = policy.load_chat_model(workdir)
        if rm.task not in policy.SCORERS:
            raise cli.ConfigError(f"--reward_models: {workdir!r} is a {rm.task} run, not a reward model")
        verdicts = {name: reward_eval.ranked_right(rm, pairs) for name, pairs in sets.items()}
        cells = [f"{v.mean():.3f}" for v in verdicts.values()]
        by_kind = reward_eval.accuracy_by_kind(sampled, verdicts["SFT samples"])
        cells += [f"{by_kind[k][0]:.2f} ({by_kind[k][1]})" for k in kinds]
        lines.append(f"| {workdir} (step {rm.step}) | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    cli.run(main)
