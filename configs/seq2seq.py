"""Encoder-decoder Transformer on generated sequence tasks, or a user's TSV.

Variants (`--config=configs/seq2seq.py:VARIANT`; several may be joined with commas):
  reverse (default)  reverse 1..16 letters; test: held-out sequences of length 8..16,
                     lengths 11 and 14 never seen in training
  sort               sort 1..16 letters; same test split
  add                "123+45=" -> "168" with 1..3-digit operands; test: held-out 3+3-digit pairs
  tsv                your own pairs: --config.data.path=pairs.tsv (source<TAB>target per line;
                     the last data.val_fraction of the lines are the test split)
  tiny               a 1+1-layer, 32-wide model and 30 steps (tests; combine, e.g. add,tiny)
"""
import ml_collections

from configs import common


def get_config(arg=None):
    config = common.base("seq2seq")

    config.data = ml_collections.ConfigDict()
    config.data.task = "reverse"  # reverse | sort | add | tsv
    config.data.path = ""  # tsv: a UTF-8 file of source<TAB>target lines
    config.data.val_fraction = 0.1  # tsv: the last lines held out as the test split
    config.data.alphabet = "abcdefghijklmnopqrstuvwxyz"  # reverse / sort symbols
    config.data.min_length = 1  # reverse / sort training lengths
    config.data.max_length = 16
    config.data.test_min_length = 8  # reverse / sort test lengths
    config.data.test_max_length = 16
    config.data.heldout_lengths = "11,14"  # reverse / sort lengths never trained on, only tested ("" = none)
    config.data.max_digits = 3  # add: operands of 1..max_digits digits
    config.data.test_digits = 3  # add: test pairs of test_digits + test_digits digits
    config.data.add_sampling = "digits"  # add: digits (digit count uniform) | numbers (uniform over numbers)
    config.data.test_fraction = 0.1  # share of all examples (by content hash) held out for testing

    config.model = ml_collections.ConfigDict()
    config.model.num_encoder_layers = 2
    config.model.num_decoder_layers = 2
    config.model.num_heads = 4
    config.model.embed_dim = 64
    config.model.mlp = "gelu"  # gelu | swiglu
    config.model.mlp_ratio = 4.0
    config.model.norm = "layernorm"  # layernorm | rmsnorm
    config.model.use_bias = True
    config.model.positions = "sinusoidal"  # sinusoidal | learned
    config.model.share_embeddings = False  # True: one table for source, target and output (the paper); False: three
    config.model.dropout = 0.0
    config.model.dtype = "float32"

    config.optimizer = common.optimizer()
    config.optimizer.min_learning_rate = 1e-5
    config.optimizer.beta2 = 0.98
    config.optimizer.eps = 1e-9
    config.optimizer.weight_decay = 0.01
    config.optimizer.grad_clip = 1.0

    config.train.num_steps = 2000
    config.train.log_every = 50

    config.eval.num_examples = 1000  # generated test examples (tsv: all test lines)
    config.eval.batch_size = 250

    for variant in (arg or "").split(","):
        apply_variant(config, variant)
    return config


def apply_variant(config, variant):
    if variant in ("", "reverse"):
        config.data.task = "reverse"
    elif variant == "sort":
        config.data.task = "sort"
    elif variant == "add":
        config.data.task = "add"
        config.train.update(num_steps=3000, batch_size=128)
    elif variant == "tsv":
        config.data.task = "tsv"
    elif variant == "tiny":
        config.model.update(num_encoder_layers=1, num_decoder_layers=1, num_heads=2, embed_dim=32)
        config.train.update(num_steps=30, batch_size=16, log_every=10, eval_every=15, checkpoint_every=15)
        config.optimizer.update(warmup_steps=5)
        config.eval.update(num_examples=32, batch_size=16)
        config.data.update(max_length=8, test_min_length=4, test_max_length=8, heldout_lengths="6", max_digits=2,
                           test_digits=2)
    else:
        raise ValueError(f"unknown seq2seq variant {variant!r}; expected reverse, sort, add, tsv or tiny "
                         f"(several may be joined with commas, e.g. add,tiny)")
