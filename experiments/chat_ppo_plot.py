"""The reward model's score against the true judge's accuracy of the same rollouts as PPO
optimises (Gao et al. 2022's over-optimisation: the proxy reward can keep rising while the true
objective falls), from the metrics a chat_ppo run logged.

  python -m experiments.chat_ppo_plot --workdir=runs/chat_ppo --out=experiments/results/chat_ppo.png
"""
from absl import flags

from experiments import cli

flags.DEFINE_string("workdir", None, "A chat_ppo run (several, comma-separated, share the axes).")
flags.DEFINE_string("out", "", "The PNG to write (default WORKDIR/ppo_reward_vs_judge.png).")


def main(_):
    import os

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aigc_jax.config import load_saved_config
    from aigc_jax.train.metrics import read_metrics
    f = flags.FLAGS
    if not f.workdir:
        raise cli.ConfigError("--workdir is required")
    runs = [w for w in f.workdir.split(",") if w]
    fig, (score_ax, judge_ax, kl_ax) = plt.subplots(1, 3, figsize=(12, 3.4))
    for workdir in runs:
        if load_saved_config(workdir).task != "chat_ppo":
            raise cli.ConfigError(f"{workdir!r} is not a chat_ppo run")
        records = [r for r in read_metrics(workdir, "train") if "score" in r]
        if not records:
            raise cli.ConfigError(f"{workdir!r} has logged no PPO steps yet")
        steps = [r["step"] for r in records]
        score_ax.plot(steps, [r["score"] for r in records], label=workdir)
        judge_ax.plot(steps, [r["judge_accuracy"] for r in records], label=workdir)
        kl_ax.plot(steps, [r["kl"] for r in records], label=workdir)
        print(f"{workdir}: score {records[0]['score']:.3f} -> {records[-1]['score']:.3f}, judge accuracy "
              f"{records[0]['judge_accuracy']:.3f} -> {records[-1]['judge_accuracy']:.3f}, KL {records[-1]['kl']:.3f} "
              f"nats at step {steps[-1]}")
    for ax, title in ((score_ax, "reward model score (proxy)"), (judge_ax, "judge accuracy of the rollouts (true)"),
                      (kl_ax, "KL to SFT per response (nats)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("PPO step", fontsize=8)
        ax.tick_params(labelsize=7)
    judge_ax.legend(fontsize=6)
    fig.tight_layout()
    out = f.out or os.path.join(runs[0], "ppo_reward_vs_judge.png")
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
