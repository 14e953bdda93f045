"""Character-level GPT language model.

Variants (`--config=configs/gpt_char.py:VARIANT`):
  (none)           4 layers x 128 wide on the embedded standard-library corpus.
  tiny             2 layers x 32 wide, 20 steps: compiles and runs in seconds (tests).
  shakespeare_cpu  the well-known CPU recipe for tiny Shakespeare (nanoGPT's
                   `train_shakespeare_char` shrunk for a laptop): 4 layers, 4 heads,
                   width 128, context 64, batch 12, 2000 AdamW steps, lr 1e-3 with 100
                   warm-up steps and cosine decay to 1e-4, betas 0.9/0.99, weight decay
                   0.1 on matrices, clip 1.0, dropout 0. Give the text with
                   --config.data.path=../shared/data/tinyshakespeare.txt. The batch of 12
                   runs as 3 unrolled micro-batches of 4: the same gradient, the whole
                   run 1.14x faster on 2 CPU cores (`train.unroll_micro_batches`).
  palm             PaLM's architecture switches on top of any of the above
                   (e.g. `:shakespeare_cpu,palm`).
  chat_base        the base LM of the chat stages (configs/chat.py): context 256 for
                   multi-turn conversations, 3000 steps on the standard-library corpus.
  speedrun         the fastest recipe we found to validation loss 1.88 on tiny Shakespeare
                   on a 2-core CPU (experiments/results/performance.md): stops there.
"""
import ml_collections

from configs import common


def get_config(arg=None):
    config = common.base("lm")

    config.data = ml_collections.ConfigDict()
    config.data.corpus = "stdlib"  # embedded default; ignored when data.path is set
    config.data.path = ""  # a UTF-8 text file: first (1 - val_fraction) trains, the rest validates
    config.data.tokenizer = "char"  # char | byte | bpe (byte-level BPE learnt on the training split)
    config.data.vocab_size = 0  # bpe only: the vocabulary's size (more than 256, one entry per byte)
    config.data.val_fraction = 0.1
    # A token dataset made by `python -m experiments.prepare_data` (read window by window, for
    # corpora larger than memory); it replaces corpus/path, and its tokenizer must be the config's.
    config.data.prepared = ""
    config.data.verify_shards = True  # check every shard's sha256 at start (reads the whole dataset once)

    config.model = ml_collections.ConfigDict()
    config.model.num_layers = 4
    config.model.num_heads = 4
    config.model.num_kv_heads = 0  # 0: as many as num_heads (multi-head); 1: multi-query; else grouped
    config.model.embed_dim = 128
    config.model.context_length = 64
    config.model.positions = "learned"  # learned | rope | none
    config.model.mlp = "gelu"  # gelu | swiglu (hidden width 2/3 * mlp_ratio * C, same parameter count)
    config.model.mlp_ratio = 4.0
    config.model.norm = "layernorm"  # layernorm | rmsnorm
    config.model.parallel_block = False  # PaLM: x + attn(norm(x)) + mlp(norm(x))
    config.model.use_bias = True
    config.model.tie_embeddings = True
    config.model.dropout = 0.0
    config.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    config.model.attention_impl = "einsum"  # einsum | xla | cudnn (jax.nn.dot_product_attention)
    config.model.remat = False  # recompute each block in the backward pass (jax.checkpoint)
    config.model.vocab_multiple = 1  # pad the embedding table and output projection to a multiple of this

    config.loss = ml_collections.ConfigDict()
    config.loss.z_loss = 0.0  # PaLM's auxiliary coef * (log Z)^2; PaLM used 1e-4

    config.optimizer = common.optimizer(beta2=0.99, weight_decay=0.1, grad_clip=1.0)

    config.train.num_steps = 2000
    config.train.batch_size = 12  # sequences per optimizer step, across all micro-batches
    config.train.grad_accum_steps = 1  # micro-batches per optimizer step (gradients averaged)
    # False: the micro-batches run one after another (a lax.scan; memory for one at a time). True:
    # as independent parts of the step, which XLA:CPU runs side by side on the cores.
    config.train.unroll_micro_batches = False
    config.train.steps_per_call = 10
    config.train.log_every = 50
    config.train.eval_every = 250
    config.train.keep_checkpoints = 3

    # Fixed validation windows, evenly spaced over the split; 0 = all non-overlapping windows.
    config.eval.num_windows = 1024
    config.eval.batch_size = 64

    for variant in (arg or "").split(","):
        apply_variant(config, variant)
    return config


def apply_variant(config, variant):
    if variant == "":
        return
    if variant == "tiny":
        config.model.update(num_layers=2, num_heads=2, embed_dim=32, context_length=16)
        config.train.update(num_steps=20, batch_size=4, log_every=5, eval_every=10, checkpoint_every=10,
                            steps_per_call=1)
        config.optimizer.update(warmup_steps=2)
        config.eval.update(num_windows=16, batch_size=8)
    elif variant == "shakespeare_cpu":
        config.eval.num_windows = 0  # all 1,742 windows of the validation split: exact, and cheap here
        # 3 micro-batches of 4 as independent parts of the step (the same mean gradient as one batch
        # of 12): XLA:CPU runs one chain of kernels at a time, and the parts give it three to run
        # side by side. Whole run 1.14x faster on the 2-core Intel machine, the same final loss
        # (experiments/results/performance.md).
        config.train.update(grad_accum_steps=3, unroll_micro_batches=True)
    elif variant == "speedrun":
        # Same data, split and evaluation (every validation window) as shakespeare_cpu. RoPE and
        # SwiGLU (the two largest gains in experiments/results/ablations.md) with RMSNorm and no
        # biases; Muon at 0.02 on the hidden matrices (AdamW at 3e-3 on the embeddings and norm
        # scales), 450 steps: 25 of warm-up, then cosine to a tenth; one evaluation, at the end
        # (each reads all 111k validation characters), and a stop there if it is <= 1.88.
        # Trials and seeds: performance.md.
        config.model.update(positions="rope", mlp="swiglu", norm="rmsnorm", use_bias=False)
        config.optimizer.update(name="muon", learning_rate=0.02, min_learning_rate=0.002, adam_learning_rate=3e-3,
                                warmup_steps=25)
        config.train.update(num_steps=450, eval_every=450, checkpoint_every=450, stop_at_eval_loss=1.88)
        config.eval.update(num_windows=0, at_start=False)
        # XLA's defaults: on the AMD machine 5% faster end to end than its dot emitter without
        # YNNPACK (--config.xla_flags=--xla_cpu_experimental_ynn_fusion_type=), which was 11-16%
        # faster per step on the Intel one; performance.md.
    elif variant == "chat_base":
        config.model.context_length = 256
        config.train.update(num_steps=3000, eval_every=500, checkpoint_every=500)
        config.eval.num_windows = 256
    elif variant == "palm":
        # PaLM's set (Chowdhery et al. 2022, section 2): RoPE, SwiGLU, multi-query attention,
        # parallel block, no biases in dense kernels or layer norms, shared embeddings, z-loss 1e-4.
        config.model.update(positions="rope", mlp="swiglu", num_kv_heads=1, parallel_block=True,
                            use_bias=False, tie_embeddings=True)
        config.loss.z_loss = 1e-4
    else:
        raise ValueError(f"unknown gpt_char variant {variant!r}; expected tiny, shakespeare_cpu, chat_base, speedrun or palm "
                         f"(several may be joined with commas, e.g. shakespeare_cpu,palm)")
