"""Per-voxel features the default clustering sees: the hyperbolic embedding fused with intensity.

Two kinds of channel, each carrying what the other lacks:

* **the embedding** (tangent coordinates log₀(z) of the ball, whitened by
  PCA) encodes the voxel's context — what the 17³ window around it is part
  of. Alone it collapses onto "how much of the window lies inside an object"
  and k-means cuts that into shells (issue 11).
* **one intensity channel** encodes what is *at* the voxel: the normalised
  intensity, or its TV-denoised version with the weight set to the volume's
  estimated noise σ. Which of the two is chosen per volume (``"auto"``) by
  the mixture's mean assignment confidence, an unsupervised criterion: on a
  clean volume (the MRI template) denoising merges thin CSF into grey matter
  and the mixture becomes less confident; on a noisy one (tomograms, the
  phantoms) the denoised channel separates the classes far better.

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
from .mixture import mean_confidence


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def intensity_channel(volume: np.ndarray, kind: str) -> np.ndarray:
    """(N,) standardised intensity channel: "raw" (normalised) or "denoised" (adaptive TV)."""
    if kind == "raw":
        v = channels.normalise(volume)
    elif kind == "denoised":
        v = channels.adaptive_tv(volume)
    else:
        raise UserError(f"intensity channel must be 'raw' or 'denoised', got {kind!r}")
    return _standardise(v.reshape(-1).astype(np.float32))


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
    volume: np.ndarray, embedding: np.ndarray | None, *, latent_dim: int | None,
    config: FusionConfig = FusionConfig(), reference_k: int = 4, seed: int = 0,
) -> tuple[np.ndarray, str]:
    """(N, C) features for the mixture, and the intensity channel used ("raw" or "denoised").

    ``embedding`` is ``volume.shape + (d,)`` (or None / weight 0: intensity
    only); ``latent_dim`` as in :func:`embedding_channels`. With ``intensity="auto"`` both channels are tried with a
    ``reference_k`` mixture on the full feature set and the more confident wins.
    """
    shape = tuple(volume.shape)
    blocks = []
    if embedding is not None and tuple(embedding.shape[:-1]) != shape:
        raise UserError(f"embedding shape {tuple(embedding.shape)} does not match the volume {shape}")
    if embedding is not None and config.embedding_weight > 0:
        blocks.append(config.embedding_weight * embedding_channels(
            embedding, latent_dim=latent_dim, components=config.embedding_components))
    candidates = ["raw", "denoised"] if config.intensity == "auto" else [config.intensity]
    best = None
    for kind in candidates:
        x = np.concatenate([intensity_channel(volume, kind)[:, None], *blocks], axis=1)
        if len(candidates) == 1:
            return x, kind
        score = mean_confidence(x, reference_k, seed=seed)
        if best is None or score > best[0]:
            best = (score, x, kind)
    return best[1], best[2]
