"""Code corpora for the code model (Codex, Chen et al. 2021, section 3: fine-tuning on functions
and their docstrings): documented Python functions from the standard library's own sources, and
the generated problem set (aigc_jax/data/code_problems.py), each as a HumanEval-style prompt
(signature and docstring) followed by its body.

`data.corpus` values for the LM family:
  python_functions   every documented function and method of the standard library's top-level
                     sources, dedented, split by file like the `stdlib` corpus
  code_problems      the generated problems' prompts and canonical solutions: training problems
                     train, held-out compositions validate
  code_finetune      both, concatenated split by split
"""
from __future__ import annotations

import ast
import textwrap

from aigc_jax.data import code_problems
from aigc_jax.data.text import TextSplits, is_validation_file, stdlib_source_files

SEPARATOR = "\n\n\n"
MAX_FUNCTION_CHARS = 3000  # longer functions would not fit a small model's window anyway
TRAIN_PROBLEMS = 4000


def documented_functions(source: str) -> list[str]:
    """Source text of every function with a docstring (decorators left out), dedented."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines(keepends=True)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(node):
            segment = "".join(lines[node.lineno - 1:node.end_lineno])  # whole lines: def .. last line
            if len(segment) <= MAX_FUNCTION_CHARS:
                found.append(textwrap.dedent(segment).rstrip() + "\n")
    return found


def python_functions(val_fraction: float) -> TextSplits:
    train, validation, files = [], [], {"train": 0, "validation": 0}
    for path in stdlib_source_files():
        functions = documented_functions(path.read_text(encoding="utf-8", errors="replace"))
        held_out = is_validation_file(path.name, val_fraction)
        (validation if held_out else train).extend(functions)
        files["validation" if held_out else "train"] += 1
    return TextSplits(SEPARATOR.join(train), SEPARATOR.join(validation),
                      f"{len(train):,} training and {len(validation):,} validation documented functions of the "
                      f"standard library ({files['train']} and {files['validation']} files)")


def problem_texts(split: str, count: int, seed: int) -> list[str]:
    return [problem.prompt + problem.canonical_solution for problem in code_problems.generate(split, count, seed)]


def generated_problems(seed: int, num_train: int = TRAIN_PROBLEMS) -> TextSplits:
    train = problem_texts("train", num_train, seed)
    held_out = problem_texts("held_out", max(num_train // 10, 1), seed)
    return TextSplits(SEPARATOR.join(train), SEPARATOR.join(held_out),
                      f"{len(train):,} generated training problems and {len(held_out):,} held-out ones "
                      f"(new compositions), prompts with their solutions")


def load_code_splits(corpus: str, val_fraction: float, seed: int, num_train_problems: int = TRAIN_PROBLEMS) -> TextSplits:
    """The corpus's splits; `num_train_problems` generated training problems (a tenth as many held out)."""
    if corpus == "python_functions":
        return python_functions(val_fraction)
    if corpus == "code_problems":
        return generated_problems(seed, num_train_problems)
    if corpus == "code_finetune":
        functions, problems = python_functions(val_fraction), generated_problems(seed, num_train_problems)
        return TextSplits(functions.train + SEPARATOR + problems.train,
                          functions.validation + SEPARATOR + problems.validation,
                          f"{functions.description}; {problems.description}")
    raise ValueError(f"unknown code corpus {corpus!r}")
