"""Chat with a tuned model in the terminal (any chat stage's run, or a base LM run).

  python -m experiments.chat --workdir=runs/chat_dpo [--temperature=0.7 --top_p=0.9]
  python -m experiments.chat --workdir=runs/chat_dpo --prompt="What is 12 + 30?"

Interactive: each line you type is a user turn; the answer streams token by token as it is
decoded; the whole history is the next prompt. /reset forgets the history, /system TEXT sets
the system turn (/system alone removes it), Ctrl-D leaves. When the history no longer fits the
model's context (three quarters of it, the rest kept for the answer), the oldest turns are
dropped and the command says so. --prompt answers one question and exits.
"""
from absl import flags

from experiments import cli

flags.DEFINE_string("workdir", None, "A chat run (chat_sft, chat_dpo, chat_ppo) or a base LM run.")
flags.DEFINE_string("prompt", "", "Answer this one question and exit (no interactive session).")
flags.DEFINE_string("system", "", "A system turn opening the conversation.")
flags.DEFINE_float("temperature", 0.0, "Sampling temperature (0: greedy).")
flags.DEFINE_float("top_p", 1.0, "Nucleus sampling: keep the most likely tokens up to this probability.")
flags.DEFINE_integer("max_new_tokens", 64, "Tokens per answer at most.")
flags.DEFINE_integer("seed", 0, "Sampling seed (each answer of a session draws with its own fold of it).")


def main(_):
    from aigc_jax.decoding.samplers import SamplingSettings
    from aigc_jax.families.chat import policy
    from aigc_jax.families.chat.session import Session
    f = flags.FLAGS
    if not f.workdir:
        raise cli.ConfigError("--workdir is required")
    chat = policy.load_chat_model(f.workdir)
    if chat.task in policy.SCORERS:
        raise cli.ConfigError(f"{f.workdir!r} is a reward model: it scores answers, it does not write them")

    def settings_for(room: int, end_id: int) -> SamplingSettings:
        settings = SamplingSettings(max_new_tokens=max(1, min(f.max_new_tokens, room)), temperature=f.temperature,
                                    top_p=f.top_p, stop_tokens=(end_id,))
        settings.validate(chat.model.vocab_size)
        return settings

    session = Session(chat, f.system, settings_for, f.seed)
    if f.prompt:
        session.reply(f.prompt)
        return
    print(f"{f.workdir} ({chat.task}, step {chat.step}). /reset, /system TEXT, Ctrl-D to leave.")
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print()
            return
        if not line.strip() or session.command(line):
            continue
        print("assistant> ", end="", flush=True)
        session.reply(line)


if __name__ == "__main__":
    cli.run(main)
