"""The Transformer LM on a random order-k Markov source with a known entropy rate
(the math reproduction "cross-entropy meets entropy", experiments/reproduce_math.py).

The source (aigc_jax/data/markov.py): alphabet of 3 symbols, order 3, transition rows
~ Dirichlet(0.5) from seed 0; entropy rate H = 0.6447 nats, H(X_t | previous 2) = 0.8257,
H(X_t | previous 1) = 0.9367. Training windows are drawn fresh from (seed, step).

Variants (`--config=configs/markov_lm.py:VARIANT`):
  (none)  context 64 >= order: the validation loss approaches H (up to the first order-1
          positions of each window, which see fewer symbols; see window_entropy_limit).
  short   context order - 1 = 2: the model can only learn P(x_t | previous 2 symbols), so
          its last position levels off at H(X_t | previous 2 symbols).
  quick   the fast test's version: an order-2 source (H = 0.7011, H(X_t | previous 1) =
          0.8155), 2 layers x 32, context 32, 600 steps; `quick,short` has context 1.
  tiny    a few steps of a tiny model (tests).
Everything else is configs/gpt_char.py's LM config; any field may be overridden.
"""
from configs import gpt_char


def get_config(arg=None):
    config = gpt_char.get_config()
    config.data.corpus = "markov"
    config.data.markov_alphabet = 3
    config.data.markov_order = 3
    config.data.markov_seed = 0  # seeds the transition table (config.seed seeds the token streams)
    config.data.markov_concentration = 0.5  # Dirichlet concentration of each transition row

    config.model.update(num_layers=2, num_heads=2, embed_dim=64, context_length=64, dropout=0.0)
    config.optimizer.update(learning_rate=3e-3, min_learning_rate=1e-4, warmup_steps=50, weight_decay=0.0)
    config.train.update(num_steps=1200, batch_size=16, log_every=50, eval_every=100, checkpoint_every=1200,
                        keep_checkpoints=1)
    # Independent stationary windows; enough that the standard error of the validation loss
    # (about 0.17 nats / sqrt(num_windows) for windows of 64) is well below 2% of H.
    config.eval.update(num_windows=2048, batch_size=256)

    variants = {v for v in (arg or "").split(",") if v}
    unknown = sorted(variants - {"short", "quick", "tiny"})
    if unknown:
        raise ValueError(f"unknown markov_lm variant {unknown[0]!r}; expected short, quick or tiny "
                         f"(joined with commas, e.g. quick,short)")
    if "quick" in variants:  # applied first: `short` then shortens the quick model's context
        config.data.markov_order = 2  # H = 0.7011, H(X_t | previous 1) = 0.8155: learnt in fewer steps
        config.model.update(embed_dim=32, context_length=32)
        config.train.update(num_steps=600, batch_size=32)
        config.optimizer.warmup_steps = 20
        config.eval.update(num_windows=2048, batch_size=1024)
    if "short" in variants:
        config.model.context_length = config.data.markov_order - 1  # sees fewer symbols than the order
        config.train.batch_size = 512  # about as many tokens per step as the default (16 x 64)
        config.eval.update(num_windows=16384, batch_size=4096)
    if "tiny" in variants:
        config.model.update(num_layers=1, num_heads=1, embed_dim=16, context_length=8)
        config.train.update(num_steps=10, batch_size=8, log_every=5, eval_every=5, checkpoint_every=10,
                            steps_per_call=1)
        config.optimizer.update(warmup_steps=2)
        config.eval.update(num_windows=16, batch_size=8)
    return config
