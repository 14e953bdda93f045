"""A CLIP-style contrastive image-text model (aigc_jax/families/clip/), small.

Variants (`--config=configs/clip.py:VARIANT`, several joined by commas):
  shapes  (default) the procedural shapes world with captions (20,000 training scenes, 1-3
          objects, 4 (shape, colour) pairs held out), captions paraphrased half of the time;
          evaluated by retrieval on seen and held-out pairs and zero-shot per factor.
  vit     the ViT image encoder instead of the CNN.
  plain   no hard negatives: CLIP's loss over the batch's own captions only.
  sigmoid SigLIP's pairwise sigmoid loss instead of the softmax (InfoNCE) loss.
  digits  scikit-learn's 8x8 digits with class captions (zero-shot by unseen prompt wordings).
  mnist   MNIST from ../shared/data/mnist (IDX), 28x28, class captions.
  supervised  the same image encoder trained on the shapes world's labels (task clip_supervised):
          the linear probes' baseline (python -m experiments.clip --workdirs=... --probe).
  tiny    a few steps of a very small model (tests).
Your own pairs: --config.data.pairs_path=captions.tsv (image<TAB>caption per line, or .jsonl), with
--config.loss.hard_negatives=0 (the hard negatives are shape-swapped shapes-world captions).

Recipe: the CNN encoder with two 3x3 convolutions per resolution; AdamW (lr 1e-3, warm-up 100
steps, cosine to 1e-4 over 1,500 steps, weight decay 0.05 on matrices), batch 128 pairs (CLIP:
32,768) plus one shape-swapped caption per image as a hard negative (NegCLIP, Yuksekgonul et al.
2023: a batch's captions differ mostly in colour, so plain InfoNCE gives shape little gradient;
the effect at equal budget is not measured yet, see experiments/results/multimodal.md),
temperature initialised to 0.07 and learned (scale clamped at 100); SigLIP: scale 10 and bias
-10 at the start (Zhai et al. 2023). The ViT (:vit) learns shape slowly here: trained on the
labels for 1,500 steps it reads the main object's shape at 41%, this CNN at 99% (one
convolution per resolution: 71%).
"""
import ml_collections

from configs import common

MNIST_IMAGES = "../shared/data/mnist/t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "../shared/data/mnist/t10k-labels-idx1-ubyte.gz"


def vit(config):
    config.model.image_encoder = "vit"


def plain(config):
    config.loss.hard_negatives = 0


def sigmoid(config):
    config.loss.name = "sigmoid"


def digits(config):
    plain(config)
    config.data.update(dataset="digits", image_size=0)
    config.model.update(patch_size=2)
    config.eval.update(retrieval_pairs=300)


def mnist(config):
    plain(config)
    config.data.update(dataset="digits", path=MNIST_IMAGES, labels_path=MNIST_LABELS, image_size=0)
    config.model.update(patch_size=4)


def supervised(config):
    config.task = "clip_supervised"


def tiny(config):
    config.data.update(num_train=256, image_size=16)
    config.model.update(embed_dim=16, width=16, vision_depth=1, text_depth=1, num_heads=2, cnn_widths=(8, 16),
                        cnn_convs_per_stage=1)  # the residual convolutions: test_clip's encoder test
    config.train.update(num_steps=6, batch_size=16, log_every=3, eval_every=3, checkpoint_every=3)
    config.optimizer.update(warmup_steps=2)
    config.eval.update(batch_size=32, retrieval_pairs=64, zero_shot_images=64)


def get_config(arg=None):
    config = common.base("clip")

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "shapes"  # shapes | digits; ignored when data.path or data.pairs_path is set
    config.data.path = ""  # IDX (MNIST format) or NPZ images with class labels: digit-style captions
    config.data.labels_path = ""
    config.data.pairs_path = ""  # your image-caption pairs: TSV or JSONL (see aigc_jax/families/clip/data.py)
    config.data.channels = 3  # of your own pairs' images (1: grey)
    config.data.test_fraction = 0.2
    config.data.image_size = 32  # shapes world render size; others are resized to it (0: native)
    config.data.num_train = 20000
    config.data.min_objects = 1
    config.data.max_objects = 3
    config.data.paraphrase = 0.5  # probability that each paraphrasable word of a caption is reworded

    config.model = ml_collections.ConfigDict()
    config.model.image_encoder = "cnn"  # cnn | vit
    config.model.embed_dim = 64
    config.model.width = 64
    config.model.vision_depth = 3
    config.model.text_depth = 2
    config.model.num_heads = 4
    config.model.patch_size = 4
    config.model.cnn_widths = (32, 64, 128)
    config.model.cnn_convs_per_stage = 2  # 3x3 convolutions per resolution (the extra ones residual)
    config.model.text_causal = True
    config.model.max_text_length = 32  # the longest shapes caption, paraphrased, is 31 tokens with BOS and EOS

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "softmax"  # softmax (CLIP's InfoNCE) | sigmoid (SigLIP)
    config.loss.hard_negatives = 1  # shape-swapped captions per image as extra negatives (0-3; shapes world only)

    config.optimizer = common.optimizer(learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100,
                                        weight_decay=0.05)
    config.train.num_steps = 1500
    config.train.batch_size = 128
    config.train.eval_every = 500
    config.train.checkpoint_every = 500

    config.eval.batch_size = 100
    config.eval.retrieval_pairs = 1000  # per retrieval set
    config.eval.zero_shot_images = 1000  # per zero-shot set

    common.apply_variants(config, arg, {"shapes": lambda c: None, "vit": vit, "plain": plain, "sigmoid": sigmoid, "digits": digits,
                                        "mnist": mnist, "supervised": supervised, "tiny": tiny}, "clip")
    return config
