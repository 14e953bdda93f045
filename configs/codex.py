"""A small code model in Codex's recipe (Chen et al. 2021): a GPT pretrained on Python source, then
fine-tuned on functions with their docstrings (section 3, "Codex-S"-like supervision from the
corpus itself and from generated problems), judged by running its completions (experiments/codegen.py).

Variants (`--config=configs/codex.py:VARIANT`):
  pretrain   the standard library's top-level sources (data.corpus=stdlib) with a 2,048-entry
             byte-level BPE; 4 layers x 128 wide, context 192, 2,000 AdamW steps of 16 windows
             (sized for a 2-core CPU: about 0.15 s a step)
  finetune   from a pretrain run (--config.train.init_from=ITS_WORKDIR, whose tokenizer it keeps):
             documented functions of the standard library plus generated problems with their
             solutions (data.corpus=code_finetune), 1,500 steps at a lower rate
  tiny       seconds, for tests (alone: pretraining; tiny,finetune fine-tunes on 200 generated problems alone)
"""
from configs import gpt_char


def get_config(arg=None):
    variants = [v for v in (arg or "").split(",") if v]
    unknown = [v for v in variants if v not in ("pretrain", "finetune", "tiny")]
    if unknown or not variants or ("pretrain" in variants and "finetune" in variants):
        raise ValueError(f"codex variants: pretrain or finetune, optionally with tiny; got {arg!r}")
    if "finetune" not in variants:
        variants.append("pretrain")  # `:tiny` alone is the pretraining stage
    config = gpt_char.get_config()
    config.data.update(corpus="stdlib", tokenizer="bpe", vocab_size=2048)
    config.model.update(num_layers=4, num_heads=4, embed_dim=128, context_length=192, dropout=0.0)
    config.optimizer.update(learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100, beta2=0.95)
    config.train.update(num_steps=2000, batch_size=16, steps_per_call=10, log_every=100, eval_every=500,
                        checkpoint_every=500, keep_checkpoints=2)
    config.eval.update(num_windows=256, batch_size=32)
    config.data.code_train_problems = 4000  # generated problems in the fine-tuning corpus (a tenth as many validate)
    if "finetune" in variants:
        config.data.corpus = "code_finetune"
        config.optimizer.update(learning_rate=3e-4, min_learning_rate=3e-5, warmup_steps=50)
        config.train.update(num_steps=1500, eval_every=500, checkpoint_every=500)
    if "tiny" in variants:
        config.data.update(vocab_size=300, code_train_problems=200)
        if "finetune" in variants:
            config.data.corpus = "code_problems"  # the standard library's functions take a while to tokenize
        config.model.update(num_layers=2, num_heads=2, embed_dim=32, context_length=64)
        config.optimizer.update(warmup_steps=2)
        config.train.update(num_steps=20, batch_size=4, steps_per_call=1, log_every=5, eval_every=10,
                            checkpoint_every=10)
        config.eval.update(num_windows=16, batch_size=8)
    return config
