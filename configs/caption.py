"""An image captioner (aigc_jax/families/clip/captioner_*.py): image encoder tokens, cross-attended
by a Transformer decoder, trained by maximum likelihood; greedy / beam / sampled captions.

Variants (`--config=configs/caption.py:VARIANT`, several joined by commas):
  shapes  (default) the shapes world with its canonical captions (so every caption parses back to
          factors); scored on seen and held-out (shape, colour) pairs.
  vit     the ViT image encoder instead of the CNN (two 3x3 convolutions per resolution; the
          contrastive model's encoder, configs/clip.py).
  tiny    a few steps of a very small model (tests).
CLIP score of the captions: --config.eval.clip_workdir=WORKDIR of a trained configs/clip.py run.
From a trained contrastive encoder, kept fixed (ClipCap's recipe; the one that reads shape, see
experiments/results/multimodal.md): --config.model.vision_from=WORKDIR --config.model.freeze_vision=True.
Your own pairs: --config.data.pairs_path=captions.tsv (image<TAB>caption per line, or .jsonl).
"""
import ml_collections

from configs import common


def vit(config):
    config.model.image_encoder = "vit"


def tiny(config):
    config.data.update(num_train=256, image_size=16)
    config.model.update(width=16, vision_depth=1, decoder_depth=1, num_heads=2, cnn_widths=(8, 16),
                        cnn_convs_per_stage=1)  # the residual convolutions: test_clip's encoder test
    config.train.update(num_steps=6, batch_size=16, log_every=3, eval_every=3, checkpoint_every=3)
    config.optimizer.update(warmup_steps=2)
    config.eval.update(batch_size=32, retrieval_pairs=64, zero_shot_images=64, caption_images=16, beam_width=2)


def get_config(arg=None):
    config = common.base("caption")

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "shapes"  # shapes | digits; ignored when data.path or data.pairs_path is set
    config.data.path = ""
    config.data.labels_path = ""
    config.data.pairs_path = ""  # your image-caption pairs: TSV or JSONL (aigc_jax/families/clip/data.py)
    config.data.channels = 3
    config.data.test_fraction = 0.2
    config.data.image_size = 32
    config.data.num_train = 20000
    config.data.min_objects = 1
    config.data.max_objects = 3
    config.data.paraphrase = 0.0  # canonical captions: generated ones must parse back to factors

    config.model = ml_collections.ConfigDict()
    config.model.image_encoder = "cnn"  # cnn | vit
    config.model.width = 64
    config.model.vision_depth = 3
    config.model.decoder_depth = 2
    config.model.num_heads = 4
    config.model.patch_size = 4
    config.model.cnn_widths = (32, 64, 128)
    config.model.cnn_convs_per_stage = 2  # 3x3 convolutions per resolution (the extra ones residual)
    config.model.max_text_length = 32  # BOS to EOS
    config.model.vision_from = ""  # a trained configs/clip.py run (or :supervised): its image encoder starts the captioner's
    config.model.freeze_vision = False  # train the decoder only (with vision_from: ClipCap's frozen encoder)
    config.model.global_image = True  # the pooled image vector added to every decoder input (captioner_model.py)

    config.optimizer = common.optimizer(learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100,
                                        weight_decay=0.05)
    config.train.num_steps = 1500
    config.train.batch_size = 64
    config.train.eval_every = 500
    config.train.checkpoint_every = 500

    config.eval.batch_size = 100
    config.eval.retrieval_pairs = 1000  # seen and held-out test pairs (the loss is on the seen ones)
    config.eval.zero_shot_images = 500  # single-object scenes per split, for per-factor accuracy
    config.eval.caption_images = 300  # images captioned per set at each evaluation (0: none)
    config.eval.beam_width = 4
    config.eval.clip_workdir = ""  # a trained configs/clip.py run: CLIP score of the captions

    common.apply_variants(config, arg, {"shapes": lambda c: None, "vit": vit, "tiny": tiny}, "caption")
    return config
