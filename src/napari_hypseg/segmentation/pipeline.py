"""Volume → embedding → hierarchy of labels: the one segmentation path used by CLI and widgets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import hyperbolic as hyp
from ..model.vae import HyperbolicVAE
from .._errors import UserError
from .binning import bin_volume, binned_shape, check_binning, upsample_labels
from .embed import embed
from .hierarchy import Hierarchy, build_hierarchy

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
    mode: str = "nested",
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
    """
    shape = tuple(volume.shape)
    check_binning(shape, binning, min_size=model.patch_size if embedding is None and binning != 1 else 1)
    if embedding is not None:
        _check_embedding_shape(embedding, binned_shape(shape, binning), model.config.latent_dim)
    if embedding is None:
        if binning > 1:
            volume = bin_volume(volume, binning)
        embedding = embed(
            volume, model, window=window, stride=stride, device=device,
            progress=(lambda done, total: progress("embed", done, total)) if progress else None,
            should_stop=should_stop,
        )
    points, metric = clustering_space(embedding, model)
    hierarchy = build_hierarchy(
        points, k_min=k_min, k_max=k_max, mode=mode, metric=metric, seed=seed,
        device=None if str(device) == "auto" else device,
        progress=(lambda done, total: progress("cluster", done, total)) if progress else None,
    )
    return Segmentation(embedding=embedding, hierarchy=hierarchy, binning=binning, shape=shape)


def _check_embedding_shape(embedding, grid, d: int) -> None:
    shape = tuple(np.shape(embedding))
    if shape[:-1] != tuple(grid) or len(shape) != 4 or shape[-1] % d:
        raise UserError(
            f"the embedding has shape {shape} but this volume (binned grid {tuple(grid)}) and model "
            f"(latent dimension {d}) need ({', '.join(map(str, grid))}, {d}·n_windows)"
        )
