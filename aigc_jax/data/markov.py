"""A random order-k Markov source over a small alphabet, with its exact entropies.

The source: x_t depends on the previous k symbols only, P(x_t | x_{t-k} .. x_{t-1}) =
transitions[context, x_t], each of the V**k rows drawn from a symmetric Dirichlet(alpha)
from a seed. A context (x_{t-k}, .., x_{t-1}) is the base-V number with x_{t-k} most
significant, so the next context after symbol x is (context * V + x) mod V**k.

Exact quantities (Cover & Thomas, ch. 4):
  stationary distribution pi over contexts: pi M = pi, M[s, (s V + x) mod V^k] = P(x | s);
  entropy rate H = -sum_s pi(s) sum_x P(x|s) log P(x|s);
  conditional entropy with a shorter context, for c < k,
    H_c = H(X_t | X_{t-c} .. X_{t-1}) = -sum_{u, x} p(u, x) log p(x | u),
  where u ranges over the last c symbols of the stationary context. H_0 >= H_1 >= .. >= H_k = H.

Token streams are a pure function of (seed, split, step): every window starts from the
stationary distribution, so all its positions are statistically alike, and position t
(seeing t previous symbols) has the exact limit H_min(t, k).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

SPLITS = {"train": 0, "validation": 1}
CONFIG_FIELDS = ("markov_alphabet", "markov_order", "markov_seed", "markov_concentration")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclasses.dataclass(frozen=True)
class MarkovSource:
    """transitions [V**k, V] float64 rows summing to 1; stationary [V**k] over contexts."""
    alphabet_size: int
    order: int
    transitions: np.ndarray
    stationary: np.ndarray

    @property
    def num_contexts(self) -> int:
        return self.alphabet_size ** self.order

    def next_context(self, context: np.ndarray, symbol: np.ndarray) -> np.ndarray:
        return (context * self.alphabet_size + symbol) % self.num_contexts

    @functools.cached_property
    def _joint_tables(self) -> tuple:
        """For c = 0..k: p(u, x) [V**c, V], u = the last c symbols of the stationary context."""
        joint_full = self.stationary[:, None] * self.transitions  # p(s, x) [V^k, V]
        tables = []
        for c in range(self.order + 1):
            suffix = np.arange(self.num_contexts) % (self.alphabet_size ** c)
            table = np.zeros((self.alphabet_size ** c, self.alphabet_size))
            np.add.at(table, suffix, joint_full)
            tables.append(table)
        return tuple(tables)

    def conditional_table(self, context_length: int) -> np.ndarray:
        """p(x | previous c symbols) [V**c, V] under stationarity, 0 <= c <= k."""
        joint = self._joint_tables[self._check_c(context_length)]
        marginal = joint.sum(axis=1, keepdims=True)
        return np.divide(joint, marginal, out=np.full_like(joint, 1.0 / self.alphabet_size),
                         where=marginal > 0)

    def conditional_entropy(self, context_length: int) -> float:
        """H(X_t | X_{t-c} .. X_{t-1}) in nats, exact; c = k gives the entropy rate."""
        joint = self._joint_tables[self._check_c(context_length)]
        conditional = self.conditional_table(context_length)
        positive = joint > 0
        return float(-np.sum(joint[positive] * np.log(conditional[positive])))

    @property
    def entropy_rate(self) -> float:
        """H = -sum_s pi(s) sum_x P(x | s) log P(x | s), nats per symbol."""
        rows = np.where(self.transitions > 0, self.transitions * np.log(np.where(self.transitions > 0,
                                                                                  self.transitions, 1.0)), 0.0)
        return float(-np.sum(self.stationary * rows.sum(axis=1)))

    def _check_c(self, c: int) -> int:
        if not 0 <= c <= self.order:
            raise ValueError(f"context length {c} is outside 0..{self.order} (the source's order)")
        return c

    def sample(self, rng: np.random.Generator, num_sequences: int, length: int) -> np.ndarray:
        """[num_sequences, length] int32 symbols; each sequence starts from the stationary context."""
        contexts = rng.choice(self.num_contexts, size=num_sequences, p=self.stationary)
        digits = [(contexts // self.alphabet_size ** (self.order - 1 - i)) % self.alphabet_size
                  for i in range(self.order)]
        symbols = list(digits)
        cumulative = np.cumsum(self.transitions, axis=1)
        for _ in range(max(length - self.order, 0)):
            uniform = rng.random(num_sequences)[:, None]
            nxt = np.minimum((uniform > cumulative[contexts]).sum(axis=1), self.alphabet_size - 1)
            symbols.append(nxt)
            contexts = self.next_context(contexts, nxt)
        return np.stack(symbols[:length], axis=1).astype(np.int32)

    def log_probs(self, tokens: np.ndarray) -> np.ndarray:
        """Exact log P(x_t | x_0 .. x_{t-1}) for t = 1 .. L-1 of stationary windows [N, L] -> [N, L-1].

        Position t sees min(t, k) previous symbols (the same targets as an LM's next-token loss)."""
        tokens = np.asarray(tokens, np.int64)
        out = np.empty((tokens.shape[0], tokens.shape[1] - 1))
        for t in range(1, tokens.shape[1]):
            c = min(t, self.order)
            context = np.zeros(tokens.shape[0], np.int64)
            for symbol in tokens[:, t - c:t].T:
                context = context * self.alphabet_size + symbol
            out[:, t - 1] = np.log(self.conditional_table(c)[context, tokens[:, t]])
        return out


def stationary_distribution(transitions: np.ndarray, alphabet_size: int, order: int) -> np.ndarray:
    """pi [V**k] with pi M = pi and sum(pi) = 1, M the context-to-context transition matrix."""
    num_contexts = alphabet_size ** order
    matrix = np.zeros((num_contexts, num_contexts))
    contexts = np.arange(num_contexts)
    for symbol in range(alphabet_size):
        matrix[contexts, (contexts * alphabet_size + symbol) % num_contexts] += transitions[:, symbol]
    # (M^T - I) pi = 0 with one equation replaced by sum(pi) = 1.
    system = matrix.T - np.eye(num_contexts)
    system[-1] = 1.0
    rhs = np.zeros(num_contexts)
    rhs[-1] = 1.0
    pi = np.linalg.solve(system, rhs)
    return np.clip(pi, 0.0, None) / np.clip(pi, 0.0, None).sum()


def make_source(alphabet_size: int, order: int, seed: int = 0, concentration: float = 1.0) -> MarkovSource:
    """A random order-k source: each context's next-symbol row ~ Dirichlet(concentration)."""
    if not 2 <= alphabet_size <= len(LETTERS):
        raise ValueError(f"markov alphabet size {alphabet_size} is outside 2..{len(LETTERS)}")
    if not 1 <= order <= 12 or alphabet_size ** order > 1 << 16:
        raise ValueError(f"markov order {order} with alphabet {alphabet_size} gives "
                         f"{alphabet_size}**{order} contexts; keep order >= 1 and at most 65536 contexts")
    if not concentration > 0:
        raise ValueError(f"markov concentration must be > 0, got {concentration}")
    rng = np.random.default_rng([seed, alphabet_size, order])
    transitions = rng.dirichlet(np.full(alphabet_size, float(concentration)), size=alphabet_size ** order)
    return MarkovSource(alphabet_size, order, transitions, stationary_distribution(transitions, alphabet_size, order))


def source_from_config(data_config) -> MarkovSource:
    """The source named by config.data.markov_{alphabet, order, seed, concentration}."""
    missing = [f"data.{name}" for name in CONFIG_FIELDS if name not in data_config]
    if missing:
        raise ValueError(f"data.corpus 'markov' needs the config field(s) {', '.join(missing)}; "
                         f"start from configs/markov_lm.py")
    return make_source(data_config.markov_alphabet, data_config.markov_order, data_config.markov_seed,
                       data_config.markov_concentration)


def windows(source: MarkovSource, seed: int, split: str, step: int, num_windows: int, length: int) -> np.ndarray:
    """[num_windows, length] stationary windows, a pure function of (seed, split, step)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if num_windows < 1 or length < 2:
        raise ValueError(f"need at least one window of at least 2 tokens, got {num_windows} windows of {length} "
                         f"(for the markov corpus, eval.num_windows and train.batch_size must be positive)")
    return source.sample(np.random.default_rng([seed, SPLITS[split], step]), num_windows, length)


def window_entropy_limit(source: MarkovSource, context_length: int) -> float:
    """The least expected next-token loss of an LM over windows of context_length + 1 tokens:
    (1 / T) sum_{t=1..T} H_min(t, k), T = context_length (position t sees t symbols)."""
    return float(np.mean([source.conditional_entropy(min(t, source.order))
                          for t in range(1, context_length + 1)]))


def vocabulary(alphabet_size: int) -> str:
    """The letters that stand for symbols 0 .. V-1 (a vocabulary-only char tokenizer)."""
    return LETTERS[:alphabet_size]


def describe(source: MarkovSource) -> str:
    return (f"order-{source.order} Markov source over {source.alphabet_size} symbols "
            f"(entropy rate {source.entropy_rate:.4f} nats = {source.entropy_rate / math.log(2):.4f} bits)")
