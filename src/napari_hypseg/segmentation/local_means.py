"""Each class's local mean as the data term of a level's last pass: boundaries follow the neighbourhood.

A mixture describes a class by one mean for the whole volume. On a denoised channel the classes are
not that uniform: one nucleus is brighter than the next, a particle's shell carries more density on
one side, a tissue drifts with the coil's field, and the edge between two classes is a blur whose
right place is half-way between the two *local* levels (a voxel half inside an object gets half of
its contrast). A global decision puts it half-way between the global means, so a bright object
grows a halo and a dim one shrinks. Here each class c gets a local mean m_c(x): the Gaussian-weighted
mean of the channel over the voxels now labelled c around x. A voxel is then scored against those local
means with one spread for every class, the within-class spread pooled over the level's classes (so an
edge voxel goes to the nearer local mean: a voxel half inside an object is half-way between the two
levels), and may only take a class present around it, so the pass moves boundaries and never creates a
region. In the manner of the local Gaussian fitting of active contours (Wang et al. 2009, Signal
Processing 89:2435; Lankton & Tannenbaum 2008), with the Potts prior in place of the contour's
length term.

Used on the denoised channel only (docs/method.md, round twenty-one): on a clean volume read raw, the
real MRI template, the local means follow the partial-volume voxels of the thin CSF and the level loses
0.012. One pooled spread since round twenty-two: each class's own spread (about its global mean, as the
mixture with a covariance per class has it) moved every edge towards the tighter class, and the spread
about the local means moved it further (docs/method.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Gaussian σ (voxels) of the neighbourhood a local mean is taken over: wide enough to average the
#: denoised channel's remaining noise over ~100 voxels, narrow enough to follow one object
LOCAL_MEANS_SIGMA = 2.0
#: passes of (local means -> posteriors -> Potts prior -> labels)
LOCAL_MEANS_PASSES = 2
#: a class may be taken where its labelled voxels hold at least this share of the neighbourhood's weight
#: (a class is never carried more than a few σ from where it already is)
LOCAL_PRESENCE = 0.05
#: the spread a class is scored with: "pooled" (the within-class spread about the global class means,
#: pooled over the classes: one for all), "class" (each class's own, about its global mean) or
#: "residual" (each class's own, about its local means); the last two measured, not adopted
LOCAL_SPREAD = "pooled"
#: the (floored) class spread, in units of the standardised features
_MIN_SPREAD = 1e-3
#: the log-likelihood of a class not present around a voxel
_ABSENT = np.float32(-1e4)


def _spreads(squares: np.ndarray, counts: np.ndarray, *, pooled: bool = False) -> np.ndarray:
    """(k, C) root-mean-square spreads from each class's summed squared deviations ``squares`` (k, C) over its
    ``counts`` (k,) voxels, or the spread pooled over the classes (every row the same) when ``pooled``; empty
    classes get the pooled spread. Floored at :data:`_MIN_SPREAD`."""
    pooled_spread = np.sqrt(squares.sum(axis=0) / max(counts.sum(), 1.0))
    spreads = np.sqrt(squares / np.maximum(counts[:, None], 1.0))
    spreads[counts == 0] = pooled_spread
    if pooled:
        spreads[:] = pooled_spread
    return np.maximum(spreads, _MIN_SPREAD)


def class_spreads(points: np.ndarray, labels: np.ndarray, k: int, *, pooled: bool) -> np.ndarray:
    """(k, C) standard deviation of every feature within each class, or the within-class spread pooled
    over the classes (every row the same) when ``pooled``; empty classes get the pooled spread."""
    squares = np.zeros((k, points.shape[1]))
    for c in range(k):
        inside = points[labels == c]
        if len(inside):
            squares[c] = ((inside - inside.mean(axis=0)) ** 2).sum(axis=0)
    return _spreads(squares, np.bincount(labels, minlength=k), pooled=pooled)


def _inside(labels: np.ndarray, c: int, shape: tuple[int, ...]) -> np.ndarray:
    """Class ``c``'s float32 mask on ``shape``."""
    return (labels == c).astype(np.float32).reshape(shape)


def _class_mask(labels: np.ndarray, c: int, shape: tuple[int, ...], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Class ``c``'s float32 mask on ``shape`` and its Gaussian-weighted sum (N,) around each voxel."""
    inside = _inside(labels, c, shape)
    return inside, ndimage.gaussian_filter(inside, sigma, mode="reflect").reshape(-1)


def _local_means(points: np.ndarray, inside: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """(N, C) Gaussian-weighted mean of every feature over the voxels ``inside`` (a float32 mask on the
    volume's shape) around each voxel; ``weight`` (N,) is the mask's own Gaussian-weighted sum."""
    denominator = np.maximum(weight, np.float32(1e-6))
    means = np.empty(points.shape, dtype=np.float32)
    for j in range(points.shape[1]):
        feature = points[:, j].reshape(inside.shape)
        means[:, j] = ndimage.gaussian_filter(inside * feature, sigma, mode="reflect").reshape(-1) / denominator
    return means


def residual_spreads(points: np.ndarray, labels: np.ndarray, shape: tuple[int, ...], k: int, sigma: float):
    """(k, C) root-mean-square residual of each class's voxels about their class's local means; empty
    classes get the residual pooled over the classes."""
    squares = np.zeros((k, points.shape[1]))
    for c in range(k):
        mine = labels == c
        means = _local_means(points, *_class_mask(labels, c, shape, sigma), sigma)
        squares[c] = ((points[mine] - means[mine]) ** 2).sum(axis=0)
    return _spreads(squares, np.bincount(labels, minlength=k))


def local_mean_posteriors(
    points: np.ndarray,
    labels: np.ndarray,
    shape: tuple[int, ...],
    k: int,
    *,
    sigma: float | None = None,
    spread: str | None = None,
) -> np.ndarray:
    """(N, k) float32 posteriors of every voxel under Gaussians at its classes' local means.

    ``points`` (N, C) are the mixture's features, ``labels`` (N,) the level's ids 0..k-1 on ``shape``;
    ``sigma`` and ``spread`` None: :data:`LOCAL_MEANS_SIGMA` and :data:`LOCAL_SPREAD`, read at the call.
    """
    sigma = LOCAL_MEANS_SIGMA if sigma is None else sigma
    spread = LOCAL_SPREAD if spread is None else spread
    if spread == "residual":
        spreads = residual_spreads(points, labels, shape, k, sigma)
    elif spread in ("pooled", "class"):
        spreads = class_spreads(points, labels, k, pooled=spread == "pooled")
    else:
        raise ValueError(f"unknown local-means spread {spread!r}: pooled, class or residual")
    weights = np.empty((k, len(labels)), dtype=np.float32)
    for c in range(k):
        weights[c] = _class_mask(labels, c, shape, sigma)[1]
    # every voxel keeps at least the class that dominates its neighbourhood, even with many classes
    floor = np.minimum(np.float32(LOCAL_PRESENCE), np.float32(0.5) * weights.max(axis=0))
    log_p = np.empty((len(labels), k), dtype=np.float32)
    for c in range(k):
        inside = _inside(labels, c, shape)  # rebuilt, not kept: k volumes of memory
        residual = (points - _local_means(points, inside, weights[c], sigma)) / spreads[c].astype(np.float32)
        score = np.float32(-0.5) * (residual**2).sum(axis=1) - np.float32(np.log(spreads[c]).sum())
        log_p[:, c] = np.where(weights[c] >= floor, score, _ABSENT)
    log_p -= log_p.max(axis=1, keepdims=True)
    np.exp(log_p, out=log_p)
    log_p /= log_p.sum(axis=1, keepdims=True)
    return log_p
