"""Per-voxel features the default clustering sees: the hyperbolic embedding fused with intensity.

Two kinds of channel, each carrying what the other lacks:

* **the embedding** (tangent coordinates log₀(z) of the ball, whitened by
  PCA) encodes the voxel's context — what the 17³ window around it is part
  of. Alone it collapses onto "how much of the window lies inside an object"
  and k-means cuts that into shells (issue 11).
* **one intensity channel** encodes what is *at* the voxel: the normalised
  intensity, or its TV-denoised version at a weight proportional to the
  noise. ``"auto"`` chooses per volume from its estimated noise σ
  (:func:`.channels.choose_channel`): on a clean volume (the MRI template)
  denoising merges thin CSF into grey matter; on a noisy one (one MRI
  acquisition, tomograms, the phantoms) the denoised channel separates the
  classes far better. (Choosing by the mixture's confidence, tried first, picked wrongly
  on both real volumes: docs/method.md.)

Channels are standardised; the embedding block is scaled as a whole (its
directions keep their relative variance) by ``embedding_weight``.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import hyperbolic as hyp
from .._errors import UserError
from ..segment_config import FusionConfig
from . import channels


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def intensity_channel(volume: np.ndarray, channel: channels.Channel) -> np.ndarray:
    """(N,) standardised intensity channel: "raw" (normalised) or "denoised" (TV)."""
    return _standardise(channels.intensity(volume, channel).reshape(-1).astype(np.float32))


def embedding_channels(embedding: np.ndarray, *, latent_dim: int | None, components: int) -> np.ndarray:
    """(N, c) embedding block: tangent coordinates at the origin, PCA-whitened to unit total variance.

    ``latent_dim`` is the dimension of one ball (None: a Euclidean
    embedding, used as it is); an embedding of fused windows is a product of
    balls and each factor is mapped separately. Whitening would give a
    direction of pure noise the weight of the main one; instead the block is
    rotated onto its principal axes, truncated, and divided by the square
    root of its total variance.
    """
    d = embedding.shape[-1]
    flat = np.ascontiguousarray(embedding.reshape(-1, d), dtype=np.float32)
    if latent_dim is not None:
        factors = torch.from_numpy(flat.reshape(len(flat), -1, latent_dim))
        flat = hyp.logmap0(factors, dim=-1).numpy().reshape(len(flat), d)
    flat = flat - flat.mean(axis=0)
    rng = np.random.default_rng(0)
    sample = flat if len(flat) <= 200_000 else flat[rng.choice(len(flat), 200_000, replace=False)]
    cov = np.cov(sample, rowvar=False).reshape(d, d)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][: min(components, d)]
    total = float(eigval.clip(min=0).sum())
    projected = flat @ eigvec[:, order]
    return (projected / np.sqrt(total if total > 0 else 1.0)).astype(np.float32)


def fused_features(
    volume: np.ndarray,
    embedding: np.ndarray | None,
    *,
    latent_dim: int | None,
    config: FusionConfig = FusionConfig(),
) -> tuple[np.ndarray, channels.Channel]:
    """(N, C) features for the mixture, and the intensity channel used (its kind and noise σ).

    ``embedding`` is ``volume.shape + (d,)`` (or None / weight 0: intensity
    only); ``latent_dim`` as in :func:`embedding_channels`. ``intensity="auto"``
    takes :func:`.channels.choose_channel`'s choice.
    """
    shape = tuple(volume.shape)
    blocks = []
    if embedding is not None and tuple(embedding.shape[:-1]) != shape:
        raise UserError(f"embedding shape {tuple(embedding.shape)} does not match the volume {shape}")
    if embedding is not None and config.embedding_weight > 0:
        blocks.append(
            config.embedding_weight
            * embedding_channels(embedding, latent_dim=latent_dim, components=config.embedding_components)
        )
    channel = channels.choose_channel(volume, config.intensity)
    return np.concatenate([intensity_channel(volume, channel)[:, None], *blocks], axis=1), channel
