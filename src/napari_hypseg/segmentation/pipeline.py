"""Volume → embedding → hierarchy of labels: the one segmentation path used by CLI and widgets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import hyperbolic as hyp
from .._errors import UserError
from ..model.vae import HyperbolicVAE
from ..segment_modes import DEFAULT_MODE, MODES
from .binning import bin_volume, binned_shape, check_binning, upsample_labels
from .embed import embed
from .fusion import FusionConfig, fused_features
from .hierarchy import Hierarchy, build_hierarchy
from .mixture import SPATIAL_BETA, mixture_levels

StageProgress = Callable[[str, int, int], None]


@dataclass
class Segmentation:
    """Result of :func:`segment`: the dense embedding and every precomputed level.

    With ``binning > 1`` the embedding and hierarchy live on the binned grid;
    :meth:`labels` upsamples to the source grid unless ``full_resolution=False``
    (a napari layer can instead show the binned labels with ``scale`` × binning).
    """

    embedding: np.ndarray
    hierarchy: Hierarchy
    binning: int = 1
    shape: tuple[int, ...] | None = None
    #: intensity channel the mixture used ("raw" or "denoised"; None for k-means modes)
    intensity: str | None = None

    def labels(self, k: int, *, full_resolution: bool = True) -> np.ndarray:
        labels = self.hierarchy.labels(k)
        if full_resolution and self.binning > 1:
            return upsample_labels(labels, self.binning, self.shape)
        return labels


def clustering_space(embedding: np.ndarray, model: HyperbolicVAE) -> tuple[np.ndarray, str]:
    """Points and metric k-means should use for ``embedding``.

    A single-window embedding on the ball is clustered with the Poincaré
    distance. Fused windows form a product of balls; each factor is mapped to
    its tangent space at the origin and the concatenation is clustered with
    the Euclidean distance (log_0 preserves distances to the origin and
    directions, which is where the hierarchy lives).
    """
    d = model.config.latent_dim
    if not model.config.hyperbolic:
        return embedding, "euclidean"
    if embedding.shape[-1] == d:
        return embedding, "poincare"
    blocks = embedding.reshape(*embedding.shape[:-1], -1, d)
    tangent = hyp.logmap0(torch.from_numpy(np.ascontiguousarray(blocks)), dim=-1).numpy()
    return tangent.reshape(embedding.shape), "euclidean"


def segment(
    volume: np.ndarray,
    model: HyperbolicVAE,
    *,
    k_max: int = 16,
    k_min: int = 2,
    mode: str = DEFAULT_MODE,
    fusion: FusionConfig = FusionConfig(),
    spatial_beta: float = SPATIAL_BETA,
    window: int | Sequence[int] | None = None,
    stride: int = 1,
    device: str | torch.device = "auto",
    seed: int = 0,
    binning: int = 1,
    embedding: np.ndarray | None = None,
    progress: StageProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Segmentation:
    """Embed every voxel (unless ``embedding`` is given) and precompute labels for k = k_min … k_max.

    ``binning`` mean-pools the volume by that factor first (streaming from a
    memory map), for tomograms too large to embed at full resolution.
    ``mode="mixture"`` (the default) clusters the embedding fused with an
    intensity channel (:mod:`.fusion`) with a Gaussian mixture and a Potts
    prior of strength ``spatial_beta`` per level (:mod:`.mixture`); it needs
    the real voxels, so pass the volume even when ``embedding`` is given.
    """
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    shape = tuple(volume.shape)
    check_binning(shape, binning, min_size=model.patch_size if embedding is None and binning != 1 else 1)
    if embedding is not None:
        _check_embedding_shape(embedding, binned_shape(shape, binning), model.config.latent_dim)
    if binning > 1 and (embedding is None or mode == "mixture"):
        volume = bin_volume(volume, binning)
    if embedding is None:
        embedding = embed(
            volume, model, window=window, stride=stride, device=device,
            progress=(lambda done, total: progress("embed", done, total)) if progress else None,
            should_stop=should_stop,
        )
    if mode == "mixture":
        return _segment_mixture(volume, embedding, model, k_min=k_min, k_max=k_max, fusion=fusion,
                                spatial_beta=spatial_beta, seed=seed, binning=binning, shape=shape,
                                progress=progress)
    points, metric = clustering_space(embedding, model)
    hierarchy = build_hierarchy(
        points, k_min=k_min, k_max=k_max, mode=mode, metric=metric, seed=seed,
        device=None if str(device) == "auto" else device,
        progress=(lambda done, total: progress("cluster", done, total)) if progress else None,
    )
    return Segmentation(embedding=embedding, hierarchy=hierarchy, binning=binning, shape=shape)


def _segment_mixture(volume, embedding, model, *, k_min, k_max, fusion, spatial_beta, seed, binning, shape, progress):
    grid = tuple(embedding.shape[:-1])
    if tuple(volume.shape) != grid:
        raise UserError(f"the embedding covers {grid} voxels but the volume has {tuple(volume.shape)}")
    latent_dim = model.config.latent_dim if model.config.hyperbolic else None
    if progress:
        progress("features", 0, 1)
    features, intensity = fused_features(
        np.asarray(volume, dtype=np.float32), embedding, latent_dim=latent_dim, config=fusion,
        reference_k=min(4, k_max), seed=seed,
    )
    if progress:
        progress("features", 1, 1)
    levels = mixture_levels(
        features, grid, range(k_min, k_max + 1), seed=seed, beta=spatial_beta,
        progress=(lambda done, total: progress("cluster", done, total)) if progress else None,
    )
    hierarchy = Hierarchy(
        mode="mixture", metric="mixture", shape=grid,
        centroids={k: np.zeros((k, 0), np.float32) for k in levels}, flat_labels=levels,
    )
    return Segmentation(embedding=embedding, hierarchy=hierarchy, binning=binning, shape=shape, intensity=intensity)


def _check_embedding_shape(embedding, grid, d: int) -> None:
    shape = tuple(np.shape(embedding))
    if shape[:-1] != tuple(grid) or len(shape) != 4 or shape[-1] % d:
        raise UserError(
            f"the embedding has shape {shape} but this volume (binned grid {tuple(grid)}) and model "
            f"(latent dimension {d}) need ({', '.join(map(str, grid))}, {d}·n_windows)"
        )
