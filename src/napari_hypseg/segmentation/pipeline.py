"""Volume → embedding → hierarchy of labels: the one segmentation path used by CLI and widgets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import hyperbolic as hyp
from .._errors import UserError
from ..model.vae import HyperbolicVAE
from ..segment_config import SegmentConfig
from .binning import bin_volume, binned_shape, check_binning, upsample_labels
from .channels import Channel, fill_mask
from .compartments import Compartments, mixture_level
from .embed import embed
from .fusion import fused_features
from .hierarchy import Hierarchy, build_hierarchy
from .mixture import channel_settings, describe, mixture_levels

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
    #: intensity channel the mixture used (its kind and noise σ; None for k-means modes)
    intensity: Channel | None = None
    #: what a thin cluster of the mixture's k = 2 level encloses, a cluster of its own above it (None: no wall)
    compartments: Compartments | None = None
    #: level k -> the number of components of the wider fit behind it (the prior left its mixture level short)
    refitted: dict[int, int] = field(default_factory=dict)
    #: share of the voxels (on the clustered grid) in a constant fill left out of the mixture's fit (0: none)
    fill_fraction: float = 0.0
    #: level -> clusters holding voxels, counted once (the slider asks on every move)
    _occupied: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def clustering_summary(self) -> str:
        """How the levels were made, in one line (for the CLI and the widgets)."""
        if self.intensity is not None:
            summary = describe(self.intensity)
            if self.fill_fraction > 0:
                summary += f"; a constant fill ({100 * self.fill_fraction:.0f} % of the voxels) left out of the fit"
            return summary if self.compartments is None else f"{summary}; {self.compartments.describe()}"
        return f"{self.hierarchy.mode} Poincaré k-means on the embedding"

    def occupied(self, k: int) -> int:
        """How many of level ``k``'s clusters hold voxels: a mixture may leave a component empty.

        With a covariance shared by the components (noisy volumes) a component
        can sit between two others and win no voxel, and the spatial prior can
        absorb a small one. Such a level is refitted with up to
        :data:`.mixture.MAX_EXTRA_COMPONENTS` more components; when none of those
        fits holds k clusters either, the level keeps fewer and says so.
        """
        if k not in self._occupied:
            counts = np.bincount(self.hierarchy.labels(k).ravel(), minlength=k + 1)[1:]
            self._occupied[k] = int(np.count_nonzero(counts))
        return self._occupied[k]

    def refit_note(self, k: int) -> str | None:
        """One sentence for users when level ``k`` was made from a wider mixture fit (else None)."""
        wider = self.refitted.get(k)
        if wider is None:
            return None
        own = mixture_level(k, self.compartments is not None)
        return (
            f"its {own}-component mixture lost a cluster to the spatial prior, so it was refitted with "
            f"{wider} components and the smallest dissolved"
        )

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
    config: SegmentConfig | None = None,
    *,
    progress: StageProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
    **settings: Any,
) -> Segmentation:
    """Embed every voxel and precompute labels for every level of ``config`` (k = k_min … k_max).

    ``settings`` replace fields of ``config`` (default :class:`SegmentConfig`),
    e.g. ``segment(volume, model, k_max=4, device="cpu")``. ``binning``
    mean-pools the volume by that factor first (streaming from a memory map),
    for tomograms too large to embed at full resolution. The default mode,
    ``"mixture"``, clusters an intensity channel chosen from the volume's
    noise (:mod:`.fusion`; the embedding only when ``fusion.embedding_weight``
    > 0) with a Gaussian mixture and a Potts prior per level (:mod:`.mixture`).
    The two halves are :func:`embed_volume` and :func:`cluster_embedding`;
    this bins the volume once for both.
    """
    config = _with_settings(config, settings)
    shape = tuple(volume.shape)
    check_binning(shape, config.binning, min_size=model.patch_size if config.binning != 1 else 1)
    on_grid = bin_volume(volume, config.binning) if config.binning > 1 else volume
    embedding = _embed(on_grid, model, config, progress, should_stop)
    return _cluster(embedding, model, config, on_grid, shape, progress)


def embed_volume(
    volume: np.ndarray,
    model: HyperbolicVAE,
    config: SegmentConfig | None = None,
    *,
    progress: StageProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
    **settings: Any,
) -> np.ndarray:
    """The dense embedding :func:`segment` clusters, on the grid binned by ``config.binning``."""
    config = _with_settings(config, settings)
    check_binning(tuple(volume.shape), config.binning, min_size=model.patch_size if config.binning != 1 else 1)
    on_grid = bin_volume(volume, config.binning) if config.binning > 1 else volume
    return _embed(on_grid, model, config, progress, should_stop)


def cluster_embedding(
    embedding: np.ndarray,
    model: HyperbolicVAE,
    config: SegmentConfig | None = None,
    *,
    volume: np.ndarray | None = None,
    shape: tuple[int, ...] | None = None,
    progress: StageProgress | None = None,
    **settings: Any,
) -> Segmentation:
    """Every level of ``config`` from an embedding already computed (by :func:`embed_volume` or :func:`segment`).

    ``volume`` is the source voxels the embedding was computed from: the
    mixture mode fuses the embedding with their intensities, so it needs
    them; the k-means modes read the embedding alone. ``shape`` is the
    source grid, needed only without ``volume`` when ``config.binning > 1``
    (labels are upsampled to it); by default it is the volume's, else the
    embedding's own grid.
    """
    config = _with_settings(config, settings)
    if volume is None and config.mode == "mixture":
        raise UserError("the mixture clustering fuses the embedding with the intensities: pass the source volume too")
    if volume is not None:
        if shape is not None and tuple(shape) != tuple(volume.shape):
            raise UserError(f"shape {tuple(shape)} is not the volume's {tuple(volume.shape)}")
        shape = tuple(volume.shape)
    elif shape is None:
        if config.binning > 1:
            raise UserError("with binning > 1, pass the source volume or its shape: labels are upsampled to it")
        shape = tuple(np.shape(embedding)[:-1])
    shape = tuple(int(n) for n in shape)
    check_binning(shape, config.binning)
    _check_embedding_shape(embedding, binned_shape(shape, config.binning), model.config.latent_dim)
    on_grid = None
    if volume is not None and config.mode == "mixture":
        on_grid = bin_volume(volume, config.binning) if config.binning > 1 else volume
    return _cluster(embedding, model, config, on_grid, shape, progress)


def _with_settings(config: SegmentConfig | None, settings: dict[str, Any]) -> SegmentConfig:
    config = SegmentConfig() if config is None else config
    return config.with_(**settings) if settings else config


def _embed(on_grid, model, config: SegmentConfig, progress, should_stop) -> np.ndarray:
    return embed(
        on_grid,
        model,
        window=config.window,
        stride=config.stride,
        device=config.device,
        progress=(lambda done, total: progress("embed", done, total)) if progress else None,
        should_stop=should_stop,
    )


def _cluster(embedding, model, config: SegmentConfig, on_grid, shape, progress) -> Segmentation:
    """Levels of ``embedding`` (on the binned grid); ``on_grid`` is the volume on that grid (mixture only)."""
    if config.mode == "mixture":
        return _segment_mixture(on_grid, embedding, model, config, shape=shape, progress=progress)
    points, metric = clustering_space(embedding, model)
    hierarchy = build_hierarchy(
        points,
        k_min=config.k_min,
        k_max=config.k_max,
        mode=config.mode,
        metric=metric,
        seed=config.seed,
        device=None if config.device == "auto" else config.device,
        progress=(lambda done, total: progress("cluster", done, total)) if progress else None,
    )
    return Segmentation(embedding=embedding, hierarchy=hierarchy, binning=config.binning, shape=shape)


def _segment_mixture(volume, embedding, model, config: SegmentConfig, *, shape, progress) -> Segmentation:
    grid = tuple(embedding.shape[:-1])
    if tuple(volume.shape) != grid:
        raise UserError(f"the embedding covers {grid} voxels but the volume has {tuple(volume.shape)}")
    latent_dim = model.config.latent_dim if model.config.hyperbolic else None
    if progress:
        progress("features", 0, 1)
    volume = np.asarray(volume, dtype=np.float32)
    features, intensity = fused_features(volume, embedding, latent_dim=latent_dim, config=config.fusion)
    if progress:
        progress("features", 1, 1)
    fill = fill_mask(volume)
    levels = mixture_levels(
        features,
        grid,
        config.levels,
        seed=config.seed,
        compartments=config.compartments,
        fill=fill,
        **channel_settings(intensity),
        progress=(lambda done, total: progress("cluster", done, total)) if progress else None,
    )
    hierarchy = Hierarchy(
        mode="mixture",
        metric="mixture",
        shape=grid,
        centroids={k: np.zeros((k, 0), np.float32) for k in levels},
        flat_labels=levels,
    )
    return Segmentation(
        embedding=embedding,
        hierarchy=hierarchy,
        binning=config.binning,
        shape=shape,
        intensity=intensity,
        compartments=levels.compartments,
        refitted=levels.refitted,
        fill_fraction=0.0 if fill is None else float(fill.mean()),
    )


def _check_embedding_shape(embedding, grid, d: int) -> None:
    shape = tuple(np.shape(embedding))
    if shape[:-1] != tuple(grid) or len(shape) != 4 or shape[-1] % d:
        raise UserError(
            f"the embedding has shape {shape} but this volume (binned grid {tuple(grid)}) and model "
            f"(latent dimension {d}) need ({', '.join(map(str, grid))}, {d}·n_windows)"
        )
