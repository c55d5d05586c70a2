"""One clustering for a whole dataset: fitted once on a bounded sample, applied to every volume.

:func:`.pipeline.segment` fits its mixture per volume, so id 3 in one
tomogram has nothing to do with id 3 in the next. Here the fusion transform
(which intensity channel, its standardisation, the PCA of the tangent
embedding) and one Gaussian mixture per level are fitted on voxels sampled
from every volume (seeded, at most ``sample_size`` in all), stored in a small
``.npz`` (arrays only, loaded with ``allow_pickle=False``: a clusters file
from elsewhere cannot run code) and then every volume is scored with them,
so the same id is the same cluster everywhere.

The intensity channel is still normalised per volume (its 1st..99th
percentiles, :func:`.channels.normalise`) so a global offset between
acquisitions does not move every voxel to another cluster; the
standardisation after it is the dataset's.

Those two percentiles are found exactly without sorting, by a two-pass radix
selection on the float32 bit patterns (:func:`high_histogram`,
:func:`low_histogram`, :func:`bounds_from_histograms`): each pass is a sum of
per-block histograms, so a volume larger than memory gets the same bounds
block by block (:func:`.dataset.intensity_bounds`) as in one piece
(:func:`intensity_bounds`). With the bounds given, a voxel's features are
pointwise and the Potts prior reaches :data:`.mixture.SPATIAL_ITERATIONS`
voxels, so :meth:`DatasetClustering.assign` of a block with that halo gives
the whole-volume labels of its core (:func:`.dataset.segment_blockwise`).
The TV-denoised channel runs a fixed number of Chambolle iterations
(:data:`.channels.TV_ITERATIONS`), so a block with :data:`.channels.TV_HALO`
more voxels of context is denoised as in the whole volume, to float rounding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import hyperbolic as hyp
from .._errors import UserError
from . import channels, fit_sample
from .fusion import FusionConfig
from .mixture import (
    FIT_SIZE,
    SPATIAL_BETA,
    SPATIAL_ITERATIONS,
    component_covariances,
    covariance_type,
    fit_mixture,
    match_level_ids,
    posteriors,
    potts_mean_field,
    spatial_beta,
)

CLUSTERS_FORMAT = "napari-hypseg-clusters"
CLUSTERS_VERSION = 1


@dataclass
class DatasetClustering:
    """Fusion transform + one mixture per level, shared by every volume of a dataset."""

    intensity: str  # "raw" or "denoised"
    intensity_mean: float
    intensity_sd: float
    latent_dim: int | None  # one ball's dimension; None: a Euclidean embedding
    embedding_weight: float
    embedding_mean: np.ndarray  # (d,) tangent mean
    embedding_axes: np.ndarray  # (d, c) principal axes kept
    embedding_scale: float  # sqrt of the total tangent variance
    # k -> dict(weights (k,), means (k, C), covariances (k, C, C), ids (k,) label id - 1 of each component)
    levels: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    beta: float = SPATIAL_BETA
    #: TV weight of the denoised channel (files written before it followed the noise: the fixed 0.1)
    tv_weight: float = channels.TV_WEIGHT

    @property
    def halo(self) -> int:
        """Voxels of context a block needs on every side: the reach of the Potts mean field, and of the TV filter."""
        potts = SPATIAL_ITERATIONS if self.beta > 0 else 0
        return potts + (channels.TV_HALO if self.intensity == "denoised" else 0)

    # -- features ---------------------------------------------------------
    def _intensity(self, volume: np.ndarray, bounds: tuple[float, float] | None) -> np.ndarray:
        bounds = intensity_bounds(volume) if bounds is None else bounds
        if self.intensity == "raw":
            return channels.normalise_between(volume, bounds).reshape(-1)
        return channels.tv_denoise(volume, self.tv_weight, bounds=bounds).reshape(-1)

    def features(
        self, volume: np.ndarray, embedding: np.ndarray | None, bounds: tuple[float, float] | None = None
    ) -> np.ndarray:
        """(N, C) features of every voxel with the dataset's transform.

        ``bounds`` (from :func:`intensity_bounds` of the whole volume) make
        the features of a block those of the same voxels in the whole volume.
        """
        x = (self._intensity(np.asarray(volume, np.float32), bounds) - self.intensity_mean) / self.intensity_sd
        cols = [x[:, None].astype(np.float32)]
        if self.embedding_weight > 0:
            if embedding is None:
                raise UserError("this clustering uses the embedding; pass it")
            cols.append(self._embedding_block(np.asarray(embedding).reshape(-1, embedding.shape[-1])))
        return np.concatenate(cols, axis=1)

    def _embedding_block(self, flat: np.ndarray) -> np.ndarray:
        tangent = tangent_coordinates(flat, self.latent_dim)
        projected = (tangent - self.embedding_mean) @ self.embedding_axes
        return (self.embedding_weight * projected / self.embedding_scale).astype(np.float32)

    # -- assignment -------------------------------------------------------
    def assign(
        self,
        volume: np.ndarray,
        embedding: np.ndarray | None,
        ks: Sequence[int] | None = None,
        *,
        bounds: tuple[float, float] | None = None,
        crop: tuple[slice, ...] | None = None,
    ) -> dict[int, np.ndarray]:
        """Labels (1..k, ``volume.shape``) for each level, ids shared by every volume.

        For a block of a larger volume: ``bounds`` are the whole volume's
        :func:`intensity_bounds`, the block carries :attr:`halo` voxels of
        context wherever it is not on the volume's face, and ``crop`` cuts
        that context off the labels returned.
        """
        ks = sorted(self.levels) if ks is None else [int(k) for k in ks]
        missing = [k for k in ks if k not in self.levels]
        if missing:
            raise UserError(f"the clustering has levels {sorted(self.levels)}, not {missing}")
        shape = tuple(volume.shape)
        crop = crop or (slice(None),) * len(shape)
        points = self.features(volume, embedding, bounds)
        dtype = label_dtype(ks)
        out = {}
        for k in ks:
            post = posteriors(_mixture(self.levels[k]), points)
            post = potts_mean_field(post.reshape(*shape, k), beta=self.beta)[crop]
            out[k] = (self.levels[k]["ids"][np.argmax(post, axis=-1)] + 1).astype(dtype)
        return out

    # -- file -------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from ..io.atomic import atomic_path  # noqa: PLC0415

        path = Path(path)
        header = {
            "format": CLUSTERS_FORMAT,
            "version": CLUSTERS_VERSION,
            "intensity": self.intensity,
            "intensity_mean": self.intensity_mean,
            "intensity_sd": self.intensity_sd,
            "latent_dim": self.latent_dim,
            "embedding_weight": self.embedding_weight,
            "embedding_scale": self.embedding_scale,
            "beta": self.beta,
            "tv_weight": self.tv_weight,
            "levels": sorted(self.levels),
        }
        arrays = {
            "header": np.array(json.dumps(header)),
            "embedding_mean": self.embedding_mean,
            "embedding_axes": self.embedding_axes,
        }
        for k, level in self.levels.items():
            for name, value in level.items():
                arrays[f"k{k}_{name}"] = value
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> DatasetClustering:
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if header.get("format") != CLUSTERS_FORMAT:
                    raise UserError(f"{path} is not a hypseg clusters file")
                levels = {
                    int(k): {n: data[f"k{k}_{n}"] for n in ("weights", "means", "covariances", "ids")}
                    for k in header["levels"]
                }
                return cls(
                    intensity=header["intensity"],
                    intensity_mean=header["intensity_mean"],
                    intensity_sd=header["intensity_sd"],
                    latent_dim=header["latent_dim"],
                    embedding_weight=header["embedding_weight"],
                    embedding_mean=data["embedding_mean"],
                    embedding_axes=data["embedding_axes"],
                    embedding_scale=header["embedding_scale"],
                    levels=levels,
                    beta=header["beta"],
                    tv_weight=header.get("tv_weight", channels.TV_WEIGHT),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"cannot read the clusters file {path}: {exc}") from None


def label_dtype(ks: Sequence[int]) -> type:
    return np.uint8 if max(ks) <= 255 else np.uint16


# -- exact percentiles, block by block ------------------------------------
# A float32's bit pattern, sign bit flipped for positive numbers and all bits
# flipped for negative ones, orders as the numbers do; its high 16 bits say
# which of 65536 bins a value is in, its low 16 bits where inside the bin.
_HALF_BITS = 16
_BINS = 1 << _HALF_BITS


def _sortable_keys(values: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(values, dtype=np.float32).reshape(-1).view(np.uint32)
    return np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))


def _key_value(key: int) -> np.float32:
    bits = (key & 0x7FFFFFFF) if key >> 31 else (~key & 0xFFFFFFFF)
    return np.array([bits], np.uint32).view(np.float32)[0]


def high_histogram(values: np.ndarray) -> np.ndarray:
    """(65536,) counts of the values by the high half of their sortable keys (first pass)."""
    return np.bincount(_sortable_keys(values) >> _HALF_BITS, minlength=_BINS).astype(np.int64)


def low_histogram(values: np.ndarray, prefixes: Sequence[int]) -> np.ndarray:
    """(len(prefixes), 65536) counts, inside each high-half bin named, of the low halves (second pass)."""
    keys = _sortable_keys(values)
    high = keys >> _HALF_BITS
    out = np.zeros((len(prefixes), _BINS), np.int64)
    for i, prefix in enumerate(prefixes):
        out[i] = np.bincount(keys[high == prefix] & (_BINS - 1), minlength=_BINS)
    return out


def bound_ranks(n: int) -> dict[int, tuple[int, float]]:
    """Per percentile of :data:`.channels.NORMALISE_PERCENTILES`: (rank below it, weight of the next), linear."""
    out = {}
    for q in channels.NORMALISE_PERCENTILES:
        position = q / 100 * (n - 1)
        below = int(np.floor(position))
        out[q] = (below, position - below)
    return out


def needed_ranks(n: int) -> list[int]:
    """The order statistics the bounds need: each percentile's two neighbours, the minimum and the maximum."""
    ranks = {0, n - 1}
    for below, _ in bound_ranks(n).values():
        ranks |= {below, min(below + 1, n - 1)}
    return sorted(ranks)


def locate_ranks(high: np.ndarray, ranks: Sequence[int]) -> dict[int, tuple[int, int]]:
    """rank -> (high-half bin holding it, its rank inside the bin)."""
    before = np.concatenate([[0], np.cumsum(high)])
    located = {}
    for r in ranks:
        b = int(np.searchsorted(before, r, side="right") - 1)
        located[r] = (b, int(r - before[b]))
    return located


def bounds_from_histograms(
    n: int, located: dict[int, tuple[int, int]], prefixes: Sequence[int], low: np.ndarray
) -> tuple[np.float32, np.float32]:
    """(lo, hi) that :func:`.channels.normalise` maps to 0 and 1, from the two passes' counts."""
    row = {p: i for i, p in enumerate(prefixes)}
    value = {}
    for r, (prefix, inside) in located.items():
        cum = np.cumsum(low[row[prefix]])
        value[r] = _key_value((prefix << _HALF_BITS) | int(np.searchsorted(cum, inside, side="right")))
    percentile = []
    for below, t in bound_ranks(n).values():
        a, b = float(value[below]), float(value[min(below + 1, n - 1)])
        percentile.append(np.float32(a + (b - a) * t))
    lo, hi = percentile
    if not hi > lo:
        lo, hi = value[0], value[n - 1]
    return np.float32(lo), np.float32(hi)


def intensity_bounds(volume: np.ndarray) -> tuple[np.float32, np.float32]:
    """The 1st and 99th percentiles of a volume in memory (:func:`.channels.normalise`'s range), exactly."""
    high = high_histogram(volume)
    n = int(high.sum())
    located = locate_ranks(high, needed_ranks(n))
    prefixes = sorted({p for p, _ in located.values()})
    return bounds_from_histograms(n, located, prefixes, low_histogram(volume, prefixes))


def tangent_coordinates(flat: np.ndarray, latent_dim: int | None) -> np.ndarray:
    flat = np.ascontiguousarray(flat, dtype=np.float32)
    if latent_dim is None:
        return flat
    factors = torch.from_numpy(flat.reshape(len(flat), -1, latent_dim))
    return hyp.logmap0(factors, dim=-1).numpy().reshape(flat.shape)


def _mixture(level: dict[str, np.ndarray]):
    """A scoring-only GaussianMixture rebuilt from stored weights, means and covariances."""
    from sklearn.mixture import GaussianMixture  # noqa: PLC0415
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky  # noqa: PLC0415

    k = len(level["weights"])
    g = GaussianMixture(n_components=k, covariance_type="full")
    g.weights_ = np.asarray(level["weights"], np.float64)
    g.means_ = np.asarray(level["means"], np.float64)
    g.covariances_ = np.asarray(level["covariances"], np.float64)
    g.precisions_cholesky_ = _compute_precision_cholesky(g.covariances_, "full")
    g.converged_ = True
    g.n_features_in_ = g.means_.shape[1]
    return g


def fit_dataset_clustering(
    volumes: Sequence[np.ndarray],
    embeddings: Sequence[np.ndarray | None],
    ks: Sequence[int],
    *,
    latent_dim: int | None,
    fusion: FusionConfig = FusionConfig(),
    seed: int = 0,
    sample_size: int = FIT_SIZE,
    beta: float | None = None,
) -> DatasetClustering:
    """Fit the transform and one mixture per k on a seeded sample of at most ``sample_size`` voxels (volumes in memory).

    Each volume gives an equal share of the sample (a large volume does not
    drown a small one), at the positions :mod:`.fit_sample` draws; a dataset
    of lazy volumes gets the same sample block by block
    (:func:`.dataset.fit_blockwise`). ``fusion.intensity="auto"`` reads the
    channel :func:`.channels.intensity_for_noise` picks for the volumes' median
    noise σ (estimated on the sample), so the whole dataset shares one (and
    its TV weight); ``beta`` None takes the Potts strength of that channel
    (:func:`.mixture.spatial_beta`).
    """
    if not volumes or len(volumes) != len(embeddings):
        raise UserError("give one embedding (or None) per volume, and at least one volume")
    volumes = [np.asarray(v, np.float32) for v in volumes]
    rng = fit_sample.sample_rng(seed)
    share = max(1, sample_size // len(volumes))
    bounds = [intensity_bounds(v) for v in volumes]
    positions = [fit_sample.sample_positions(v.shape, share, rng) for v in volumes]
    samples = [fit_sample.sample_in_memory(v, b, p) for v, b, p in zip(volumes, bounds, positions)]
    channel = fit_sample.channel_for(samples, fusion.intensity)
    if channel.kind == "raw":
        values = [s.raw for s in samples]
    else:
        values = [fit_sample.denoised_in_memory(v, b, p, channel) for v, b, p in zip(volumes, bounds, positions)]
    tangents = None
    if fusion.embedding_weight > 0:
        if any(e is None for e in embeddings):
            raise UserError("fusion uses the embedding: pass one per volume")
        tangents = [tangent_coordinates(np.asarray(e)[tuple(p.T)], latent_dim) for e, p in zip(embeddings, positions)]
    values, tangents = fit_sample.without_fill(samples, values, tangents)
    return fit_on_sample(values, tangents, ks, channel, latent_dim=latent_dim, fusion=fusion, seed=seed, beta=beta)


def fit_on_sample(
    values: Sequence[np.ndarray],
    tangents: Sequence[np.ndarray] | None,
    ks: Sequence[int],
    channel: channels.Channel,
    *,
    latent_dim: int | None,
    fusion: FusionConfig = FusionConfig(),
    seed: int = 0,
    beta: float | None = None,
) -> DatasetClustering:
    """The clustering of a drawn sample: per volume the channel's values at its sampled voxels and, when the
    embedding is fused, its tangent embedding there."""
    ks = sorted(int(k) for k in ks)
    beta = spatial_beta(channel) if beta is None else beta
    use_embedding = tangents is not None
    x = np.concatenate([np.asarray(v, np.float32).reshape(-1) for v in values])
    d = tangents[0].shape[1] if use_embedding else 0
    mean = np.zeros(d, np.float32)
    axes = np.zeros((d, 0), np.float32)
    scale = 1.0
    block = np.zeros((len(x), 0), np.float32)
    if use_embedding:
        tangent = np.concatenate(tangents)
        mean = tangent.mean(axis=0)
        cov = np.cov(tangent - mean, rowvar=False).reshape(d, d)
        eigval, eigvec = np.linalg.eigh(cov)
        order = np.argsort(eigval)[::-1][: min(fusion.embedding_components, d)]
        total = float(eigval.clip(min=0).sum())
        axes, scale = eigvec[:, order].astype(np.float32), float(np.sqrt(total if total > 0 else 1.0))
        block = (fusion.embedding_weight * ((tangent - mean) @ axes) / scale).astype(np.float32)
    mu, sd = float(x.mean()), float(x.std()) or 1.0
    feats = np.concatenate([((x - mu) / sd)[:, None].astype(np.float32), block], axis=1)
    levels = {}
    previous = None
    for k in ks:
        mixture = fit_mixture(feats, k, seed=seed, fit_size=len(feats), covariance=covariance_type(channel))
        labels = mixture.predict(feats)
        ids = match_level_ids(labels, previous, k)
        levels[k] = {
            "weights": mixture.weights_,
            "means": mixture.means_,
            # stored per component: a tied mixture scores exactly as a full one with equal covariances
            "covariances": component_covariances(mixture),
            "ids": ids,
        }
        previous = ids[labels]
    return DatasetClustering(
        intensity=channel.kind,
        intensity_mean=mu,
        intensity_sd=sd,
        latent_dim=latent_dim,
        embedding_weight=float(fusion.embedding_weight) if use_embedding else 0.0,
        embedding_mean=mean.astype(np.float32),
        embedding_axes=axes,
        embedding_scale=scale,
        levels=levels,
        beta=beta,
        tv_weight=channel.tv_weight,
    )
