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
from . import channels
from .fusion import FusionConfig
from .mixture import FIT_SIZE, SPATIAL_BETA, fit_mixture, match_level_ids, posteriors, potts_mean_field

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

    # -- features ---------------------------------------------------------
    def _intensity(self, volume: np.ndarray) -> np.ndarray:
        v = channels.normalise(volume) if self.intensity == "raw" else channels.tv_denoise(volume)
        return v.reshape(-1)

    def features(self, volume: np.ndarray, embedding: np.ndarray | None) -> np.ndarray:
        """(N, C) features of every voxel with the dataset's transform."""
        x = (self._intensity(np.asarray(volume, np.float32)) - self.intensity_mean) / self.intensity_sd
        cols = [x[:, None].astype(np.float32)]
        if self.embedding_weight > 0:
            if embedding is None:
                raise UserError("this clustering uses the embedding; pass it")
            cols.append(self._embedding_block(np.asarray(embedding).reshape(-1, embedding.shape[-1])))
        return np.concatenate(cols, axis=1)

    def _embedding_block(self, flat: np.ndarray) -> np.ndarray:
        tangent = _tangent(flat, self.latent_dim)
        projected = (tangent - self.embedding_mean) @ self.embedding_axes
        return (self.embedding_weight * projected / self.embedding_scale).astype(np.float32)

    # -- assignment -------------------------------------------------------
    def assign(self, volume: np.ndarray, embedding: np.ndarray | None, ks: Sequence[int] | None = None) -> dict[int, np.ndarray]:
        """Labels (1..k, ``volume.shape``) for each level, ids shared by every volume."""
        ks = sorted(self.levels) if ks is None else [int(k) for k in ks]
        missing = [k for k in ks if k not in self.levels]
        if missing:
            raise UserError(f"the clustering has levels {sorted(self.levels)}, not {missing}")
        shape = tuple(volume.shape)
        points = self.features(volume, embedding)
        dtype = np.uint8 if max(ks) <= 255 else np.uint16
        out = {}
        for k in ks:
            post = posteriors(_mixture(self.levels[k]), points)
            post = potts_mean_field(post.reshape(*shape, k), beta=self.beta)
            out[k] = (self.levels[k]["ids"][np.argmax(post, axis=-1)] + 1).astype(dtype)
        return out

    # -- file -------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from ..io.atomic import atomic_path  # noqa: PLC0415

        path = Path(path)
        header = {
            "format": CLUSTERS_FORMAT, "version": CLUSTERS_VERSION, "intensity": self.intensity,
            "intensity_mean": self.intensity_mean, "intensity_sd": self.intensity_sd,
            "latent_dim": self.latent_dim, "embedding_weight": self.embedding_weight,
            "embedding_scale": self.embedding_scale, "beta": self.beta, "levels": sorted(self.levels),
        }
        arrays = {"header": np.array(json.dumps(header)), "embedding_mean": self.embedding_mean,
                  "embedding_axes": self.embedding_axes}
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
                levels = {int(k): {n: data[f"k{k}_{n}"] for n in ("weights", "means", "covariances", "ids")}
                          for k in header["levels"]}
                return cls(
                    intensity=header["intensity"], intensity_mean=header["intensity_mean"],
                    intensity_sd=header["intensity_sd"], latent_dim=header["latent_dim"],
                    embedding_weight=header["embedding_weight"], embedding_mean=data["embedding_mean"],
                    embedding_axes=data["embedding_axes"], embedding_scale=header["embedding_scale"],
                    levels=levels, beta=header["beta"],
                )
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"cannot read the clusters file {path}: {exc}") from None


def _tangent(flat: np.ndarray, latent_dim: int | None) -> np.ndarray:
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
    volumes: Sequence[np.ndarray], embeddings: Sequence[np.ndarray | None], ks: Sequence[int], *,
    latent_dim: int | None, fusion: FusionConfig = FusionConfig(), seed: int = 0,
    sample_size: int = FIT_SIZE, beta: float = SPATIAL_BETA,
) -> DatasetClustering:
    """Fit the transform and one mixture per k on a seeded sample of at most ``sample_size`` voxels from all volumes.

    Each volume gives an equal share of the sample (a large volume does not
    drown a small one). ``fusion.intensity="auto"`` picks the channel whose
    4-component mixture is the more confident on the sample, as per volume.
    """
    from .mixture import mean_confidence  # noqa: PLC0415

    if not volumes or len(volumes) != len(embeddings):
        raise UserError("give one embedding (or None) per volume, and at least one volume")
    ks = sorted(int(k) for k in ks)
    share = max(1, sample_size // len(volumes))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    kinds = ["raw", "denoised"] if fusion.intensity == "auto" else [fusion.intensity]
    use_embedding = fusion.embedding_weight > 0
    samples_i = {kind: [] for kind in kinds}
    samples_e = []
    for volume, embedding in zip(volumes, embeddings):
        volume = np.asarray(volume, np.float32)
        n = volume.size
        idx = np.sort(rng.choice(n, min(share, n), replace=False))
        for kind in kinds:
            v = channels.normalise(volume) if kind == "raw" else channels.tv_denoise(volume)
            samples_i[kind].append(v.reshape(-1)[idx])
        if use_embedding:
            if embedding is None:
                raise UserError("fusion uses the embedding: pass one per volume")
            flat = np.asarray(embedding).reshape(-1, embedding.shape[-1])
            samples_e.append(_tangent(flat[idx], latent_dim))
    d = samples_e[0].shape[1] if use_embedding else 0
    mean = np.zeros(d, np.float32)
    axes = np.zeros((d, 0), np.float32)
    scale = 1.0
    block = np.zeros((sum(len(s) for s in samples_i[kinds[0]]), 0), np.float32)
    if use_embedding:
        tangent = np.concatenate(samples_e)
        mean = tangent.mean(axis=0)
        cov = np.cov(tangent - mean, rowvar=False).reshape(d, d)
        eigval, eigvec = np.linalg.eigh(cov)
        order = np.argsort(eigval)[::-1][: min(fusion.embedding_components, d)]
        total = float(eigval.clip(min=0).sum())
        axes, scale = eigvec[:, order].astype(np.float32), float(np.sqrt(total if total > 0 else 1.0))
        block = (fusion.embedding_weight * ((tangent - mean) @ axes) / scale).astype(np.float32)
    best = None
    for kind in kinds:
        x = np.concatenate(samples_i[kind])
        mu, sd = float(x.mean()), float(x.std()) or 1.0
        feats = np.concatenate([((x - mu) / sd)[:, None].astype(np.float32), block], axis=1)
        score = mean_confidence(feats, min(4, ks[-1]), seed=seed) if len(kinds) > 1 else 0.0
        if best is None or score > best[0]:
            best = (score, kind, mu, sd, feats)
    _, kind, mu, sd, feats = best
    levels = {}
    previous = None
    for k in ks:
        mixture = fit_mixture(feats, k, seed=seed, fit_size=len(feats))
        labels = mixture.predict(feats)
        ids = match_level_ids(labels, previous, k)
        levels[k] = {"weights": mixture.weights_, "means": mixture.means_, "covariances": mixture.covariances_,
                     "ids": ids}
        previous = ids[labels]
    return DatasetClustering(
        intensity=kind, intensity_mean=mu, intensity_sd=sd, latent_dim=latent_dim,
        embedding_weight=float(fusion.embedding_weight) if use_embedding else 0.0,
        embedding_mean=mean.astype(np.float32), embedding_axes=axes, embedding_scale=scale, levels=levels, beta=beta,
    )
