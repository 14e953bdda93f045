"""GPT-3's model sizes: Brown et al. 2020, "Language Models are Few-Shot Learners", Table 2.1
(sizes, architectures and learning hyper-parameters) and Appendix B (the schedule).

Variants (`--config=configs/gpt3.py:SIZE[,cpu]`), one size required:
  small (125M), medium (350M), large (760M), xl (1.3B), 2.7b, 6.7b, 13b, 175b
  cpu    the size shrunk to run on a laptop CPU: width, context and batch / 8, layers and
         heads / 4 (at least 2), a 4,096-entry BPE; 2,000 steps
  tiny   a few seconds, for tests

As in the paper: context 2,048 tokens, byte-level BPE with 50,257 entries (learnt here on the
training split: data.tokenizer=bpe; the embedding padded to 50,304 = 393 x 128 rows for speed), learned positions, pre-norm blocks with biases and a tied
output projection (GPT-2's architecture), Adam with betas 0.9/0.95 and eps 1e-8, weight decay
0.1, gradient clipping at 1.0, a linear warm-up over the first 375M tokens, cosine decay to 10%
of the peak rate over 260B tokens, 300B tokens in all; batch size in tokens and peak rate per
size from Table 2.1.

Departures, each for a stated reason:
  - Table 2.1 gives XL 24 heads of 128 for width 2,048, and 13B width 5,140 for 40 heads of 128:
    neither product is the width, and our attention splits the width into the heads. XL here has
    16 heads of 128 (width 2,048 kept), 13B width 5,120 (40 x 128; 0.4% fewer parameters).
  - The paper alternates dense and locally banded sparse attention layers; all layers here are
    dense. It ramps the batch size up over the first 4-12B tokens; here it is constant.
  - 175B's 3.2M-token batch is 1,536 sequences of 2,048 (3.1M tokens), the count that divides.
"""
from configs import gpt_char

# size: (nominal parameters, layers, width, heads, batch size in tokens, peak learning rate)
TABLE_2_1 = {
    "small": (125e6, 12, 768, 12, 0.5e6, 6.0e-4),
    "medium": (350e6, 24, 1024, 16, 0.5e6, 3.0e-4),
    "large": (760e6, 24, 1536, 16, 0.5e6, 2.5e-4),
    "xl": (1.3e9, 24, 2048, 16, 1e6, 2.0e-4),  # the paper: 24 heads of 128 (see above)
    "2.7b": (2.7e9, 32, 2560, 32, 1e6, 1.6e-4),
    "6.7b": (6.7e9, 32, 4096, 32, 2e6, 1.2e-4),
    "13b": (13.0e9, 40, 5120, 40, 2e6, 1.0e-4),  # the paper: width 5,140 (see above)
    "175b": (175.0e9, 96, 12288, 96, 3.2e6, 0.6e-4),
}
CONTEXT = 2048
VOCAB_SIZE = 50257
TOTAL_TOKENS, WARMUP_TOKENS, DECAY_TOKENS = 300e9, 375e6, 260e9
SEQUENCES_PER_BATCH = {0.5e6: 256, 1e6: 512, 2e6: 1024, 3.2e6: 1536}  # 2^19, 2^20, 2^21 tokens; 3.1M


def get_config(arg=None):
    variants = [v for v in (arg or "").split(",") if v]
    sizes = [v for v in variants if v in TABLE_2_1]
    unknown = [v for v in variants if v not in TABLE_2_1 and v not in ("cpu", "tiny")]
    if unknown or len(sizes) > 1 or (not sizes and "tiny" not in variants):
        raise ValueError(f"gpt3 variants: one size of {', '.join(TABLE_2_1)}, optionally with cpu "
                         f"(e.g. configs/gpt3.py:small,cpu) or tiny; got {arg!r}")
    _, layers, width, heads, batch_tokens, learning_rate = TABLE_2_1[sizes[0] if sizes else "small"]
    config = gpt_char.get_config()
    config.data.tokenizer = "bpe"
    config.data.vocab_size = VOCAB_SIZE
    config.model.update(num_layers=layers, num_heads=heads, embed_dim=width, context_length=CONTEXT,
                        positions="learned", mlp="gelu", mlp_ratio=4.0, norm="layernorm", use_bias=True,
                        tie_embeddings=True, dropout=0.0, vocab_multiple=128)
    sequences = SEQUENCES_PER_BATCH[batch_tokens]
    tokens_per_step = sequences * CONTEXT
    config.train.update(batch_size=sequences, num_steps=round(TOTAL_TOKENS / tokens_per_step), steps_per_call=1,
                        log_every=100, eval_every=1000, checkpoint_every=1000)
    config.optimizer.update(name="adamw", learning_rate=learning_rate, min_learning_rate=learning_rate / 10,
                            schedule="cosine", warmup_steps=round(WARMUP_TOKENS / tokens_per_step),
                            decay_steps=round(DECAY_TOKENS / tokens_per_step), beta1=0.9, beta2=0.95, eps=1e-8,
                            weight_decay=0.1, grad_clip=1.0)
    config.eval.update(num_windows=64, batch_size=8)
    if "cpu" in variants:
        config.model.update(num_layers=max(layers // 4, 2), num_heads=max(heads // 4, 2), embed_dim=width // 8,
                            context_length=CONTEXT // 8)
        config.data.vocab_size = 4096
        config.train.update(batch_size=max(sequences // 8, 8), num_steps=2000, steps_per_call=10, log_every=50,
                            eval_every=500, checkpoint_every=500)
        config.optimizer.update(warmup_steps=100, decay_steps=0)
        config.eval.update(num_windows=256, batch_size=32)
    if "tiny" in variants:
        config.model.update(num_layers=2, num_heads=2, embed_dim=32, context_length=16)
        config.data.vocab_size = 300
        config.train.update(num_steps=20, batch_size=4, log_every=5, eval_every=10, checkpoint_every=10,
                            steps_per_call=1)
        config.optimizer.update(warmup_steps=2, decay_steps=0)
        config.eval.update(num_windows=16, batch_size=8)
    return config
