"""k-means on the Poincaré ball (curvature -1), with a Euclidean twin for ablations.

The public functions: :func:`poincare_kmeans` (fit on a seeded subsample,
then label every point), :func:`assign_clusters` (label points with given
centroids), :func:`pairwise_distance` and :func:`frechet_mean`. They check
their arguments, convert arrays to tensors and results back to numpy; the
kernels, seeding, Lloyd iterations and batching they run on, and the math
behind them (the ``asinh`` form of the distance, the weighted-Euclidean
argmin, the Fréchet fixed point of Lou et al. 2020), live in
:mod:`napari_hypseg.segmentation.kmeans_engine`, which the level hierarchy
shares.

Everything is plain torch and runs unchanged on CPU or CUDA. All randomness
comes from numpy generators derived from one ``seed``, so a seed gives the
same result on CPU run after run with the same thread count (CUDA atomics in
``index_add_`` may change the last bits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from napari_hypseg._errors import UserError
from napari_hypseg.segmentation import kmeans_engine as engine

__all__ = [
    "KMeansResult",
    "assign_clusters",
    "frechet_mean",
    "pairwise_distance",
    "poincare_kmeans",
]


# --------------------------------------------------------------------------
# public geometry helpers


def pairwise_distance(x, c, *, metric: str = "poincare") -> torch.Tensor:
    """Distance between every row of ``x`` and every row of ``c``.

    Parameters
    ----------
    x : (N, d) array or tensor
        Points (inside the unit ball for ``metric="poincare"``).
    c : (k, d) array or tensor
        Centroids; converted to the dtype and device of ``x``.
    metric : {"poincare", "euclidean"}
        Poincaré-ball distance at curvature -1, or plain Euclidean.

    Returns
    -------
    (N, k) tensor
        ``d(x_i, c_j)``. Memory O(N k); batch very large ``N`` yourself.
        Differentiable (except where a point equals a centroid).

    Examples
    --------
    >>> import torch
    >>> pairwise_distance(torch.zeros(1, 2), torch.tensor([[0.5, 0.0]]))
    tensor([[1.0986]])
    """
    engine.check_metric(metric)
    engine.check_points(x, "x")
    engine.check_points(c, "c")
    if x.shape[1] != c.shape[1]:
        raise UserError(f"x and c must have the same dimension, got {x.shape[1]} and {c.shape[1]}")
    # tensors keep their autograd graph; arrays become tensors on the CPU
    xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if isinstance(c, torch.Tensor):
        ct = c.to(device=xt.device, dtype=xt.dtype)
    else:
        ct = engine.to_tensor(c, device=xt.device, dtype=xt.dtype)
    for t, name in ((xt, "x"), (ct, "c")):
        engine.check_batch(t.detach(), metric, name)
    return engine.distance_matrix(xt, ct, metric)


def frechet_mean(x, *, weights=None, iters: int = 100, tol: float = 1e-9) -> torch.Tensor:
    """Weighted Fréchet (Karcher) mean of points on the Poincaré ball.

    Minimises ``sum_i w_i d(y, x_i)^2`` with the fixed-point algorithm of
    Lou et al. 2020 (the one the Hsu et al. paper cites), started from the
    Euclidean weighted mean (which lies in the ball, a convex set). The mean
    is unique because the ball has negative curvature.

    Parameters
    ----------
    x : (N, d) array or tensor
        Points inside the unit ball, N >= 1.
    weights : (N,) array or tensor, optional
        Non-negative weights with a positive sum; uniform by default.
    iters : int
        Maximum number of fixed-point steps (each O(N d)).
    tol : float
        Stop when a step moves the mean by at most ``tol`` (hyperbolic length).

    Returns
    -------
    (d,) tensor
        On the device of ``x``; float64 for float64 input, else float32
        (computed in float64 either way).
    """
    engine.check_points(x)
    if x.shape[0] == 0:
        raise UserError("cannot take the mean of zero points")
    if iters < 1:
        raise UserError(f"iters must be >= 1, got {iters}")
    device, out_dtype = engine.placement(x, None)
    # float64 for precision, as in the final polish of the engine's Lloyd iterations
    xt = engine.to_tensor(x, device=device, dtype=torch.float64)
    engine.check_batch(xt, "poincare")
    if weights is None:
        w = torch.ones(xt.shape[0], dtype=xt.dtype, device=device)
    else:
        w = engine.to_tensor(weights, device=device, dtype=xt.dtype)
        if w.shape != (xt.shape[0],):
            raise UserError(f"weights must have shape ({xt.shape[0]},), got {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise UserError("weights must be finite, non-negative and not all zero")
    init = (w[:, None] * xt).sum(0, keepdim=True) / w.sum()
    labels = torch.zeros(xt.shape[0], dtype=torch.int64, device=device)
    pts = engine.Points.make(xt, "poincare")
    mean, _ = engine.cluster_means(pts, labels, 1, init, "poincare", weights=w, max_iter=iters, tol=tol)
    return mean[0].to(out_dtype)


# --------------------------------------------------------------------------
# k-means


@dataclass
class KMeansResult:
    """Outcome of :func:`poincare_kmeans`.

    Attributes
    ----------
    centroids : (k, d) ndarray
        Fréchet means (Poincaré) or arithmetic means (Euclidean) of the
        clusters of the fitted sample.
    labels : (N,) int64 ndarray
        Cluster of every input point, 0 .. k-1.
    inertia : float
        Sum over all N points of the squared distance to their centroid.
    n_iter : int
        Lloyd iterations of the selected initialisation.
    init_inertias : tuple of float
        Objective on the fitted sample reached by each initialisation, in
        order; the selected one is the lowest (the first on ties).
    """

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int
    init_inertias: tuple[float, ...] = field(default=())


def poincare_kmeans(
    x,
    k: int,
    *,
    metric: str = "poincare",
    n_init: int = 4,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    fit_size: int = 200_000,
    device=None,
    batch_size: int = 1_000_000,
) -> KMeansResult:
    """k-means with hyperbolic distance and Fréchet-mean centroids.

    Fits on a seeded random subsample of ``fit_size`` points (all points if
    fewer), with ``n_init`` greedy k-means++ initialisations (squared
    hyperbolic distance) each refined by Lloyd iterations; keeps the lowest
    objective; then assigns all N points in batches of ``batch_size``.

    Parameters
    ----------
    x : (N, d) float ndarray (memory maps welcome) or tensor
        Embeddings inside the unit ball (``metric="poincare"``) or anywhere
        (``metric="euclidean"``). Never modified.
    k : int
        Number of clusters, 1 <= k <= N.
    metric : {"poincare", "euclidean"}
        Euclidean gives plain k-means (arithmetic-mean centroids), for the
        Euclidean-VAE ablation.
    n_init : int
        Number of initialisations; the lowest objective wins.
    max_iter : int
        Maximum Lloyd iterations per initialisation.
    tol : float
        Lloyd stops when no label changes or when the summed squared
        centroid moves fall below ``tol`` times the mean squared
        point-to-centroid distance (scale-free, as in scikit-learn).
    seed : int
        Seeds subsample and initialisations; a seed reproduces the result
        exactly on CPU.
    fit_size : int
        Size of the subsample the centroids are fitted on.
    device : str or torch.device, optional
        Where to compute. Default: the tensor's device, CPU for arrays.
    batch_size : int
        Points per batch in the final assignment (bounds memory to about
        ``batch_size * (k + 2 d)`` floats on ``device``).

    Returns
    -------
    KMeansResult
        ``labels`` are 0 .. k-1. When N >= k no cluster is empty: an empty
        cluster takes the farthest point of another (so, with duplicated
        points, a few labels may differ from the plain nearest centroid).

    Notes
    -----
    Cost: O(n_init * iters * n k d) on the subsample plus O(N k d) for the
    assignment; memory O(fit_size (k + d)) plus one batch.
    """
    engine.check_fit_arguments(
        x,
        k,
        metric=metric,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        fit_size=fit_size,
        batch_size=batch_size,
    )
    device, dtype = engine.placement(x, device)
    sub_seed, *init_seeds = np.random.SeedSequence(seed).spawn(1 + n_init)
    idx, pts = engine.fit_sample(
        x, fit_size, np.random.default_rng(sub_seed), device=device, dtype=dtype, metric=metric
    )
    fit = engine.fit(pts, k, metric=metric, n_init=n_init, max_iter=max_iter, tol=tol, seeds=init_seeds)
    if idx is None:
        labels = fit.labels.cpu().numpy()
        inertia = fit.inertia
    else:
        labels, inertia = engine.assign(x, fit.centroids, metric, batch_size, device, repair=True)
    return KMeansResult(
        centroids=fit.centroids.cpu().numpy(),
        labels=labels,
        inertia=float(inertia),
        n_iter=fit.n_iter,
        init_inertias=fit.init_inertias,
    )


def assign_clusters(
    x,
    centroids,
    *,
    metric: str = "poincare",
    batch_size: int = 1_000_000,
    device=None,
) -> np.ndarray:
    """Label each point with its nearest centroid (no empty-cluster repair).

    Parameters
    ----------
    x : (N, d) float ndarray or tensor
    centroids : (k, d) array or tensor
    metric : {"poincare", "euclidean"}
    batch_size : int
        Points per batch; memory about ``batch_size * (k + 2 d)`` floats.
    device : optional
        Default: the tensor's device, CPU for arrays.

    Returns
    -------
    (N,) int64 ndarray
        Indices 0 .. k-1. Cost O(N k d); ties go to the lowest index.
    """
    engine.check_metric(metric)
    engine.check_points(x)
    engine.check_points(centroids, "centroids")
    if centroids.shape[0] < 1:
        raise UserError("assign_clusters needs at least one centroid, got 0")
    if x.shape[1] != centroids.shape[1]:
        raise UserError(f"points have dimension {x.shape[1]} but centroids have {centroids.shape[1]}")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    device, dtype = engine.placement(x, device)
    c = engine.to_tensor(centroids, device=device, dtype=dtype)
    engine.check_batch(c, metric, "centroids")
    labels, _ = engine.assign(x, c, metric, batch_size, device)
    return labels
