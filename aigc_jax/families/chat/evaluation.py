"""Any chat stage (or a base LM) on held-out instructions, scored by the judge.

  accuracy        greedy answers judged correct (also sampled ones, temperature 1)
  win rate        against a reference policy (the SFT run), per instruction by the judge's
                  ranking (correct and concise > correct but rambling > wrong): wins + ties / 2
  KL to reference the mean over sampled responses of sum_t log pi(y_t) - log ref(y_t) (the k1
                  estimate of KL(pi || ref) per response, in nats)
  mean length     characters of the greedy answers
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.families.chat import answers, instructions as ins, stages
from aigc_jax.families.chat.conversations import question_turns
from aigc_jax.families.chat.template import render
from aigc_jax.families.chat.rollouts import rollout_rows


def win_rate(items: list, responses: list, reference_responses: list) -> float:
    ours = np.array([ins.judge_rank(i, r) for i, r in zip(items, responses)])
    theirs = np.array([ins.judge_rank(i, r) for i, r in zip(items, reference_responses)])
    return float(np.mean((ours > theirs) + 0.5 * (ours == theirs)))


def sequence_log_probs(chat, params, rows: dict, batch: int = 32) -> np.ndarray:
    score = jax.jit(lambda p, b: stages.response_log_probs(chat.model, p, b))
    out = []
    for start in range(0, len(rows["inputs"]), batch):
        part = {k: jnp.asarray(v[start:start + batch]) for k, v in rows.items() if k in ("inputs", "targets", "mask")}
        out.append(np.asarray(score(params, part)))
    return np.concatenate(out)


def kl_to(chat, reference, items: list, sampled_ids: list) -> float:
    """Mean per-response k1 KL(pi || ref) of the policy's sampled responses (token ids)."""
    prompts = [render(chat.tokenizer, question_turns(i), open_assistant=True).ids for i in items]
    rows = rollout_rows(chat.tokenizer, prompts, sampled_ids, chat.model.context_length)
    return float(np.mean(sequence_log_probs(chat, chat.params, rows) - sequence_log_probs(reference, reference.params, rows)))


def standard_error(per_item) -> float:
    """The standard error of a mean over instructions (per_item: each instruction's score, or its
    mean over several samples, so the samples of one instruction are not counted as independent)."""
    per_item = np.asarray(per_item, np.float64)
    return float(np.std(per_item, ddof=1) / np.sqrt(len(per_item))) if len(per_item) > 1 else float("nan")


def paired_difference(ours, theirs) -> tuple:
    """(mean of ours - theirs, its standard error) over the same instructions: the per-instruction
    differences' spread, smaller than the two accuracies' errors combined when the runs agree on
    most instructions."""
    difference = np.asarray(ours, np.float64) - np.asarray(theirs, np.float64)
    return float(np.mean(difference)), standard_error(difference)


def evaluate(chat, items: list, *, reference=None, reference_greedy: list | None = None, seed: int = 0,
             max_new_tokens: int = 48, samples: int = 1) -> dict:
    """The row of one run: greedy accuracy, sampled accuracy (the mean over `samples` answers per
    instruction at temperature 1, seeds seed, seed + 1, ...), their standard errors over
    instructions, concise share, length, win rate and KL against `reference` (a ChatModel) when
    given; also the greedy texts and the per-instruction scores (greedy_correct, sampled_correct:
    the mean over the samples), for paired comparisons (paired_difference)."""
    greedy = [t for t, _ in answers.answer(chat.model, chat.params, chat.tokenizer, items,
                                          max_new_tokens=max_new_tokens)]
    draws = [answers.answer(chat.model, chat.params, chat.tokenizer, items, seed=seed + k, temperature=1.0,
                            max_new_tokens=max_new_tokens) for k in range(samples)]
    row = answers.scores(items, greedy)
    row["greedy_correct"] = np.array([ins.is_correct(i, t) for i, t in zip(items, greedy)], np.float64)
    row["stderr_accuracy"] = standard_error(row["greedy_correct"])
    per_item = np.mean([[ins.is_correct(i, t) for i, (t, _) in zip(items, draw)] for draw in draws], axis=0)
    row["sampled_correct"] = per_item
    row["sampled_accuracy"], row["stderr_sampled_accuracy"] = float(np.mean(per_item)), standard_error(per_item)
    if reference is not None:
        row["win_rate"] = win_rate(items, greedy, reference_greedy)
        row["kl_to_reference"] = float(np.mean([kl_to(chat, reference, items, [ids for _, ids in draw])
                                                for draw in draws]))
    row["greedy"] = greedy
    return row
