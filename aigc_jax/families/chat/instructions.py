"""Instructions whose answers a program can check, generated in-process (seeded).

Six kinds, each an English prompt and one canonical, concise answer:
  arithmetic  "What is 37 + 45?" -> "82" (sums and differences of numbers below 100, products of digits)
  convert     "Convert 3 km to m." -> "3000" (1-499 km/m, m/cm, kg/g, hours/minutes, minutes/seconds)
  reverse     "Reverse the words: red fox runs" -> "runs fox red"
  sort        "Sort the words: pear fig apple" -> "apple fig pear"
  count       "How many times does the letter a appear in banana?" -> "3" (sometimes a letter not there: 0)
  passage     "Passage: Ann has a green kite. Question: What colour is the kite?" -> "green"

The judge (`is_correct`) reads the final answer out of a response: the text after its last
"answer is " if it has one, else the whole response, without a closing full stop; it must equal
the canonical answer. So a rambling response that ends in the right answer is correct too:
`is_concise` tells them apart (the preference data ranks concise above rambling).

Split: an instruction's prompt text decides its split by a hash (train / heldout, no prompt in
both), so held-out instructions are never seen in any training stage.
"""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np

KINDS = ("arithmetic", "convert", "reverse", "sort", "count", "passage")
SPLITS = ("train", "heldout")
WORDS = ("apple", "bird", "blue", "cat", "cloud", "dog", "fig", "fish", "green", "hat", "kite", "lamp", "moon",
         "pear", "red", "river", "road", "sun", "tree", "wind")
COUNT_WORDS = ("banana", "apple", "letter", "committee", "mississippi", "balloon", "coffee", "parallel", "pepper",
               "assessment", "bookkeeper", "tomato", "potato", "seventeen", "referee", "success", "address", "bottle",
               "cabbage", "dinner", "element", "giraffe", "hammer", "jelly", "kettle", "ladder", "mirror", "needle",
               "orange", "puzzle", "rabbit", "scissors", "teeth", "umbrella", "village", "window", "yellow", "zipper",
               "butter", "carrot", "garden", "happen", "library", "monkey", "pillow", "summer", "tunnel", "winter")
NAMES = ("Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana")
COLOURS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple")
OBJECTS = ("kite", "ball", "hat", "bike", "book", "cup", "lamp", "boat")
UNITS = (("km", "m", 1000), ("m", "cm", 100), ("kg", "g", 1000), ("hours", "minutes", 60), ("minutes", "seconds", 60))
RAMBLE_OPENINGS = ("Sure! Let me think about this step by step.", "Good question, let me work it out carefully.",
                   "Okay, here is what I found after thinking it over.")


@dataclasses.dataclass(frozen=True)
class Instruction:
    kind: str
    prompt: str
    answer: str


def split_of(prompt: str, heldout_fraction: float = 0.2) -> str:
    return "heldout" if zlib.crc32(prompt.encode()) % 1000 < heldout_fraction * 1000 else "train"


def _make(kind: str, rng: np.random.Generator) -> Instruction:
    if kind == "arithmetic":
        op = rng.choice(["+", "-", "*"])
        if op == "*":
            a, b = (int(v) for v in rng.integers(2, 10, 2))
            value = a * b
        else:
            a, b = (int(v) for v in rng.integers(0, 100, 2))
            if op == "-" and b > a:
                a, b = b, a
            value = a + b if op == "+" else a - b
        return Instruction(kind, f"What is {a} {op} {b}?", str(value))
    if kind == "convert":
        big, small, factor = UNITS[rng.integers(len(UNITS))]
        n = int(rng.integers(1, 500))
        return Instruction(kind, f"Convert {n} {big} to {small}.", str(n * factor))
    if kind in ("reverse", "sort"):
        words = [WORDS[i] for i in rng.choice(len(WORDS), int(rng.integers(3, 5)), replace=False)]
        answer = words[::-1] if kind == "reverse" else sorted(words)
        verb = "Reverse" if kind == "reverse" else "Sort"
        return Instruction(kind, f"{verb} the words: {' '.join(words)}", " ".join(answer))
    if kind == "count":
        pool = COUNT_WORDS + WORDS + COLOURS + OBJECTS
        word = pool[rng.integers(len(pool))]
        letters = sorted(set(word)) if rng.random() < 0.8 else "abcdefghijklmnopqrstuvwxyz"  # sometimes 0
        letter = letters[rng.integers(len(letters))]
        return Instruction(kind, f"How many times does the letter {letter} appear in {word}?", str(word.count(letter)))
    if kind == "passage":
        name, colour, obj = NAMES[rng.integers(len(NAMES))], COLOURS[rng.integers(len(COLOURS))], \
            OBJECTS[rng.integers(len(OBJECTS))]
        passage = f"Passage: {name} has a {colour} {obj}."
        question, answer = [(f"What colour is the {obj}?", colour), (f"Who has the {obj}?", name),
                            (f"What does {name} have?", obj)][rng.integers(3)]
        return Instruction(kind, f"{passage} Question: {question}", answer)
    raise ValueError(f"unknown instruction kind {kind!r}; expected one of {KINDS}")


def instructions(split: str, count: int, seed: int, kinds=KINDS, heldout_fraction: float = 0.2) -> list:
    """`count` distinct instructions of `split`, kinds in turn, a pure function of the arguments.
    Raises ValueError when the split has fewer distinct instructions than asked."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = np.random.default_rng([seed, SPLITS.index(split), 0xC4A7])
    out, seen, tries = [], set(), 0
    while len(out) < count:
        tries += 1
        if tries > 200 * count + 10000:
            raise ValueError(f"the {split} split has fewer than {count} distinct instructions of kinds {tuple(kinds)}")
        item = _make(kinds[len(out) % len(kinds)], rng)
        if item.prompt not in seen and split_of(item.prompt, heldout_fraction) == split:
            seen.add(item.prompt)
            out.append(item)
    return out


def final_answer(response: str) -> str:
    text = response.strip()
    cut = text.rfind("answer is ")
    if cut >= 0:
        text = text[cut + len("answer is "):]
    return text.strip().removesuffix(".").strip()


def is_correct(instruction: Instruction, response: str) -> bool:
    return final_answer(response) == instruction.answer


def is_concise(instruction: Instruction, response: str) -> bool:
    return response.strip() == instruction.answer


def judge_rank(instruction: Instruction, response: str) -> int:
    """The judge's ranking: 2 correct and concise, 1 correct but rambling, 0 wrong."""
    if not is_correct(instruction, response):
        return 0
    return 2 if is_concise(instruction, response) else 1


def wrong_answer(instruction: Instruction, rng: np.random.Generator) -> str:
    """A plausible wrong answer of the same form."""
    a = instruction.answer
    if instruction.kind in ("arithmetic", "convert", "count"):
        value = int(a)
        step = int(rng.integers(1, 4)) * (1 if rng.random() < 0.5 or value < 4 else -1)
        return str(value + step * (10 if instruction.kind == "convert" and value >= 60 else 1))
    if instruction.kind in ("reverse", "sort"):
        words = a.split()
        while True:
            shuffled = [words[i] for i in rng.permutation(len(words))]
            if shuffled != words:
                return " ".join(shuffled)
    pool = {colour for colour in COLOURS} if a in COLOURS else set(NAMES) if a in NAMES else set(OBJECTS)
    return str(rng.choice(sorted(pool - {a})))


def rambling(answer: str, rng: np.random.Generator) -> str:
    return f"{RAMBLE_OPENINGS[rng.integers(len(RAMBLE_OPENINGS))]} The answer is {answer}."


def demonstration(instruction: Instruction, rng: np.random.Generator, error_rate: float = 0.0) -> str:
    """The concise answer, or with probability error_rate a wrong one (noisy demonstrators)."""
    return wrong_answer(instruction, rng) if rng.random() < error_rate else instruction.answer


def preference_pair(instruction: Instruction, rng: np.random.Generator, label_noise: float = 0.0) -> tuple:
    """(chosen, rejected) responses ranked by the judge: correct beats wrong (concise or rambling
    correct against a concise wrong answer), and among correct answers concise beats rambling;
    with probability label_noise the two are swapped (a noisy labeller)."""
    right, wrong = instruction.answer, wrong_answer(instruction, rng)
    kind = rng.integers(3)
    chosen, rejected = [(right, wrong), (rambling(right, rng), wrong), (right, rambling(right, rng))][kind]
    if rng.random() < label_noise:
        chosen, rejected = rejected, chosen
    return chosen, rejected
