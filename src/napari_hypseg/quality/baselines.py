"""The simple baselines every change is judged against, measured in the same run.

k-means and a Gaussian mixture (scikit-learn; one covariance per component,
or one shared by all: the model our default uses on noisy volumes) on one
intensity channel — raw, Gaussian-smoothed (σ = 1, 2) or TV-denoised — and
k-means on the filter bank.
Both models are fitted on a reproducible voxel subsample and then assign every
voxel, so a 10⁶-voxel volume costs seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..segmentation import channels as F

#: voxels used to fit k-means / the mixture; all voxels are then assigned
FIT_SAMPLE = 200_000
#: mixture baselines and their scikit-learn covariance models
_COVARIANCE = {"gmm": "full", "gmm-tied": "tied"}


@dataclass(frozen=True)
class Baseline:
    name: str
    feature: Callable[[np.ndarray], np.ndarray]  # volume → (Z, Y, X) or (Z, Y, X, C)
    model: str  # "kmeans" or "gmm"


def _raw(v):
    return F.normalise(v)


def _g1(v):
    return F.gaussian(v, 1.0)


def _g2(v):
    return F.gaussian(v, 2.0)


_FEATURES = {"raw": _raw, "Gaussian σ=1": _g1, "Gaussian σ=2": _g2, "TV": F.tv_denoise}

BASELINES: tuple[Baseline, ...] = tuple(
    Baseline(f"{model_name} on {feat_name}", fn, model)
    for feat_name, fn in _FEATURES.items()
    for model, model_name in (("kmeans", "k-means"), ("gmm", "GMM"), ("gmm-tied", "GMM (shared covariance)"))
) + (Baseline("k-means on filter bank", F.filter_bank, "kmeans"),)


def fit_sample(n: int, seed: int, size: int = FIT_SAMPLE) -> np.ndarray | None:
    """Indices of a reproducible subsample (None: use every voxel)."""
    if n <= size:
        return None
    return np.random.default_rng(seed).choice(n, size=size, replace=False)


def cluster_features(points: np.ndarray, k: int, model: str, *, seed: int = 0) -> np.ndarray:
    """Cluster ids for ``points`` (N, C) with scikit-learn's KMeans or GaussianMixture."""
    from sklearn.cluster import KMeans  # noqa: PLC0415
    from sklearn.mixture import GaussianMixture  # noqa: PLC0415

    idx = fit_sample(len(points), seed)
    sample = points if idx is None else points[idx]
    if model == "kmeans":
        est = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(sample)
    elif model in _COVARIANCE:
        est = GaussianMixture(
            n_components=k, covariance_type=_COVARIANCE[model], n_init=2, reg_covar=1e-6, random_state=seed
        ).fit(sample)
    else:
        raise ValueError(f"model must be 'kmeans', {' or '.join(map(repr, _COVARIANCE))}, got {model!r}")
    return est.predict(points).astype(np.int32)


def run_baseline(baseline: Baseline, volume: np.ndarray, ks, *, seed: int = 0) -> dict[int, np.ndarray]:
    """Labels per k for one baseline on one volume (features computed once)."""
    feats = baseline.feature(volume)
    points = feats.reshape(-1, 1) if feats.ndim == 3 else F.standardise_columns(feats).reshape(-1, feats.shape[-1])
    return {k: cluster_features(points, k, baseline.model, seed=seed).reshape(volume.shape) for k in ks}
