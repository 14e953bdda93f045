"""The conversation format: role markers and an end-of-turn token added to a run's tokenizer.

A conversation is a list of (role, text) turns, role in system / user / assistant. It becomes

    <|system|> text <|end|> <|user|> text <|end|> <|assistant|> text <|end|> ...

where each <|...|> is one new token id appended after the base tokenizer's vocabulary (so a
character or BPE tokenizer trained on plain text needs no marker characters, and no text can
forge a marker). The turns' texts go through the base tokenizer unchanged. The SFT loss counts
the assistant turns' tokens and their closing <|end|> (the model must learn to stop), nothing
of the system or user turns and no role marker (`render(...).loss_mask`).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

ROLES = ("system", "user", "assistant")
SPECIALS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")


@dataclasses.dataclass(frozen=True)
class Rendered:
    ids: np.ndarray  # int32 [T]
    loss_mask: np.ndarray  # bool [T]: True where the token is a target of the SFT loss


class ChatTokenizer:
    """A base tokenizer plus the four chat tokens (ids base.vocab_size ... + 3)."""

    def __init__(self, base):
        self.base = base
        self.role_ids = {role: base.vocab_size + i for i, role in enumerate(ROLES)}
        self.end_id = base.vocab_size + len(ROLES)

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + len(SPECIALS)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.base.encode(text), np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids; chat tokens are written as their <|...|> names."""
        out, run = [], []
        for i in ids:
            i = int(i)
            if i >= self.base.vocab_size:
                out.append(self.base.decode(run))
                run = []
                out.append(SPECIALS[i - self.base.vocab_size])
            else:
                run.append(i)
        out.append(self.base.decode(run))
        return "".join(out)


def check_conversation(turns: Sequence[tuple]) -> None:
    for k, turn in enumerate(turns):
        if len(turn) != 2 or turn[0] not in ROLES or not isinstance(turn[1], str):
            raise ValueError(f"turn {k} is {turn!r}: a turn is (role, text) with role one of {ROLES}")
    if any(role == "system" for role, _ in turns[1:]):
        raise ValueError("a system turn may only open the conversation")


def render(tokenizer: ChatTokenizer, turns: Sequence[tuple], open_assistant: bool = False) -> Rendered:
    """Token ids and the SFT loss mask of a conversation. open_assistant=True appends the marker
    of an assistant turn to be generated (a prompt)."""
    check_conversation(turns)
    ids, mask = [], []
    for role, text in turns:
        body = tokenizer.encode(text)
        ids += [tokenizer.role_ids[role], *body.tolist(), tokenizer.end_id]
        trained = role == "assistant"
        mask += [False] + [trained] * len(body) + [trained]
    if open_assistant:
        ids.append(tokenizer.role_ids["assistant"])
        mask.append(False)
    return Rendered(np.asarray(ids, np.int32), np.asarray(mask, bool))


def prompt_ids(tokenizer: ChatTokenizer, turns: Sequence[tuple], context: int) -> tuple:
    """(ids of the conversation so far plus an open assistant marker, turns dropped): the oldest
    turns after a leading system turn are dropped, whole exchanges at a time (what remains starts
    with a user turn), until the prompt leaves at least a quarter of the context for the answer.
    Raises ValueError when even the last turn alone does not fit."""
    turns = list(turns)
    system = turns[:1] if turns and turns[0][0] == "system" else []
    rest = turns[len(system):]
    budget = context - max(context // 4, 1)
    for dropped in range(len(rest)):
        if rest[dropped][0] != "user" and dropped < len(rest) - 1:
            continue
        ids = render(tokenizer, system + rest[dropped:], open_assistant=True).ids
        if len(ids) <= budget:
            return ids, dropped
    raise ValueError(f"the last turn alone takes more than {budget} of the model's {context} context tokens "
                     f"(three quarters, leaving room for the answer): shorten it")
