"""Contrastive image-text losses over a batch of N matched pairs (image i goes with text i).

With unit embeddings u_i (images), v_j (texts) and logits L_ij = s u_i . v_j (s = exp(log_scale)):
  InfoNCE (CLIP, Radford et al. 2021), symmetric:
      loss = 1/2 [ mean_i -log softmax_j(L_ij)[i]  +  mean_j -log softmax_i(L_ij)[j] ]
  sigmoid (SigLIP, Zhai et al. 2023): every pair is a binary problem, z_ij = +1 on the diagonal
  and -1 off it,
      loss = -(1/N) sum_ij log sigmoid(z_ij (L_ij + b))
Both take the full N x N matrix. On a device mesh the batch is split over the data axes and the
step is compiled for the global batch, so XLA gathers the embeddings across devices to form it
(the test in tests/test_clip_mesh.py compares 8 simulated devices against one).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

LOSSES = ("softmax", "sigmoid")


def similarity_logits(image_emb, text_emb, log_scale):
    """[N, M] = exp(log_scale) * image_emb @ text_emb^T."""
    return jnp.exp(log_scale) * (image_emb @ text_emb.T)


def info_nce(image_emb, text_emb, log_scale, negative_emb=None):
    """Symmetric InfoNCE; returns (loss, logits [N, N]). negative_emb [M, D]: extra texts that match
    no image (hard negatives), in every image's softmax over texts, not in the texts' softmax over
    images (they have no image to pick)."""
    logits = similarity_logits(image_emb, text_emb, log_scale)
    n = logits.shape[0]
    diag = jnp.arange(n)
    image_logits = logits
    if negative_emb is not None:
        image_logits = jnp.concatenate([logits, similarity_logits(image_emb, negative_emb, log_scale)], axis=1)
    image_to_text = -jnp.mean(jax.nn.log_softmax(image_logits, axis=1)[diag, diag])
    text_to_image = -jnp.mean(jax.nn.log_softmax(logits, axis=0)[diag, diag])
    return 0.5 * (image_to_text + text_to_image), logits


def sigmoid_loss(image_emb, text_emb, log_scale, bias, negative_emb=None):
    """SigLIP's pairwise sigmoid loss (sum over all N^2 pairs, divided by N); returns (loss, logits).
    negative_emb [M, D]: extra texts, negative (z = -1) with every image."""
    logits = similarity_logits(image_emb, text_emb, log_scale)
    n = logits.shape[0]
    signs = 2.0 * jnp.eye(n) - 1.0
    total = jnp.sum(jax.nn.log_sigmoid(signs * (logits + bias)))
    if negative_emb is not None:
        total += jnp.sum(jax.nn.log_sigmoid(-(similarity_logits(image_emb, negative_emb, log_scale) + bias)))
    return -total / n, logits


def contrastive_loss(name: str, image_emb, text_emb, log_scale, bias, negative_emb=None):
    if name == "softmax":
        return info_nce(image_emb, text_emb, log_scale, negative_emb)
    if name == "sigmoid":
        return sigmoid_loss(image_emb, text_emb, log_scale, bias, negative_emb)
    raise ValueError(f"unknown contrastive loss {name!r}; expected one of {', '.join(LOSSES)}")


def own_negative_accuracy(image_emb, text_emb, negative_emb):
    """Fraction of images whose own text is more similar than each of its own negatives (rows
    k * N + i of negative_emb belong to image i)."""
    n, d = image_emb.shape
    own = jnp.sum(image_emb * text_emb, axis=-1)  # [N]
    negatives = jnp.sum(image_emb[None] * negative_emb.reshape(-1, n, d), axis=-1)  # [K, N]
    return jnp.mean(jnp.all(own[None] > negatives, axis=0))


def pair_accuracy(logits):
    """(image -> text, text -> image) top-1 accuracy within the batch."""
    diag = jnp.arange(logits.shape[0])
    return jnp.mean(jnp.argmax(logits, axis=1) == diag), jnp.mean(jnp.argmax(logits, axis=0) == diag)
