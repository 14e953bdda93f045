"""A generated problem set in HumanEval's format, small enough for small models to solve.

Each problem is a composition of one to three simple operations on a list of integers, a
string or an integer (reverse, sort, keep the even numbers, square each, sum, count a letter,
upper-case, remove repeats, keep the first k, ...), chained where one's output type is the
next one's input type. The problem states it as a typed signature and a docstring that says the
steps in words and shows two or three doctest examples; hidden tests check several more inputs.
Every expected output, in the docstring and in the tests, is computed by running the canonical
solution, so the two cannot disagree.

Train and held-out splits are split by composition: the held-out problems use chains of
operations (two or three of them) that no train problem uses, while every single operation is
in train, so held-out accuracy measures generalisation to new compositions of known steps.
Everything is a deterministic function of the seed.

Following AlphaCode (Li et al. 2022), `example_program` builds a program that checks only the
examples in the problem statement, used to filter samples before they meet the hidden tests.
"""
from __future__ import annotations

import ast
import dataclasses
import doctest
import random
import textwrap
from typing import Any

from aigc_jax.data.humaneval import Problem

LIST, TEXT, NUMBER = "list[int]", "str", "int"
VARIABLE = {LIST: "numbers", TEXT: "text", NUMBER: "number"}  # the value's name in the solution
DESCRIBED = {LIST: "a list of integers", TEXT: "a string", NUMBER: "an integer"}


@dataclasses.dataclass(frozen=True)
class Operation:
    """One step: `expression` maps the variable {x} (of in_type) to a value of out_type.

    {k} in expression, phrase and label stands for a parameter drawn from `params`.
    """
    name: str  # the key compositions are made of (parameters left out)
    in_type: str
    out_type: str
    expression: str
    phrase: str  # the step in words, for the docstring
    params: tuple = ()
    label: str = ""  # the step in the function's name; defaults to `name`


OPERATIONS = (
    # list[int] -> list[int]
    Operation("reverse_list", LIST, LIST, "{x}[::-1]", "reverse the list"),
    Operation("sort_ascending", LIST, LIST, "sorted({x})", "sort the list in ascending order"),
    Operation("sort_descending", LIST, LIST, "sorted({x}, reverse=True)",
              "sort the list in descending order"),
    Operation("keep_even", LIST, LIST, "[item for item in {x} if item % 2 == 0]",
              "keep only the even numbers"),
    Operation("keep_odd", LIST, LIST, "[item for item in {x} if item % 2 == 1]",
              "keep only the odd numbers"),
    Operation("keep_positive", LIST, LIST, "[item for item in {x} if item > 0]",
              "keep only the numbers greater than zero"),
    Operation("square_each", LIST, LIST, "[item * item for item in {x}]", "square every number"),
    Operation("double_each", LIST, LIST, "[2 * item for item in {x}]", "double every number"),
    Operation("add_to_each", LIST, LIST, "[item + {k} for item in {x}]", "add {k} to every number",
              params=(1, 2, 3, 5, 10), label="add_{k}_to_each"),
    Operation("absolute_each", LIST, LIST, "[abs(item) for item in {x}]",
              "replace every number by its absolute value"),
    Operation("remove_repeats", LIST, LIST, "list(dict.fromkeys({x}))",
              "remove repeated numbers, keeping the first occurrence of each"),
    Operation("take_first", LIST, LIST, "{x}[:{k}]", "keep only the first {k} numbers",
              params=(1, 2, 3, 4), label="take_first_{k}"),
    Operation("drop_first", LIST, LIST, "{x}[{k}:]", "drop the first {k} numbers",
              params=(1, 2, 3), label="drop_first_{k}"),
    # list[int] -> int or str
    Operation("sum_numbers", LIST, NUMBER, "sum({x})", "take the sum of the numbers"),
    Operation("count_numbers", LIST, NUMBER, "len({x})", "count the numbers"),
    Operation("largest", LIST, NUMBER, "max({x}, default=0)",
              "take the largest number (0 for an empty list)"),
    Operation("smallest", LIST, NUMBER, "min({x}, default=0)",
              "take the smallest number (0 for an empty list)"),
    Operation("count_even", LIST, NUMBER, "sum(1 for item in {x} if item % 2 == 0)",
              "count the even numbers"),
    Operation("join_with_commas", LIST, TEXT, "','.join(str(item) for item in {x})",
              "join the numbers into a string, separated by commas"),
    # int -> int, list[int] or str
    Operation("absolute", NUMBER, NUMBER, "abs({x})", "take the absolute value"),
    Operation("square", NUMBER, NUMBER, "{x} * {x}", "square the number"),
    Operation("negate", NUMBER, NUMBER, "-{x}", "negate the number"),
    Operation("add", NUMBER, NUMBER, "{x} + {k}", "add {k}", params=(1, 2, 5, 10),
              label="add_{k}"),
    Operation("remainder", NUMBER, NUMBER, "{x} % {k}",
              "take the remainder after division by {k} (never negative)", params=(2, 3, 5, 7),
              label="remainder_{k}"),
    Operation("digit_sum", NUMBER, NUMBER, "sum(int(digit) for digit in str(abs({x})))",
              "take the sum of the decimal digits of the absolute value"),
    Operation("digits", NUMBER, LIST, "[int(digit) for digit in str(abs({x}))]",
              "list the decimal digits of the absolute value"),
    Operation("to_string", NUMBER, TEXT, "str({x})", "write the number as a decimal string"),
    # str -> str
    Operation("upper", TEXT, TEXT, "{x}.upper()", "convert the string to upper case"),
    Operation("lower", TEXT, TEXT, "{x}.lower()", "convert the string to lower case"),
    Operation("swap_case", TEXT, TEXT, "{x}.swapcase()", "swap the case of every letter"),
    Operation("reverse_text", TEXT, TEXT, "{x}[::-1]", "reverse the string"),
    Operation("remove_vowels", TEXT, TEXT, "''.join(ch for ch in {x} if ch.lower() not in 'aeiou')",
              "remove the vowels (a, e, i, o, u in either case)"),
    Operation("remove_spaces", TEXT, TEXT, "{x}.replace(' ', '')", "remove the spaces"),
    Operation("sort_characters", TEXT, TEXT, "''.join(sorted({x}))",
              "sort the characters by code point (space, then upper case, then lower case)"),
    Operation("remove_repeated_characters", TEXT, TEXT, "''.join(dict.fromkeys({x}))",
              "remove repeated characters, keeping the first occurrence of each"),
    Operation("first_characters", TEXT, TEXT, "{x}[:{k}]", "keep only the first {k} characters",
              params=(1, 2, 3, 5), label="first_{k}_characters"),
    # str -> int or list[int]
    Operation("length", TEXT, NUMBER, "len({x})", "count the characters"),
    Operation("count_letter", TEXT, NUMBER, "{x}.count('{k}')",
              "count the occurrences of the letter '{k}'", params=tuple("aeinst"),
              label="count_letter_{k}"),
    Operation("count_vowels", TEXT, NUMBER, "sum(1 for ch in {x} if ch.lower() in 'aeiou')",
              "count the vowels (a, e, i, o, u in either case)"),
    Operation("count_words", TEXT, NUMBER, "len({x}.split())", "count the words"),
    Operation("word_lengths", TEXT, LIST, "[len(word) for word in {x}.split()]",
              "list the lengths of the words"),
)
BY_NAME = {operation.name: operation for operation in OPERATIONS}

NUM_HIDDEN_TESTS = 6
LETTERS = "aabcdeeiilmnoorssttuAEIOUNST"


@dataclasses.dataclass(frozen=True)
class GeneratedProblem(Problem):
    """A HumanEval-format problem plus how it was made."""
    composition: tuple[str, ...] = ()  # operation names, first applied first
    params: tuple = ()  # each operation's parameter (None where it takes none)
    examples: tuple[tuple[Any, Any], ...] = ()  # (input, output) shown in the docstring
    hidden: tuple[tuple[Any, Any], ...] = ()  # (input, output) asserted by `test`


def compositions(max_length: int = 3) -> list[tuple[str, ...]]:
    """Every chain of 1..max_length operations whose types line up, no operation twice in a row."""
    chains = [(operation.name,) for operation in OPERATIONS]
    found = list(chains)
    for _ in range(max_length - 1):
        chains = [chain + (operation.name,) for chain in chains for operation in OPERATIONS
                  if BY_NAME[chain[-1]].out_type == operation.in_type and chain[-1] != operation.name]
        found += chains
    return found


def held_out_compositions(seed: int = 0, fraction: float = 0.2) -> frozenset[tuple[str, ...]]:
    """The compositions reserved for the held-out split: a seeded `fraction` of the chains of 2-3."""
    longer = [chain for chain in compositions() if len(chain) > 1]
    random.Random(f"held-out compositions {seed}").shuffle(longer)
    return frozenset(longer[: round(fraction * len(longer))])


def generate(split: str, num_problems: int, seed: int = 0,
             held_out_fraction: float = 0.2) -> list[GeneratedProblem]:
    """`num_problems` distinct problems of split "train" or "held_out", a function of the seed.

    Train draws from the single operations and the chains not held out; held-out draws only
    from `held_out_compositions(seed, held_out_fraction)`. The chain's length is drawn
    uniformly first, so the few short chains are not swamped by the thousands of three-step
    ones (until the short ones run out of distinct parameterisations).
    """
    if split not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    held_out = held_out_compositions(seed, held_out_fraction)
    by_length: dict[int, list[tuple[str, ...]]] = {}
    for chain in compositions():
        if (chain in held_out) == (split == "held_out"):
            by_length.setdefault(len(chain), []).append(chain)
    rng = random.Random(f"problems {seed} {split}")
    lengths = sorted(by_length)
    problems: list[GeneratedProblem] = []
    names: set[str] = set()
    misses = 0  # draws in a row that gave no new problem
    while len(problems) < num_problems:
        if misses > 10_000:
            raise ValueError(f"could not draw {num_problems} distinct {split} problems "
                             f"(found {len(problems)}); ask for fewer")
        misses += 1
        chain = rng.choice(by_length[rng.choice(lengths)])
        params = tuple(rng.choice(BY_NAME[name].params) if BY_NAME[name].params else None
                       for name in chain)
        if function_name(chain, params) in names:
            continue
        problem = make_problem(chain, params, rng, task_id=f"Generated/{split}/{len(problems)}")
        if problem is not None:
            problems.append(problem)
            names.add(problem.entry_point)
            misses = 0
    return problems


def function_name(chain: tuple[str, ...], params: tuple) -> str:
    return "_then_".join((BY_NAME[name].label or name).format(k=param)
                         for name, param in zip(chain, params))


def make_problem(chain: tuple[str, ...], params: tuple, rng: random.Random,
                 task_id: str) -> GeneratedProblem | None:
    """The problem for one parameterised chain, or None when its inputs all give one output."""
    steps = [BY_NAME[name] for name in chain]
    in_type, out_type = steps[0].in_type, steps[-1].out_type
    name = function_name(chain, params)
    variable = VARIABLE[in_type]
    body = []
    for index, (step, param) in enumerate(zip(steps, params)):
        expression = step.expression.format(x=variable, k=param)
        if index == len(steps) - 1:
            body.append(f"    return {expression}\n")
        else:
            variable = VARIABLE[step.out_type]
            body.append(f"    {variable} = {expression}\n")
    solution = "".join(body)
    function = compile_function(f"def {name}({VARIABLE[in_type]}):\n" + solution, name)

    inputs = distinct_inputs(in_type, rng, 3 + NUM_HIDDEN_TESTS)
    outputs = [function(value) for value in inputs]
    if len({repr(output) for output in outputs}) == 1:
        return None  # a constant function: its tests could not tell a solution from a guess
    num_examples = rng.choice((2, 3))
    examples = tuple(zip(inputs[:num_examples], outputs[:num_examples]))
    hidden = tuple(zip(inputs[3:], outputs[3:]))

    steps_in_words = ", then ".join(step.phrase.format(k=param) for step, param in zip(steps, params))
    sentence = f"Given {DESCRIBED[in_type]}, {steps_in_words}; return the result."
    docstring = textwrap.fill(sentence, width=92, initial_indent="    ", subsequent_indent="    ")
    shown = "".join(f"    >>> {name}({value!r})\n    {output!r}\n" for value, output in examples)
    prompt = (f"def {name}({VARIABLE[in_type]}: {in_type}) -> {out_type}:\n"
              f'    """{docstring.lstrip()}\n{shown}    """\n')
    test = "\n\ndef check(candidate):\n" + "".join(
        f"    assert candidate({value!r}) == {output!r}\n" for value, output in hidden)
    return GeneratedProblem(task_id=task_id, prompt=prompt, canonical_solution=solution,
                            test=test, entry_point=name, composition=chain, params=params,
                            examples=examples, hidden=hidden)


def compile_function(source: str, name: str):
    """The function `source` defines. Only for source this module generated: it is trusted."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<generated {name}>", "exec"), namespace)  # noqa: S102 (our own code)
    return namespace[name]


def distinct_inputs(kind: str, rng: random.Random, count: int) -> list:
    """`count` different random inputs of one type; the last is the empty/zero edge case."""
    edge = {LIST: [], TEXT: "", NUMBER: 0}[kind]
    found = []
    while len(found) < count - 1:
        value = random_input(kind, rng)
        if value != edge and value not in found:
            found.append(value)
    return found + [edge]


def random_input(kind: str, rng: random.Random):
    if kind == LIST:
        return [rng.randint(-9, 9) for _ in range(rng.randint(2, 7))]
    if kind == NUMBER:
        return rng.randint(-999, 999)
    words = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 6)))
             for _ in range(rng.randint(1, 3))]
    return " ".join(words)


def docstring_examples(problem: Problem) -> list[tuple[str, str]]:
    """The (call, expected output) pairs of the doctest examples (`>>>`) in the prompt's docstrings.

    The prompt is parsed (not run) with `ast`, and each function's docstring read by doctest's
    parser, so an example's expected output ends where its docstring does. A docstring whose
    layout doctest refuses (HumanEval/51's) is a ValueError naming the problem.
    """
    parser = doctest.DocTestParser()
    examples = []
    for node in ast.walk(ast.parse(problem.prompt)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            try:
                found = parser.get_examples(ast.get_docstring(node) or "", name=node.name)
            except ValueError as error:  # doctest refuses the layout (one HumanEval prompt)
                raise ValueError(f"{problem.task_id}: {error}") from error
            examples += [(example.source.strip(), example.want.strip())
                         for example in found if example.want.strip()]
    return examples


def example_program(problem: Problem, completion: str) -> str:
    """A program that checks the completion on the prompt's doctest examples alone.

    AlphaCode filters samples on the examples in the problem statement before the hidden tests;
    this is that first filter. The expected outputs are read as Python values, so the prompt's
    examples must show results by their repr (true of the generated problems).
    """
    examples = docstring_examples(problem)
    if not examples:
        raise ValueError(f"{problem.task_id} has no doctest examples in its prompt")
    # Each side on lines of its own: a call may end in a comment or span several lines.
    asserts = "".join(f"    assert (\n{call}\n    ) == (\n{want}\n    )\n" for call, want in examples)
    return (problem.prompt + completion + "\n\n\ndef check_examples():\n" + asserts
            + "\n\ncheck_examples()\n")

