"""Judging a code model by running what it writes (Codex, Chen et al. 2021; AlphaCode, Li et al. 2022).

sample_completions: n completions per prompt from the cached decoder (continuing the prompt
without its trailing whitespace: see after_prompt), cut at Codex's stop sequences. codex_report: each completion's program (prompt + completion + the hidden tests) run in
the sandbox, and the unbiased pass@k. alphacode_report: AlphaCode's pipeline over the same samples:
filter on the prompt's own examples, cluster the survivors by their outputs on generated inputs,
submit one program from each of the largest clusters, and count a problem solved when a
submission passes the hidden tests (n@k), beside pass@k and the fraction the filter removed.
"""
from __future__ import annotations

import collections
import random
from typing import Sequence

import jax
import numpy as np

from aigc_jax.data import code_problems, humaneval
from aigc_jax.decoding import sampling
from aigc_jax.families.lm.inference import LanguageModel, encode_prompt
from aigc_jax.metrics.pass_at_k import mean_pass_at_k


def sample_completions(lm: LanguageModel, prompts: Sequence[str], n: int, settings: sampling.SamplingSettings,
                       seed: int = 0, batch_size: int = 128) -> list[list[str]]:
    """n completions of each prompt, truncated at the stop sequences. Row (problem p, sample j) draws
    with fold_in(fold_in(key(seed), p), j), so a sample does not depend on the batching; all batches
    share one compiled decoder (prompts padded to the longest)."""
    ids = [encode_prompt(lm.tokenizer, prompt.rstrip()) for prompt in prompts]
    rows = [(p, j) for p in range(len(prompts)) for j in range(n)]
    width = max(len(i) for i in ids)
    base = jax.random.key(seed)
    texts: list[list[str]] = [[] for _ in prompts]
    for first in range(0, len(rows), batch_size):
        chunk = rows[first:first + batch_size]
        padded = chunk + [chunk[-1]] * (batch_size - len(chunk))  # one batch shape for every call
        keys = jax.vmap(lambda p, j: jax.random.fold_in(jax.random.fold_in(base, p), j))(
            np.array([p for p, _ in padded]), np.array([j for _, j in padded]))
        out = sampling.generate(lm.model, lm.params, [ids[p] for p, _ in padded], keys, settings, pad_to=width)
        for (p, _), tokens, length in zip(chunk, out.tokens, out.lengths):
            completion = after_prompt(prompts[p], lm.tokenizer.decode(tokens[:length]))
            texts[p].append(humaneval.truncate(completion))
    return texts


def after_prompt(prompt: str, generated: str) -> str:
    """The completion of `prompt` given what was generated after prompt.rstrip().

    Prompts end in a newline (and maybe indentation), but a byte-level BPE never saw that newline
    as a token of its own before an indented body: it merges it with the next line's indentation
    ("\n   "). Ending the prompt on a lone newline token asks the model to continue after a line
    that ended at column 0, so it writes a new `def` (every completion empty once cut). The model
    continues the prompt without its trailing whitespace instead, and this returns what follows the
    full prompt (or the whole continuation, when it does not reproduce that whitespace)."""
    full = prompt.rstrip() + generated
    return full[len(prompt):] if full.startswith(prompt) else generated


def codex_report(problems: Sequence, completions: list[list[str]], sandbox, ks: Sequence[int]) -> dict:
    """Hidden-test verdicts of every completion and pass@k (unbiased, over all n samples)."""
    programs = [humaneval.program(problem, c) for problem, cs in zip(problems, completions) for c in cs]
    verdicts = sandbox.run_many(programs)
    n = len(completions[0])
    passed = np.array([v.passed for v in verdicts]).reshape(len(problems), n)
    statuses = collections.Counter(v.status for v in verdicts)
    correct = passed.sum(axis=1)
    return {"num_problems": len(problems), "samples_per_problem": n,
            "pass_at_k": {k: mean_pass_at_k(np.full(len(problems), n), correct, k) for k in ks if k <= n},
            "solved_by_any": int((correct > 0).sum()), "correct_per_problem": correct.tolist(),
            "statuses": dict(statuses), "passed": passed}


def behaviour_program(problem, completion: str, inputs: Sequence) -> str:
    """Prints the completion's output (or the exception's name) on each input: its behaviour."""
    calls = "".join(f"try:\n    print(repr({problem.entry_point}({value!r})))\n"
                    f"except Exception as error:\n    print('raised', type(error).__name__)\n" for value in inputs)
    return problem.prompt + completion + "\n\n\n" + calls


def probe_inputs(problem, count: int, seed: int) -> list:
    """Fresh inputs of the problem's input type (not its examples or hidden tests)."""
    kind = code_problems.BY_NAME[problem.composition[0]].in_type
    return code_problems.distinct_inputs(kind, random.Random(f"probe {seed} {problem.task_id}"), count)


def alphacode_report(problems: Sequence, completions: list[list[str]], passed: np.ndarray, sandbox,
                     ks: Sequence[int], num_submissions: int = 10, num_inputs: int = 10, seed: int = 0) -> dict:
    """n@k with n = num_submissions for each k (the first k samples), the filter's removal rate,
    and pass@k of the same samples; `passed` [P, n] are the hidden-test verdicts (codex_report)."""
    programs = [code_problems.example_program(problem, c) for problem, cs in zip(problems, completions) for c in cs]
    n = len(completions[0])
    survives = np.array([v.passed for v in sandbox.run_many(programs)]).reshape(len(problems), n)
    behaviour_jobs = [(p, j) for p in range(len(problems)) for j in range(n) if survives[p, j]]
    inputs = [probe_inputs(problem, num_inputs, seed) for problem in problems]
    outputs = sandbox.run_many([behaviour_program(problems[p], completions[p][j], inputs[p])
                                for p, j in behaviour_jobs])
    signature = {job: (v.status, v.output) for job, v in zip(behaviour_jobs, outputs)}
    table = {}
    for k in ks:
        if k > n:
            continue
        solved = 0
        for p in range(len(problems)):
            clusters = collections.defaultdict(list)
            for j in range(k):
                if survives[p, j]:
                    clusters[signature[(p, j)]].append(j)
            largest = sorted(clusters.values(), key=lambda members: (-len(members), members[0]))[:num_submissions]
            solved += any(passed[p, members[0]] for members in largest)
        table[k] = {"n_at_k": solved / len(problems),
                    "pass_at_k": mean_pass_at_k(np.full(len(problems), n), passed.sum(axis=1), k),
                    "filtered_out": float(1.0 - survives[:, :k].mean())}
    return {"num_submissions": num_submissions, "probe_inputs": num_inputs, "by_k": table,
            "survivors_that_pass": float(passed[survives].mean()) if survives.any() else 0.0}
