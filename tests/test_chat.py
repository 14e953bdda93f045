"""ChatGPT-style tuning: the conversation template and its loss mask, the checkable instructions
and their judge, and the losses (DPO, IPO, Bradley-Terry, GAE, PPO, KL) against hand values."""
import math
import os
import string

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.data.tokenizers import CharTokenizer
from aigc_jax.families.chat import instructions as ins
from aigc_jax.families.chat import objectives as obj
from aigc_jax.families.chat.template import ChatTokenizer, prompt_ids, render

pytestmark = pytest.mark.xdist_group("tiny_chat")  # one worker trains the session's tiny chat runs once


@pytest.fixture(scope="module")
def chat_tokenizer():
    return ChatTokenizer(CharTokenizer.from_text(string.printable))


def test_template_masks_exactly_the_assistant_turns(chat_tokenizer):
    tok = chat_tokenizer
    turns = [("system", "be brief"), ("user", "hi"), ("assistant", "yo"), ("user", "2+2?"), ("assistant", "4")]
    out = render(tok, turns)
    system, user, assistant, end = tok.role_ids["system"], tok.role_ids["user"], tok.role_ids["assistant"], tok.end_id
    assert end == tok.vocab_size - 1 and min(tok.role_ids.values()) == tok.base.vocab_size
    expected = ([system, *tok.encode("be brief"), end, user, *tok.encode("hi"), end, assistant, *tok.encode("yo"), end,
                 user, *tok.encode("2+2?"), end, assistant, *tok.encode("4"), end])
    assert out.ids.tolist() == expected
    trained = [tok.decode([i]) for i, m in zip(out.ids, out.loss_mask) if m]
    assert trained == ["y", "o", "<|end|>", "4", "<|end|>"]  # answer text and its end-of-turn only
    assert tok.decode(out.ids) == "<|system|>be brief<|end|><|user|>hi<|end|><|assistant|>yo<|end|>" \
                                  "<|user|>2+2?<|end|><|assistant|>4<|end|>"
    prompt = render(tok, turns[:2], open_assistant=True)
    assert prompt.ids[-1] == assistant and not prompt.loss_mask.any()
    with pytest.raises(ValueError, match="only open the conversation"):
        render(tok, [("user", "a"), ("system", "b")])
    with pytest.raises(ValueError, match="role one of"):
        render(tok, [("bot", "a")])


def test_prompt_drops_the_oldest_turns_but_keeps_the_system_turn(chat_tokenizer):
    tok = chat_tokenizer
    turns = [("system", "s"), ("user", "a" * 10), ("assistant", "b" * 10), ("user", "c" * 5)]
    ids, dropped = prompt_ids(tok, turns, context=48)
    assert dropped == 0 and len(ids) == 3 + 12 * 2 + 7 + 1
    ids, dropped = prompt_ids(tok, turns, context=24)
    assert dropped == 2 and tok.decode(ids) == "<|system|>s<|end|><|user|>ccccc<|end|><|assistant|>"
    with pytest.raises(ValueError, match="shorten it"):
        prompt_ids(tok, [("user", "x" * 50)], context=24)


def test_instructions_are_seeded_split_without_overlap_and_judged():
    train, heldout = ins.instructions("train", 600, seed=0), ins.instructions("heldout", 120, seed=0)
    assert train == ins.instructions("train", 600, seed=0) and train != ins.instructions("train", 600, seed=1)
    assert not {i.prompt for i in train} & {i.prompt for i in heldout}
    assert {i.kind for i in heldout} == set(ins.KINDS)
    for item in train[:60]:
        assert ins.is_correct(item, item.answer) and ins.is_concise(item, item.answer)
        rng = np.random.default_rng(0)
        long = ins.rambling(item.answer, rng)
        assert ins.is_correct(item, long) and not ins.is_concise(item, long)
        assert not ins.is_correct(item, ins.wrong_answer(item, rng))
    by_hand = {"What is 7 * 8?": "56", "Convert 3 km to m.": "3000", "Reverse the words: red fox runs": "runs fox red",
               "Sort the words: pear fig apple": "apple fig pear",
               "How many times does the letter s appear in mississippi?": "4",
               "Passage: Ann has a green kite. Question: What colour is the kite?": "green"}
    items = {i.prompt: i for i in train + heldout + ins.instructions("train", 3000, seed=5)}
    for prompt, answer in by_hand.items():
        if prompt in items:
            assert items[prompt].answer == answer
    assert ins.final_answer("Well. The answer is 12. Hmm, the answer is 13.") == "13"


def test_demonstration_errors_and_preference_noise_come_at_their_rates():
    items = ins.instructions("train", 1200, seed=2)
    rng = np.random.default_rng(0)
    wrong = np.mean([not ins.is_correct(i, ins.demonstration(i, rng, 0.25)) for i in items])
    assert abs(wrong - 0.25) < 0.04
    pairs = [(i, *ins.preference_pair(i, rng)) for i in items]
    for item, chosen, rejected in pairs:  # correct over wrong; among correct, concise over rambling
        assert ins.is_correct(item, chosen)
        assert not ins.is_correct(item, rejected) or (ins.is_concise(item, chosen) and not ins.is_concise(item, rejected))
    noisy = [(i, *ins.preference_pair(i, rng, label_noise=0.3)) for i in items]
    flipped = np.mean([not ins.is_correct(i, c) or (ins.is_correct(i, r) and ins.is_concise(i, r)) for i, c, r in noisy])
    assert abs(flipped - 0.3) < 0.05


def test_dpo_and_ipo_against_the_formulas():
    pc, pr, rc, rr = jnp.array([-3.0]), jnp.array([-5.0]), jnp.array([-4.0]), jnp.array([-4.5])
    loss, (reward_c, reward_r) = obj.dpo_loss(pc, pr, rc, rr, beta=0.5)
    h = (-3.0 + 4.0) - (-5.0 + 4.5)  # 1.5
    assert float(loss[0]) == pytest.approx(math.log1p(math.exp(-0.5 * h)), rel=1e-6)
    assert float(reward_c[0]) == pytest.approx(0.5) and float(reward_r[0]) == pytest.approx(-0.25)
    same, _ = obj.dpo_loss(pc, pr, pc, pr, beta=0.1)
    assert float(same[0]) == pytest.approx(math.log(2.0), rel=1e-6)  # policy = reference
    ipo, _ = obj.ipo_loss(pc, pr, rc, rr, beta=0.25)
    assert float(ipo[0]) == pytest.approx((1.5 - 2.0) ** 2)


def test_bradley_terry_loss_and_gradient():
    loss, right = obj.bradley_terry(jnp.array([2.0, -1.0]), jnp.array([0.5, 1.0]))
    np.testing.assert_allclose(loss, [math.log1p(math.exp(-1.5)), math.log1p(math.exp(2.0))], rtol=1e-6)
    assert right.tolist() == [True, False]
    g_chosen, g_rejected = jax.grad(lambda a, b: obj.bradley_terry(a, b)[0], argnums=(0, 1))(2.0, 0.5)
    sig = 1 / (1 + math.exp(-1.5))
    assert float(g_chosen) == pytest.approx(-(1 - sig)) and float(g_rejected) == pytest.approx(1 - sig)


def test_gae_against_a_hand_computed_sequence():
    rewards = jnp.array([[0.0, 0.0, 1.0, 0.0]])
    values = jnp.array([[0.5, 0.2, 0.4, 9.0]])
    mask = jnp.array([[1, 1, 1, 0]])  # the last slot is padding: its value must not leak in
    gamma, lam = 0.9, 0.8
    d2 = 1.0 - 0.4
    d1 = 0.0 + gamma * 0.4 - 0.2
    d0 = 0.0 + gamma * 0.2 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    advantages, returns = obj.gae(rewards, values, mask, gamma, lam)
    np.testing.assert_allclose(advantages[0], [a0, a1, a2, 0.0], rtol=1e-6)
    np.testing.assert_allclose(returns[0], [a0 + 0.5, a1 + 0.2, a2 + 0.4, 0.0], rtol=1e-6)


def test_ppo_clip_and_value_clip():
    old = jnp.log(jnp.array([0.5, 0.5, 0.5, 0.5]))
    new = jnp.log(jnp.array([0.75, 0.75, 0.25, 0.25]))  # ratios 1.5, 1.5, 0.5, 0.5
    advantages = jnp.array([1.0, -1.0, 1.0, -1.0])
    mask = jnp.ones(4)
    loss, clipped = obj.ppo_policy_loss(new, old, advantages, mask, clip=0.2)
    # min(r A, clip(r) A): 1.2 (clipped), -1.5, 0.5, -0.8 (clipped)
    assert float(loss) == pytest.approx(-(1.2 - 1.5 + 0.5 - 0.8) / 4)
    assert float(clipped) == pytest.approx(0.5)
    grad = jax.grad(lambda n: obj.ppo_policy_loss(n, old, advantages, mask, 0.2)[0])(new)
    assert float(grad[0]) == 0.0 and float(grad[3]) == 0.0 and float(grad[1]) != 0.0  # no gradient once clipped
    value = obj.ppo_value_loss(jnp.array([2.0]), jnp.array([1.0]), jnp.array([2.0]), jnp.ones(1), clip=0.2)
    assert float(value) == pytest.approx(0.5 * 0.8 ** 2)  # the clipped value 1.2 is further from the return


def test_kl_estimators():
    logp = jnp.log(jnp.array([0.2, 0.5, 0.3]))
    for estimator in ("k1", "k3"):
        np.testing.assert_array_equal(obj.kl_per_token(logp, logp, estimator), 0.0)
    p, q = np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2])
    exact = float(np.sum(p * np.log(p / q)))
    for estimator in ("k1", "k3"):  # the expectation under p of each estimator is the KL
        per = obj.kl_per_token(jnp.log(p), jnp.log(q), estimator)
        assert float(jnp.sum(p * per)) == pytest.approx(exact, rel=1e-5)
    assert float(obj.kl_per_token(jnp.log(p), jnp.log(q), "k3").min()) >= 0.0
    with pytest.raises(ValueError, match="unknown KL estimator"):
        obj.kl_per_token(logp, logp, "k2")


def test_sft_loss_counts_only_masked_tokens():
    logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]))
    targets = jnp.array([[0, 0, 1]])
    mask = jnp.array([[False, True, True]])
    assert float(obj.sft_loss(logits, targets, mask)) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2, rel=1e-6)


def test_extend_vocabulary_copies_the_base_and_starts_new_tokens_at_the_mean():
    from aigc_jax.families.chat.policy import extend_vocabulary
    base = {"token_embed": {"embedding": np.arange(12.0).reshape(4, 3)}, "lm_head": {"kernel": np.arange(8.0).reshape(2, 4)},
            "block": {"w": np.ones((3, 3))}}
    fresh = {"token_embed": {"embedding": np.zeros((6, 3))}, "lm_head": {"kernel": np.zeros((2, 6))},
             "block": {"w": np.zeros((3, 3))}}
    grown = extend_vocabulary(base, fresh, base_vocab=4)
    np.testing.assert_array_equal(grown["token_embed"]["embedding"][:4], base["token_embed"]["embedding"])
    np.testing.assert_array_equal(grown["token_embed"]["embedding"][4:], [[4.5, 5.5, 6.5]] * 2)
    np.testing.assert_array_equal(grown["lm_head"]["kernel"][:, 4:], [[1.5, 1.5], [5.5, 5.5]])
    np.testing.assert_array_equal(grown["block"]["w"], 1.0)
    with pytest.raises(ValueError, match="block"):
        extend_vocabulary(base, {**fresh, "block": {"w": np.zeros((3, 4))}}, base_vocab=4)


def test_sft_run_starts_from_the_base_and_loads_without_it(tiny_chat_base, tmp_path):
    import shutil

    from aigc_jax.config import ConfigError
    from aigc_jax.families.chat import answers, policy
    from tests.conftest import train_tiny_run
    base = policy.load_chat_model(tiny_chat_base)
    assert base.task == "lm" and base.tokenizer.vocab_size == base.tokenizer.base.vocab_size + 4
    copy = str(tmp_path / "base")
    shutil.copytree(tiny_chat_base, copy)
    sft_dir = str(tmp_path / "sft")
    train_tiny_run("chat.py:tiny", sft_dir, f"chat.base={copy}", "train.num_steps=2", "train.eval_every=2",
                   "train.checkpoint_every=2")
    shutil.rmtree(copy)  # the SFT run keeps its tokenizer and model section
    sft = policy.load_chat_model(sft_dir)
    assert sft.task == "chat_sft" and sft.step == 2 and sft.tokenizer.vocab_size == base.tokenizer.vocab_size
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(base.params),
                                                         jax.tree_util.tree_leaves(sft.params))]
    assert any(changed)
    items = ins.instructions("heldout", 3, seed=0)
    replies = answers.answer(sft.model, sft.params, sft.tokenizer, items, max_new_tokens=5)
    assert all(len(ids) <= 5 and isinstance(text, str) for text, ids in replies)
    with pytest.raises(ConfigError, match="is a chat_sft run; this stage needs one of lm"):
        train_tiny_run("chat.py:tiny", str(tmp_path / "again"), f"chat.base={sft_dir}")
    with pytest.raises(ConfigError, match="chat.base is required"):
        train_tiny_run("chat.py:tiny", str(tmp_path / "none"))


def test_preference_rows_share_the_prompt_and_mask_only_the_responses(chat_tokenizer):
    from aigc_jax.families.chat import preferences
    items = [ins.Instruction("arithmetic", "what is 2+2?", "4"), ins.Instruction("arithmetic", "what is 3+3?", "6")]
    drawn, system = preferences.constructed_pairs(items, np.random.default_rng(0), label_noise=0.0, system_prob=0.0)
    pairs = preferences.pair_rows(chat_tokenizer, drawn, system, 96)
    tok = chat_tokenizer
    for i, item in enumerate(items):
        chosen, rejected = pairs["chosen"], pairs["rejected"]
        prompt = len(render(tok, [("user", item.prompt)], open_assistant=True).ids)
        np.testing.assert_array_equal(chosen["inputs"][i, :prompt], rejected["inputs"][i, :prompt])
        for rows in (chosen, rejected):
            targets = rows["targets"][i][rows["mask"][i]]
            assert targets[-1] == tok.end_id and not rows["mask"][i, :prompt - 1].any()
        answer = tok.decode(chosen["targets"][i][chosen["mask"][i]][:-1])
        assert ins.is_correct(item, answer) or ins.is_concise(item, answer)
    flat = preferences.flat(pairs)
    assert flat["inputs"].shape == (4, 96)


def test_ranked_pair_prefers_correct_then_concise_and_skips_ties():
    from aigc_jax.families.chat.sampled_pairs import ranked_pair
    item = ins.Instruction("arithmetic", "What is 2 + 2?", "4")
    assert ranked_pair(item, ["5", "4", "The answer is 4."]) == ("4", "5")
    assert ranked_pair(item, ["The answer is 4.", "4"]) == ("4", "The answer is 4.")
    assert ranked_pair(item, ["5", "6", "7"]) is None and ranked_pair(item, ["4", "4"]) is None


def test_all_ranked_pairs_are_every_distinct_better_worse_pair():
    from aigc_jax.families.chat.sampled_pairs import ranked_pairs
    item = ins.Instruction("arithmetic", "What is 2 + 2?", "4")
    samples = ["5", "4", "The answer is 4.", "4", "6"]
    assert ranked_pairs(item, samples, "extremes") == [("4", "5")]
    assert ranked_pairs(item, samples, "all") == [("4", "5"), ("4", "The answer is 4."), ("4", "6"),
                                                  ("The answer is 4.", "5"), ("The answer is 4.", "6")]
    assert ranked_pairs(item, ["5", "6"], "all") == [] and ranked_pairs(item, ["4", "4"], "extremes") == []
    with pytest.raises(ValueError, match="unknown pairing 'every'"):
        ranked_pairs(item, samples, "every")


def test_sampled_pairs_come_from_the_sft_policy_in_fixed_batches(tiny_chat_sft, monkeypatch, tmp_path):
    """data.pairs='sampled': the pool is built from the SFT policy's answers (here a stand-in
    decoder whose answers cycle right / rambling / wrong), in batches of one shape, sampled once
    and then read from the cache (a corrupt cache file is sampled again), and the training rows
    hold exactly the pool's chosen and rejected responses."""
    from aigc_jax import families
    from aigc_jax.config import load_config
    from aigc_jax.families.chat import policy, sampled_pairs, stages
    from aigc_jax.families.chat.instructions import judge_rank
    from tests.conftest import config_path
    calls = []

    def fake_answer(model, params, tokenizer, items, *, key, temperature, max_new_tokens):
        calls.append(len(items))
        replies = []
        for i, item in enumerate(items):
            cycle = ((len(calls) - 1) % 4 + 1 + i) % 3  # the same answers each round of four calls
            text = [item.answer, f"Let me think. The answer is {item.answer}.", item.answer + "9"][cycle]
            replies.append((text, []))
        return replies
    monkeypatch.setattr(sampled_pairs.answers, "answer", fake_answer)
    monkeypatch.setenv("AIGC_JAX_CHAT_SAMPLES", str(tmp_path / "samples"))
    config = load_config(config_path("chat.py:dpo,tiny"), [f"chat.sft={tiny_chat_sft}", "data.pairs=sampled",
                                                            "data.pairing=extremes", "data.pair_instructions=10",
                                                            "data.pair_samples=3"])
    chat = policy.load_chat_model(tiny_chat_sft)
    items = stages.instruction_sets(config)[0][:10]
    pool, made = sampled_pairs.sampled_pool(chat, items, samples=3, temperature=1.0, seed=0, max_new_tokens=6, batch=8)
    assert calls == [8, 8, 8, 8] and made == 10 and 0 < len(pool) <= 10  # 30 rows, the last call padded to 8
    assert all(judge_rank(i, good) > judge_rank(i, bad) for i, good, bad in pool)
    cached = list((tmp_path / "samples").iterdir())
    assert len(cached) == 1 and calls == [8, 8, 8, 8]  # the texts were cached
    every, _ = sampled_pairs.sampled_pool(chat, items, samples=3, temperature=1.0, seed=0, max_new_tokens=6, batch=8,
                                          pairing="all")  # the same texts, from the cache: no new calls
    assert calls == [8, 8, 8, 8] and set(pool) < set(every)
    assert all(judge_rank(i, good) > judge_rank(i, bad) for i, good, bad in every)
    cached[0].write_text('["half a list"')
    with pytest.warns(UserWarning, match="cache file .* is unusable"):
        again, _ = sampled_pairs.sampled_pool(chat, items, samples=3, temperature=1.0, seed=0, max_new_tokens=6,
                                              batch=8)
    assert len(calls) == 8 and again == pool  # sampled again (the stand-in answers the same), and re-cached
    calls.clear()
    task = families.build_task(config, "")
    assert "pairs (extremes) from 3 samples" in task.description
    batch, pairs = task.train_batch(0), {(good, bad) for _, good, bad in pool}
    n = batch["inputs"].shape[0] // 2
    for i in range(n):
        chosen = chat.tokenizer.decode(batch["targets"][i][batch["mask"][i]][:-1])
        rejected = chat.tokenizer.decode(batch["targets"][n + i][batch["mask"][n + i]][:-1])
        assert (chosen, rejected) in pairs
    config.data.update(pairs="mixed", pairing="all")  # the first half of each batch from the pool, the rest written
    task = families.build_task(config, "")
    assert "half of each batch; the other half judge-written" in task.description
    batch, every_pair = task.train_batch(0), {(good, bad) for _, good, bad in every}
    for i in range(n):
        chosen = chat.tokenizer.decode(batch["targets"][i][batch["mask"][i]][:-1])
        rejected = chat.tokenizer.decode(batch["targets"][n + i][batch["mask"][n + i]][:-1])
        assert ((chosen, rejected) in every_pair) == (i < n // 2)
    monkeypatch.setenv("AIGC_JAX_CHAT_SAMPLES", "off")
    with pytest.raises(Exception, match="samples differ in the judge's rank"):
        monkeypatch.setattr(sampled_pairs.answers, "answer",
                            lambda model, params, tok, items, **kw: [("no", [])] * len(items))
        families.build_task(config, "")


def test_dpo_starts_at_log_2_and_leaves_the_reference_alone(tiny_chat_sft, tmp_path):
    from aigc_jax.families.chat import policy
    from aigc_jax.train.metrics import read_metrics
    from tests.conftest import train_tiny_run
    before = policy.load_chat_model(tiny_chat_sft)
    workdir = str(tmp_path / "dpo")
    train_tiny_run("chat.py:dpo,tiny", workdir, f"chat.sft={tiny_chat_sft}", "optimizer.learning_rate=0.01")
    evals = read_metrics(workdir, "eval")
    assert evals[0]["step"] == 0 and evals[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-6)
    assert evals[0]["reward_margin"] == 0.0
    from aigc_jax import families
    from aigc_jax.config import load_config
    from tests.conftest import config_path
    task = families.build_task(load_config(config_path("chat.py:dpo,tiny"), [f"chat.sft={tiny_chat_sft}",
                                                                             "optimizer.learning_rate=0.003",
                                                                             "chat.chosen_nll=0"]), "")
    state, batch, step = task.init(jax.random.key(0)), task.train_batch(0), jax.jit(task.train_step)
    for _ in range(6):  # on one batch of pairs the loss must fall and the margin open
        state, metrics = step(state, batch, jax.random.key(0), task.frozen)
    assert float(metrics["loss"]) < math.log(2.0) and float(metrics["reward_margin"]) > 0
    after = policy.load_chat_model(tiny_chat_sft)  # the reference run is read, never written
    for a, b in zip(jax.tree_util.tree_leaves(before.params), jax.tree_util.tree_leaves(after.params)):
        np.testing.assert_array_equal(a, b)
    dpo = policy.load_chat_model(workdir)
    assert dpo.task == "chat_dpo" and dpo.step == 4


def test_dpo_chosen_nll_term_adds_the_chosen_responses_nll_per_token(tiny_chat_sft):
    from aigc_jax import families
    from aigc_jax.config import load_config
    from aigc_jax.families.chat import stages
    from tests.conftest import config_path
    task = families.build_task(load_config(config_path("chat.py:dpo,tiny"), [f"chat.sft={tiny_chat_sft}",
                                                                             "chat.chosen_nll=0.5"]), "")
    state, batch = task.init(jax.random.key(0)), task.train_batch(0)
    _, metrics = jax.jit(task.train_step)(state, batch, jax.random.key(0), task.frozen)
    n = batch["inputs"].shape[0] // 2
    chosen = {k: v[:n] for k, v in batch.items()}
    logp = stages.response_log_probs(task.train_step.keywords["model"], state.params, chosen)
    nll = float(jnp.mean(-logp / chosen["mask"].sum(-1)))
    assert float(metrics["chosen_nll"]) == pytest.approx(nll, rel=1e-5)
    assert float(metrics["loss"]) == pytest.approx(math.log(2.0) + 0.5 * nll, rel=1e-5)  # policy = reference


def test_reward_eval_agrees_with_the_training_evaluation_and_with_swapped_pairs(tiny_chat_rm):
    from aigc_jax.config import load_saved_config
    from aigc_jax.families.chat import policy, preferences, reward_eval, stages
    from aigc_jax.train.metrics import read_metrics
    config = load_saved_config(tiny_chat_rm)
    _, heldout = stages.instruction_sets(config)
    written = preferences.heldout_written(heldout, config.seed)
    rm = policy.load_chat_model(tiny_chat_rm)
    accuracy = reward_eval.pairwise_accuracy(rm, written, batch=5)  # rows of another width, a padded last batch
    assert accuracy == pytest.approx(read_metrics(tiny_chat_rm, "eval")[-1]["pair_accuracy"], abs=1e-6)
    swapped = [(item, bad, good) for item, good, bad in written]
    assert accuracy + reward_eval.pairwise_accuracy(rm, swapped) == pytest.approx(1.0)
    by_kind = reward_eval.accuracy_by_kind(written, reward_eval.ranked_right(rm, written, batch=5))
    assert set(by_kind) == {item.kind for item in heldout} and sum(n for _, n in by_kind.values()) == len(written)
    assert sum(a * n for a, n in by_kind.values()) / len(written) == pytest.approx(accuracy)


def test_reward_model_reads_the_last_response_token_and_learns_a_batch(tiny_chat_sft, tmp_path):
    from aigc_jax import families
    from aigc_jax.config import load_config
    from aigc_jax.families.chat import policy, reward
    from tests.conftest import config_path, train_tiny_run
    mask = jnp.array([[0, 1, 1, 0, 0], [0, 0, 0, 0, 1]], bool)
    assert reward.last_response_position(mask).tolist() == [2, 4]
    config = load_config(config_path("chat.py:rm,tiny"), [f"chat.sft={tiny_chat_sft}", "optimizer.learning_rate=0.003"])
    task = families.build_task(config, "")
    state, batch = task.init(jax.random.key(0)), task.train_batch(0)
    sft = policy.load_chat_model(tiny_chat_sft)
    rows = {k: jnp.asarray(v) for k, v in batch.items()}
    r0 = reward.rewards(sft.model, state.params, rows["inputs"], rows["mask"])
    assert np.all(np.asarray(r0) == 0.0)  # a zero head
    state = state.replace(params={**state.params, "head": {"kernel": jnp.ones_like(state.params["head"]["kernel"]),
                                                            "bias": state.params["head"]["bias"]}})
    r1 = reward.rewards(sft.model, state.params, rows["inputs"], rows["mask"])
    after = np.asarray(rows["inputs"]).copy()  # tokens after each response must not move its reward
    last = np.asarray(reward.last_response_position(rows["mask"]))
    for i, p in enumerate(last):
        after[i, p + 1:] = 3
    np.testing.assert_allclose(reward.rewards(sft.model, state.params, jnp.asarray(after), rows["mask"]), r1, rtol=1e-5)
    state = task.init(jax.random.key(0))
    step = jax.jit(task.train_step)
    for _ in range(8):
        state, metrics = step(state, batch, jax.random.key(0))
    assert float(metrics["loss"]) < math.log(2.0) and float(metrics["pair_accuracy"]) > 0.5
    workdir = str(tmp_path / "rm")
    train_tiny_run("chat.py:rm,tiny", workdir, f"chat.sft={tiny_chat_sft}")
    loaded = policy.load_chat_model(workdir)
    assert loaded.task == "chat_rm" and set(loaded.params) == {"lm", "head"}


def test_adaptive_kl_weight_follows_zieglers_controller():
    from aigc_jax.families.chat import ppo
    s = ppo.PPOSettings(kl_target=0.2, kl_horizon=256.0)
    # KL 0.3 is 50% over the target: the error is clipped to 0.2; 128 of a 256-rollout horizon
    np.testing.assert_allclose(float(ppo.adapted_beta(0.1, 0.3, s, 128)), 0.1 * (1 + 0.2 * 0.5), rtol=1e-6)
    np.testing.assert_allclose(float(ppo.adapted_beta(0.1, 0.19, s, 128)), 0.1 * (1 - 0.05 * 0.5), rtol=1e-5)
    np.testing.assert_allclose(float(ppo.adapted_beta(0.1, 0.0, s, 256)), 0.1 * 0.8, rtol=1e-6)
    assert float(ppo.adapted_beta(0.1, 0.2, s, 128)) == pytest.approx(0.1)


def test_ppo_rollouts_are_reproducible_and_the_first_iteration_has_zero_kl(tiny_chat_sft, tiny_chat_rm):
    from aigc_jax import families
    from aigc_jax.config import load_config
    from tests.conftest import config_path
    config = load_config(config_path("chat.py:ppo,tiny"), [f"chat.sft={tiny_chat_sft}", f"chat.rm={tiny_chat_rm}",
                                                           "chat.kl_target=0.5"])
    task = families.build_task(config, "")
    state = task.init(jax.random.key(0))
    first, again = task.host_batch(state, 3), task.host_batch(state, 3)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    other = task.host_batch(state, 4)
    assert not np.array_equal(first["inputs"], other["inputs"])
    shapes = task.train_batch(3)
    assert {k: v.shape for k, v in shapes.items()} == {k: v.shape for k, v in first.items()}
    assert first["mask"].sum(1).min() >= 1 and first["mask"].sum(1).max() <= config.chat.max_response
    new_state, metrics = jax.jit(task.train_step)(state, first, jax.random.key(0), task.frozen)
    assert float(metrics["kl"]) == 0.0  # the policy starts as the reference
    # ... so the adaptive KL weight falls by the largest step: (1 - 0.2 x rollouts / horizon)
    assert float(metrics["beta"]) == pytest.approx(config.chat.beta)
    shrunk = config.chat.beta * (1 - 0.2 * config.train.batch_size / config.chat.kl_horizon)
    assert float(new_state.extra["kl_beta"]) == pytest.approx(shrunk, rel=1e-6)
    assert int(new_state.step) == 1 and all(np.isfinite(float(v)) for v in metrics.values())
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(state.params["policy"]),
                                                         jax.tree_util.tree_leaves(new_state.params["policy"]))]
    assert any(changed)


def test_ppo_against_the_judge_scores_rollouts_by_the_judge_without_a_reward_model(tiny_chat_sft):
    from aigc_jax import families
    from aigc_jax.config import load_config
    from aigc_jax.families.chat import policy, ppo, ppo_task
    from tests.conftest import config_path
    config = load_config(config_path("chat.py:ppo,tiny"), [f"chat.sft={tiny_chat_sft}", "chat.reward=judge"])
    task = families.build_task(config, "")
    assert "reward" not in task.frozen and "the judge" in task.description
    state = task.init(jax.random.key(0))
    batch = task.host_batch(state, 3)
    assert set(np.unique(batch["judge_score"])) <= {0.0, 0.5, 1.0}
    np.testing.assert_array_equal(batch["judge_score"] > 0, batch["correct"] > 0)
    chosen = np.linspace(0.0, 1.0, len(batch["correct"])).astype(np.float32)
    terms = ppo.rollout_terms(policy.load_chat_model(tiny_chat_sft).model, state.params, task.frozen,
                              batch | {"judge_score": chosen}, ppo_task.settings_of(config.chat))
    np.testing.assert_allclose(np.asarray(terms["score"]), chosen)


def test_streaming_gives_the_batched_decoders_tokens(tiny_chat_sft):
    from aigc_jax.decoding import sampling, streaming
    from aigc_jax.decoding.samplers import SamplingSettings
    from aigc_jax.families.chat import policy
    chat = policy.load_chat_model(tiny_chat_sft)
    prompt = list(range(3, 40))
    for settings in (SamplingSettings(max_new_tokens=12, temperature=0.0),
                     SamplingSettings(max_new_tokens=12, temperature=1.0, top_p=0.9, stop_tokens=(5,))):
        batched = sampling.generate(chat.model, chat.params, [prompt], jax.random.key(7), settings)
        streamed = list(streaming.stream(chat.model, chat.params, prompt, jax.random.key(7), settings))
        assert streamed == batched.tokens[0][:batched.lengths[0]].tolist()
    with pytest.raises(ValueError, match="does not slide the window"):
        list(streaming.stream(chat.model, chat.params, prompt, jax.random.key(0),
                              SamplingSettings(max_new_tokens=chat.model.context_length)))


def test_chat_session_commands_history_and_trimming(tiny_chat_sft):
    import io

    from aigc_jax.decoding.samplers import SamplingSettings
    from aigc_jax.families.chat import policy
    from aigc_jax.families.chat.session import Session
    chat = policy.load_chat_model(tiny_chat_sft)
    out = io.StringIO()
    settings = lambda room, end: SamplingSettings(max_new_tokens=min(4, room), stop_tokens=(end,))  # noqa: E731
    session = Session(chat, "", settings, seed=0, out=out)
    first = session.reply("What is 2 + 2?")
    assert session.turns == [("user", "What is 2 + 2?"), ("assistant", first)] and first in out.getvalue()
    assert session.command("/system Answer briefly.") and session.system == "Answer briefly."
    for _ in range(6):  # each exchange adds about 50 tokens to a 192-token context
        session.reply("Reverse the words: red blue green moon kite")
    assert "oldest" in out.getvalue() and "left out" in out.getvalue()
    assert session.turns[0][0] == "user" and len(session.turns) < 14
    assert session.command("/reset") and session.turns == []
    assert not session.command("hello")


def test_win_rate_and_judge_ranks_by_hand():
    from aigc_jax.families.chat import evaluation
    items = [ins.Instruction("arithmetic", "What is 1 + 1?", "2")] * 4
    ours = ["2", "The answer is 2.", "3", "2"]
    theirs = ["The answer is 2.", "The answer is 2.", "2", "5"]
    assert [ins.judge_rank(i, r) for i, r in zip(items, ours)] == [2, 1, 0, 2]
    # win (concise over rambling), tie, loss, win
    assert evaluation.win_rate(items, ours, theirs) == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_sampled_accuracy_over_several_samples_is_their_mean_with_an_error_over_instructions(tiny_chat_sft):
    from aigc_jax.families.chat import evaluation, policy
    chat = policy.load_chat_model(tiny_chat_sft)
    items = ins.instructions("heldout", 12, 0)
    assert ins.instructions("heldout", 5, 0) == items[:5]  # a longer held-out list keeps the shorter one's items
    one, other = (evaluation.evaluate(chat, items, seed=s, max_new_tokens=6) for s in (3, 4))
    both = evaluation.evaluate(chat, items, seed=3, max_new_tokens=6, samples=2)
    assert both["sampled_accuracy"] == pytest.approx((one["sampled_accuracy"] + other["sampled_accuracy"]) / 2)
    assert both["accuracy"] == one["accuracy"] and both["greedy"] == one["greedy"]
    assert {k for k in both if k.startswith("accuracy_")} == {f"accuracy_{i.kind}" for i in items}  # per-kind columns
    assert evaluation.standard_error([1, 0, 1, 0]) == pytest.approx(math.sqrt(1 / 3) / 2)  # sd (ddof 1) / sqrt(n)
    assert evaluation.paired_difference(both["sampled_correct"], both["sampled_correct"]) == (0.0, 0.0)
    mean, error = evaluation.paired_difference([1, 1, 0, 1], [1, 0, 0, 0])  # differences 0, 1, 0, 1
    assert mean == 0.5 and error == pytest.approx(math.sqrt(1 / 3) / 2)


@pytest.mark.slow  # three subprocesses; the stages' tests and contract rows cover the code in the default run
def test_chat_commands_on_tiny_runs(tiny_chat_base, tiny_chat_sft, tiny_chat_rm, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO, train_tiny_run
    ppo_dir = str(tmp_path / "ppo")
    train_tiny_run("chat.py:ppo,tiny", ppo_dir, f"chat.sft={tiny_chat_sft}", f"chat.rm={tiny_chat_rm}")
    table = subprocess.run([sys.executable, "-m", "experiments.chat_eval", f"--workdir={tiny_chat_base},{ppo_dir}",
                            f"--reference={tiny_chat_sft}", "--num=16", "--samples=2"], cwd=REPO, capture_output=True,
                           text=True, timeout=600)  # 16: more than the tiny config's 12 held-out instructions
    assert table.returncode == 0, table.stderr[-2000:]
    assert "(lm, step 20)" in table.stdout and "(chat_ppo, step 4)" in table.stdout and "win rate" in table.stdout
    assert "Held-out: 16 instructions" in table.stdout and "(2 per instruction)" in table.stdout
    assert "sampled accuracy - reference's (paired se)" in table.stdout
    plot = str(tmp_path / "ppo.png")
    drawn = subprocess.run([sys.executable, "-m", "experiments.chat_ppo_plot", f"--workdir={ppo_dir}", f"--out={plot}"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert drawn.returncode == 0 and os.path.getsize(plot) > 0, drawn.stderr[-2000:]
    answer = subprocess.run([sys.executable, "-m", "experiments.chat", f"--workdir={ppo_dir}", "--prompt=What is 1 + 1?",
                             "--max_new_tokens=4"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert answer.returncode == 0, answer.stderr[-2000:]
    refused = subprocess.run([sys.executable, "-m", "experiments.chat", f"--workdir={tiny_chat_rm}", "--prompt=hi"],
                             cwd=REPO, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "is a reward model" in refused.stderr


def test_the_default_configs_instruction_sets_exist():
    from aigc_jax.config import load_config
    from aigc_jax.families.chat import stages
    from tests.conftest import config_path
    config = load_config(config_path("chat.py"))
    train, heldout = stages.instruction_sets(config)
    assert len(train) == config.data.num_train and len(heldout) == config.data.num_heldout
    assert {i.kind for i in train} == set(ins.KINDS)
