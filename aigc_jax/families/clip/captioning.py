"""Captions for any image file from a trained captioner run (experiments/caption.py is the command):
the image resized to the run's input size, then beam search or sampling with the shared decoders."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.data import captions as caption_lib
from aigc_jax.families.clip import captioner_decoding
from aigc_jax.families.clip import data as clip_data
from aigc_jax.families.clip.captioner_model import from_config
from aigc_jax.train.restore import restore_params


def load(workdir: str):
    """(model, params, vocabulary, input shape) of a captioner run."""
    restored = restore_params(workdir, task="caption")
    vocab = caption_lib.load_vocab(workdir)
    return from_config(restored.config.model, vocab.size), restored.params, vocab, clip_data.load_input_shape(workdir)


def caption_image(workdir: str, image_path: str, *, beam: int = 4, length_penalty: float = 0.0,
                  temperature: float = 0.0, samples: int = 1, top_p: float = 1.0, top_k: int = 0,
                  seed: int = 0) -> list:
    """[(log-probability, caption)], best first for beam search, in draw order when sampling."""
    model, params, vocab, (size, _, channels) = load(workdir)
    image = jnp.asarray(clip_data.to_model_range(clip_data.read_image(image_path, size, channels))[None])
    if temperature > 0:
        settings = captioner_decoding.sampling_settings(model, temperature, top_k, top_p)
        keys = jax.random.split(jax.random.key(seed), samples)
        tokens, lengths, logprobs = captioner_decoding.sample(params, jnp.repeat(image, samples, axis=0), keys,
                                                              model=model, settings=settings)
        return [(float(np.sum(np.asarray(lp))), vocab.decode(row)) for row, lp in zip(np.asarray(tokens), logprobs)]
    if beam < 1:
        raise ValueError(f"--beam must be at least 1, got {beam}")
    tokens, _, logprobs = captioner_decoding.beam_search(params, image, model=model, beam_width=beam,
                                                         length_penalty_alpha=length_penalty)
    return [(float(lp), vocab.decode(row)) for row, lp in zip(np.asarray(tokens[0]), np.asarray(logprobs[0]))]


def grounding(workdir: str, batch_size: int = 100) -> dict:
    """{test set name: caption_grounding table} of a captioner run on its own test pairs (the
    seen and, on the shapes world, the held-out sets), from the newest checkpoint."""
    from aigc_jax.config import load_saved_config
    from aigc_jax.families.clip import caption_grounding
    model, params, vocab, _ = load(workdir)
    config = load_saved_config(workdir)
    length = config.model.max_text_length
    logits_of = jax.jit(lambda images, inputs: model.apply({"params": params}, images, inputs))
    return {pairs.name: caption_grounding.grounding_table(
                logits_of, vocab, clip_data.fixed_batches(pairs, vocab, length, batch_size))
            for pairs in clip_data.load_caption_data(config).retrieval_sets}
