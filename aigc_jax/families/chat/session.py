"""A terminal chat session: the history of turns, /reset and /system, and answers streamed token by
token as they are decoded (experiments/chat.py drives it; a library module so that tests and other
front ends use it without the command's flags). When the history no longer fits the model's context,
the oldest turns are dropped and the session says so."""
from __future__ import annotations

import sys

import jax

from aigc_jax.decoding.streaming import stream
from aigc_jax.families.chat.template import prompt_ids


class Session:
    """One conversation with a chat model: `reply` answers a user turn given the history,
    `command` handles /reset and /system. settings_for(room, end_id) gives the sampling settings
    for an answer with `room` tokens left in the context."""

    def __init__(self, chat, system: str, settings_for, seed: int, out=sys.stdout):
        self.chat, self.system, self.settings_for, self.seed, self.out = chat, system, settings_for, seed, out
        self.turns, self.answers = [], 0

    def command(self, line: str) -> bool:
        """Handles /reset and /system; True when the line was a command."""
        if line.strip() == "/reset":
            self.turns = []
            print("(history cleared)", file=self.out)
            return True
        if line.startswith("/system"):
            self.system = line[len("/system"):].strip()
            print(f"(system turn {'set' if self.system else 'removed'})", file=self.out)
            return True
        return False

    def reply(self, text: str) -> str:
        tok, model = self.chat.tokenizer, self.chat.model
        turns = ([("system", self.system)] if self.system else []) + self.turns + [("user", text)]
        ids, dropped = prompt_ids(tok, turns, model.context_length)
        if dropped:
            print(f"(the conversation is longer than the context: the oldest {dropped} turn(s) are left out)",
                  file=self.out)
            self.turns = self.turns[dropped:]
        settings = self.settings_for(model.context_length - len(ids), tok.end_id)
        answer_ids = []
        for token in stream(model, self.chat.params, ids.tolist(), jax.random.fold_in(jax.random.key(self.seed),
                                                                                     self.answers), settings):
            if token == tok.end_id:
                break
            answer_ids.append(token)
            print(tok.decode([token]), end="", file=self.out, flush=True)
        print(file=self.out)
        self.answers += 1
        answer = tok.decode(answer_ids)
        self.turns += [("user", text), ("assistant", answer)]
        return answer
