"""k-means on the Poincaré ball (curvature -1), with a Euclidean twin for ablations.

Distances use the closed form

    d(x, y) = arcosh(1 + 2 |x - y|^2 / ((1 - |x|^2)(1 - |y|^2)))
            = 2 asinh(sqrt(u)),   u = |x - y|^2 / ((1 - |x|^2)(1 - |y|^2)),

the second line by ``cosh(2t) = 1 + 2 sinh(t)^2``. The ``asinh`` form keeps
float32 precision for nearby points, where ``arcosh(1 + tiny)`` rounds to 0.
geoopt has no pairwise (N, k) form of this distance, hence the few lines here.

Two facts make the clustering cheap:

* ``d`` grows with ``u``, and for a fixed point ``x`` the factor ``1 - |x|^2``
  is common to all centroids, so the nearest centroid minimises
  ``|x - c|^2 / (1 - |c|^2)``: assignment is a weighted Euclidean argmin
  with no transcendental function at all.
* Fréchet means (the centroids) come from the fixed-point algorithm of
  Lou et al. 2020 ("Differentiating through the Fréchet mean", ICML), which
  needs only weighted sums per cluster, so every cluster is updated at once
  with ``index_add_`` and no per-cluster Python loop.

Everything is plain torch and runs unchanged on CPU or CUDA. All randomness
comes from numpy generators derived from one ``seed``, so a seed gives the
same result on CPU run after run with the same thread count (CUDA atomics in
``index_add_`` may change the last bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from napari_hypseg._errors import UserError

__all__ = [
    "KMeansResult",
    "assign_clusters",
    "frechet_mean",
    "pairwise_distance",
    "poincare_kmeans",
]

METRICS = ("poincare", "euclidean")

# Points from float32 maps (geoopt projects to |x| <= 1 - 4e-3) are well inside
# the ball; anything beyond this slack is not a ball embedding at all.
_BALL_SLACK = 1e-3
# Fréchet steps per Lloyd iteration, and the final precision (hyperbolic length)
_INNER_STEPS = 3
_POLISH_TOL = 1e-6


# --------------------------------------------------------------------------
# validation and conversion


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise UserError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def _compute_dtype(x) -> torch.dtype:
    # float64 input stays float64 (tests, small data); everything else float32
    return torch.float64 if x.dtype in (np.float64, torch.float64) else torch.float32


def _to_tensor(x, *, device, dtype) -> torch.Tensor:
    """A tensor view or copy of ``x`` on ``device``; ``x`` itself is never modified."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=dtype)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)


def _resolve_device(x, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(x, torch.Tensor):
        return x.device
    return torch.device("cpu")


def _check_points(x, name: str = "x") -> None:
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise UserError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] < 1:
        raise UserError(f"{name} must have shape (N, d), got {tuple(x.shape)}")
    if isinstance(x, np.ndarray) and not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"{name} must hold floating-point embeddings, got dtype {x.dtype}")
    if isinstance(x, torch.Tensor) and not x.is_floating_point():
        raise UserError(f"{name} must hold floating-point embeddings, got dtype {x.dtype}")


def _check_batch(xb: torch.Tensor, metric: str, name: str = "x") -> None:
    """Reject NaN/inf and, for the ball, points outside it (one reduction per batch)."""
    if not bool(torch.isfinite(xb).all()):
        raise UserError(f"{name} contains NaN or infinite values")
    if metric == "poincare" and xb.shape[0]:
        max_norm = float(torch.linalg.vector_norm(xb, dim=1).max())
        if max_norm > 1.0 + _BALL_SLACK:
            raise UserError(
                f"{name} must lie inside the unit Poincaré ball (norm < 1), found norm "
                f"{max_norm:.4f}; use metric='euclidean' for embeddings of a Euclidean model"
            )


# --------------------------------------------------------------------------
# Poincaré-ball kernels (all shapes documented; no validation inside)


def _gap(sq_norm: torch.Tensor) -> torch.Tensor:
    """``1 - |x|^2``, clamped.

    A float32 point can round onto the sphere, where the conformal factor
    2 / (1 - |x|^2) is infinite; the clamp keeps such a point at a huge but
    finite distance so sums and argmins stay finite.
    """
    return (1.0 - sq_norm).clamp_min(torch.finfo(sq_norm.dtype).eps)


def _asinh(s: torch.Tensor) -> torch.Tensor:
    """asinh for s >= 0 as log1p(s + s^2 / (1 + sqrt(1 + s^2))).

    Exact rewrite of log(s + sqrt(1 + s^2)) without its cancellation near 0;
    several times faster than ``torch.asinh`` on CPU, which matters in the
    per-point loops below.
    """
    s2 = s.square()
    return torch.log1p(s + s2 / (1.0 + torch.sqrt(1.0 + s2)))


def _u_to_d2(u: torch.Tensor, metric: str) -> torch.Tensor:
    """Squared distance from the monotone proxy ``u`` (see module docstring)."""
    if metric == "euclidean":
        return u
    return (2.0 * _asinh(torch.sqrt(u))).square()


def _pair_u(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """Row-wise proxy ``u`` between matching rows of ``a`` (n, d) and ``b`` (n, d)."""
    sq = (a - b).square().sum(1)
    if metric == "euclidean":
        return sq
    return sq / (_gap(a.square().sum(1)) * _gap(b.square().sum(1)))


def _row_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Poincaré distance between matching rows of ``a`` and ``b``, shape (n,)."""
    return 2.0 * _asinh(torch.sqrt(_pair_u(a, b, "poincare")))


@dataclass
class _Points:
    """Points with the per-point quantities every kernel reuses.

    ``xa`` (n, d + 2) is ``[x, |x|^2, 1]``: one GEMM with it gives the
    assignment scores, and one ``index_add_`` of ``alpha * xa`` gives all
    the sums of a Fréchet step. ``gap`` is ``1 - |x|^2`` (Poincaré only).
    """

    x: torch.Tensor
    xa: torch.Tensor
    gap: torch.Tensor | None

    @classmethod
    def make(cls, x: torch.Tensor, metric: str) -> "_Points":
        sq = x.square().sum(1, keepdim=True)
        xa = torch.cat([x, sq, torch.ones_like(sq)], dim=1)
        return cls(x, xa, _gap(sq[:, 0]) if metric == "poincare" else None)

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, index: torch.Tensor) -> "_Points":
        gap = None if self.gap is None else self.gap[index]
        return _Points(self.x[index], self.xa[index], gap)

    def double(self) -> "_Points":
        """float64 copy (the final Fréchet polish: float32 stalls near the rim)."""
        if self.x.dtype == torch.float64:
            return self
        return _Points.make(self.x.double(), "euclidean" if self.gap is None else "poincare")


def _score_rows(c: torch.Tensor, metric: str) -> torch.Tensor:
    """(k, d + 2) rows r_j such that xa @ r_j = |x - c_j|^2 [/ (1 - |c_j|^2)].

    For the ball, 1 - |x|^2 is common to a point's row of u, so dropping it
    leaves the argmin unchanged.
    """
    c2 = c.square().sum(1, keepdim=True)
    rows = torch.cat([-2.0 * c, torch.ones_like(c2), c2], dim=1)
    if metric == "poincare":
        rows = rows / _gap(c2)
    return rows


def _exact_u(p: _Points, c: torch.Tensor, labels: torch.Tensor, metric: str) -> torch.Tensor:
    """Proxy ``u`` of each point to centroid ``labels`` from the direct difference."""
    sq = (p.x - c.index_select(0, labels)).square().sum(1)
    if metric == "euclidean":
        return sq
    return sq / (p.gap * _gap(c.square().sum(1)).index_select(0, labels))


def _nearest(
    p: _Points, c: torch.Tensor, metric: str, *, exact: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each point among ``c`` (k, d).

    Returns labels (n,) int64 and the proxy ``u`` (n,) to the chosen
    centroid. The scores come from one GEMM on the expanded form
    |x|^2 - 2 x.c + |c|^2 (n*k memory); with ``exact`` the returned ``u`` is
    recomputed from the direct difference, free of that form's cancellation
    (needed for reported inertias, not for Lloyd's progress test).
    Cost O(n k d).
    """
    score = p.xa @ _score_rows(c, metric).T
    smin, labels = score.min(1)
    if exact:
        return labels, _exact_u(p, c, labels, metric)
    u = smin.clamp_min(0.0)
    return labels, (u / p.gap if metric == "poincare" else u)


def _argmin(p: _Points, c: torch.Tensor, metric: str) -> torch.Tensor:
    """Labels only: the nearest of centroids ``c`` for each point (see _nearest)."""
    return (p.xa @ _score_rows(c, metric).T).min(1).indices


def _lou_weight(u: torch.Tensor) -> torch.Tensor:
    """g(u) = 2 arcosh(1 + 2u) / sqrt(u^2 + u) = 4 asinh(s) / (s sqrt(1 + u)), s = sqrt(u).

    The derivative of d^2 with respect to u; its limit at u = 0 (a point on
    the current mean) is 4, reached through the series asinh(s)/s = 1 - s^2/6.
    """
    s = torch.sqrt(u)
    ratio = torch.where(s < 1e-3, 1.0 - u / 6.0, _asinh(s) / s.clamp_min(1e-3))
    return 4.0 * ratio / torch.sqrt(1.0 + u)


def _cluster_means(
    p: _Points,
    labels: torch.Tensor,
    k: int,
    init: torch.Tensor,
    metric: str,
    *,
    weights: torch.Tensor | None = None,
    max_iter: int = 50,
    tol: float = _POLISH_TOL,
) -> tuple[torch.Tensor, int]:
    """Fréchet mean of every cluster at once; clusters with no weight keep ``init``.

    Poincaré: Lou et al. 2020, Algorithm 1 for curvature -1. With the current
    mean y frozen in the weights

        alpha_i = w_i g(u_i) / (1 - |x_i|^2),  a = sum alpha_i,
        b = sum alpha_i x_i,                   c = sum alpha_i |x_i|^2,

    the stationarity condition of sum w_i d^2(x_i, y) becomes
    y (a + c - 2 b.y) = b (1 - |y|^2), whose root inside the ball is
    y = 2 b / ((a + c) + sqrt((a + c)^2 - 4 |b|^2)) (the cancellation-free
    form of the smaller quadratic root). Iterating converges (Lou et al.,
    Thm. 4.1); warm starts from the previous centroids converge in a few
    steps. Each step costs O(n d) plus O(k d). Returns (means (k, d), steps).

    Euclidean: the weighted arithmetic mean, one step.
    """
    d = p.x.shape[1]
    dtype, device = p.x.dtype, p.x.device
    w = torch.ones(len(p), dtype=dtype, device=device) if weights is None else weights
    mass = torch.zeros(k, dtype=dtype, device=device).index_add_(0, labels, w)
    has_mass = mass > 0
    if metric == "euclidean":
        b = torch.zeros(k, d, dtype=dtype, device=device).index_add_(0, labels, w[:, None] * p.x)
        means = torch.where(has_mass[:, None], b / mass.clamp_min(1e-30)[:, None], init)
        return means, 1

    # Rounding can put (a + c)^2 - 4|b|^2 = 0 and the mean on the sphere;
    # keep it a hair inside, like geoopt's projection does.
    max_norm = 1.0 - 8.0 * torch.finfo(dtype).eps
    y = init.clone()
    steps = 0
    for steps in range(1, max_iter + 1):
        alpha = w * _lou_weight(_exact_u(p, y, labels, metric)) / p.gap
        sums = torch.zeros(k, d + 2, dtype=dtype, device=device)
        sums.index_add_(0, labels, alpha[:, None] * p.xa)
        b, ac = sums[:, :d], sums[:, d] + sums[:, d + 1]  # xa = [x, |x|^2, 1]
        # (a + c)^2 >= 4|b|^2 holds exactly (Cauchy-Schwarz and 1 + |x|^2 >= 2|x|);
        # the clamp only absorbs rounding.
        disc = (ac.square() - 4.0 * b.square().sum(1)).clamp_min(0.0)
        y_new = 2.0 * b / (ac + torch.sqrt(disc)).clamp_min(torch.finfo(dtype).tiny)[:, None]
        norm = torch.linalg.vector_norm(y_new, dim=1, keepdim=True)
        y_new = y_new * (max_norm / norm.clamp_min(max_norm)).clamp_max(1.0)
        y_new = torch.where(has_mass[:, None], y_new, y)
        step = float(_row_dist(y, y_new).max())
        y = y_new
        if step <= tol:
            break
    return y, steps


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
    _check_metric(metric)
    _check_points(x, "x")
    _check_points(c, "c")
    if x.shape[1] != c.shape[1]:
        raise UserError(f"x and c must have the same dimension, got {x.shape[1]} and {c.shape[1]}")
    # tensors keep their autograd graph; arrays become tensors on the CPU
    xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if isinstance(c, torch.Tensor):
        ct = c.to(device=xt.device, dtype=xt.dtype)
    else:
        ct = _to_tensor(c, device=xt.device, dtype=xt.dtype)
    for t, name in ((xt, "x"), (ct, "c")):
        _check_batch(t.detach(), metric, name)
    # the direct-difference mode avoids the |x|^2 - 2x.c + |c|^2 cancellation
    diff = torch.cdist(xt, ct, compute_mode="donot_use_mm_for_euclid_dist")
    if metric == "euclidean":
        return diff
    denom = torch.sqrt(_gap(xt.square().sum(1))[:, None] * _gap(ct.square().sum(1))[None, :])
    return 2.0 * torch.asinh(diff / denom)


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
    _check_points(x)
    if x.shape[0] == 0:
        raise UserError("cannot take the mean of zero points")
    if iters < 1:
        raise UserError(f"iters must be >= 1, got {iters}")
    device = _resolve_device(x, None)
    out_dtype = _compute_dtype(x)
    xt = _to_tensor(x, device=device, dtype=torch.float64)  # see _lloyd: float64 for precision
    _check_batch(xt, "poincare")
    if weights is None:
        w = torch.ones(xt.shape[0], dtype=xt.dtype, device=device)
    else:
        w = _to_tensor(weights, device=device, dtype=xt.dtype)
        if w.shape != (xt.shape[0],):
            raise UserError(f"weights must have shape ({xt.shape[0]},), got {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise UserError("weights must be finite, non-negative and not all zero")
    init = (w[:, None] * xt).sum(0, keepdim=True) / w.sum()
    labels = torch.zeros(xt.shape[0], dtype=torch.int64, device=device)
    pts = _Points.make(xt, "poincare")
    mean, _ = _cluster_means(pts, labels, 1, init, "poincare", weights=w, max_iter=iters, tol=tol)
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


def _subsample(n: int, fit_size: int, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted random row indices (sorted for memory locality), or None for all rows."""
    if n <= fit_size:
        return None
    return np.sort(rng.choice(n, size=fit_size, replace=False))


def _kmeanspp(p: _Points, k: int, rng: np.random.Generator, metric: str) -> torch.Tensor:
    """Greedy k-means++ seeding with squared (hyperbolic) distances.

    Each new centre is the best, by the resulting potential, of
    ``2 + log k`` candidates drawn with probability proportional to the
    squared distance to the nearest chosen centre (Arthur & Vassilvitskii
    2007; the greedy trials as in scikit-learn). Cost O(n k log k d).
    Sampling happens on the host in float64 so it is identical on any device.
    """
    n = len(p)
    trials = 2 + int(math.log(k)) if k > 1 else 1
    centres = [int(rng.integers(n))]

    def d2_to(idx: np.ndarray) -> torch.Tensor:  # (n, len(idx)) squared distances
        cand = p.x[torch.as_tensor(idx, device=p.x.device)]
        u = (p.xa @ _score_rows(cand, metric).T).clamp_min_(0.0)
        if metric == "poincare":
            u = u / p.gap[:, None]
        return _u_to_d2(u, metric)

    closest = d2_to(np.array(centres))[:, 0]
    for _ in range(1, k):
        cum = np.cumsum(closest.double().cpu().numpy())
        if cum[-1] > 0:
            cand = np.searchsorted(cum, rng.random(trials) * cum[-1], side="right")
            cand = np.minimum(cand, n - 1)
        else:  # every point sits on a centre already: any choice is as good
            cand = rng.integers(n, size=trials)
        pot = torch.minimum(closest[:, None], d2_to(cand))
        best = int(pot.sum(0).argmin())
        centres.append(int(cand[best]))
        closest = pot[:, best]
    return p.x[torch.as_tensor(centres, device=p.x.device)].clone()


def _repair_empty(
    p: _Points, labels: torch.Tensor, u: torch.Tensor, c: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Give each empty cluster the farthest point of a cluster that can spare one.

    The point moves to the empty cluster and becomes its centroid, so the
    cluster is non-empty even when that point duplicates another centroid
    (fewer distinct points than k). Needs n >= k. Returns new
    (labels, u, c); inputs are not modified. Cost O(n log n), only when a
    cluster is empty.
    """
    counts = torch.bincount(labels, minlength=k)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if not empty:
        return labels, u, c
    labels, u, c = labels.clone(), u.clone(), c.clone()
    counts_l = counts.tolist()
    order = torch.argsort(u, descending=True, stable=True).tolist()
    pos = 0
    for j in empty:
        while True:  # terminates: n >= k leaves some cluster with two points
            i = order[pos]
            pos += 1
            src = int(labels[i])
            if counts_l[src] > 1:
                break
        counts_l[src] -= 1
        counts_l[j] = 1
        labels[i] = j
        u[i] = 0.0
        c[j] = p.x[i]
    return labels, u, c


def _lloyd(
    p: _Points, c: torch.Tensor, metric: str, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Lloyd iterations from centroids ``c``. Returns (c, labels, u, n_iter).

    Stops when no label changes, or when the summed squared centroid moves
    fall to ``tol`` times the mean squared point-to-centroid distance (a
    scale-free test, like scikit-learn's). Inside the loop the Fréchet means
    take at most a few warm-started steps (a decrease is all Lloyd needs);
    at the end they are polished to full precision and the points
    reassigned. Each iteration costs O(n k d) for the assignment plus
    O(n d) per Fréchet step.
    """
    k, n = c.shape[0], len(p)
    prev = None
    it = 0
    for it in range(1, max_iter + 1):
        labels, u = _nearest(p, c, metric, exact=False)
        labels, u, c = _repair_empty(p, labels, u, c, k)
        if prev is not None and torch.equal(labels, prev):
            break
        prev = labels
        c_new, _ = _cluster_means(p, labels, k, c, metric, max_iter=_INNER_STEPS)
        if metric == "poincare":
            shift2 = float(_row_dist(c, c_new).square().sum())
        else:
            shift2 = float((c - c_new).square().sum())
        c = c_new
        if shift2 <= tol * float(_u_to_d2(u, metric).sum()) / n:
            break
    # float32 Lou steps jitter at ~1e-4 relative near the rim, where the
    # quadratic's discriminant cancels; the polish runs in float64.
    c, _ = _cluster_means(p.double(), labels, k, c.double(), metric, max_iter=100)
    c = c.to(p.x.dtype)
    labels, u = _nearest(p, c, metric)
    labels, u, c = _repair_empty(p, labels, u, c, k)
    return c, labels, u, it


@dataclass
class _Fit:
    centroids: torch.Tensor  # (k, d)
    labels: torch.Tensor  # (n,) int64, on the fitted sample
    d2: torch.Tensor  # (n,) squared distance to own centroid
    inertia: float
    n_iter: int
    init_inertias: tuple[float, ...]


def _fit(
    p: _Points,
    k: int,
    *,
    metric: str,
    n_init: int,
    max_iter: int,
    tol: float,
    seeds: list[np.random.SeedSequence],
) -> _Fit:
    """Best of ``n_init`` k-means++ + Lloyd runs on the in-memory sample ``p``.

    ``seeds[i]`` drives initialisation i, so the first run of ``n_init=4``
    equals the only run of ``n_init=1`` for the same parent seed.
    """
    best: _Fit | None = None
    inertias = []
    for i in range(n_init):
        rng = np.random.default_rng(seeds[i])
        c0 = _kmeanspp(p, k, rng, metric)
        c, labels, u, n_iter = _lloyd(p, c0, metric, max_iter, tol)
        d2 = _u_to_d2(u, metric)
        inertia = float(d2.sum())
        inertias.append(inertia)
        if best is None or inertia < best.inertia:
            best = _Fit(c, labels, d2, inertia, n_iter, ())
    best.init_inertias = tuple(inertias)
    return best


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


def _load(x, s: int, e: int, *, device, dtype, metric: str, name: str = "x") -> _Points:
    """Rows s:e of ``x`` as checked, prepared points on ``device``."""
    xb = _to_tensor(x[s:e], device=device, dtype=dtype)
    _check_batch(xb, metric, name)
    return _Points.make(xb, metric)


def _assign(
    x, c: torch.Tensor, metric: str, batch_size: int, device: torch.device, name: str = "x"
) -> tuple[np.ndarray, float]:
    """Nearest centroid for all rows of ``x`` in batches; (labels int64, inertia)."""
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    inertia = 0.0
    for s, e in _batches(n, batch_size):
        pb = _load(x, s, e, device=device, dtype=c.dtype, metric=metric, name=name)
        lab, u = _nearest(pb, c, metric)
        labels[s:e] = lab.cpu().numpy()
        inertia += float(_u_to_d2(u, metric).sum())
    return labels, inertia


def _fill_empty_full(x, labels, inertia, c, metric, batch_size, device):
    """Empty-cluster repair after the full assignment.

    Only happens with duplicated points (the fit sample had every cluster
    filled, and its points are among these). Loads all points at once, which
    is acceptable for this degenerate case.
    """
    k = c.shape[0]
    if np.bincount(labels, minlength=k).min() > 0:
        return labels, inertia
    p = _load(x, 0, x.shape[0], device=device, dtype=c.dtype, metric=metric)
    lab = torch.as_tensor(labels, device=device)
    lab, u, _ = _repair_empty(p, lab, _exact_u(p, c, lab, metric), c, k)
    return lab.cpu().numpy(), float(_u_to_d2(u, metric).sum())


def _check_common(x, k, metric, n_init, max_iter, tol, fit_size, batch_size) -> None:
    _check_metric(metric)
    _check_points(x)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise UserError(f"the number of clusters k must be a positive integer, got {k!r}")
    if x.shape[0] < k:
        raise UserError(f"cannot make {k} clusters from {x.shape[0]} points")
    for name, value in (("n_init", n_init), ("max_iter", max_iter), ("batch_size", batch_size)):
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    if fit_size < k:
        raise UserError(f"fit_size ({fit_size}) must be at least k ({k})")
    if tol < 0:
        raise UserError(f"tol must be >= 0, got {tol}")


def _fit_sample(
    x, fit_size: int, rng: np.random.Generator, *, device, dtype, metric: str, name: str = "x"
):
    """(indices or None, prepared points) of the seeded fitting subsample."""
    idx = _subsample(x.shape[0], fit_size, rng)
    if idx is None:
        sample = x
    else:
        sample = x[torch.as_tensor(idx, device=x.device) if isinstance(x, torch.Tensor) else idx]
    return idx, _load(sample, 0, sample.shape[0], device=device, dtype=dtype, metric=metric, name=name)


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
    _check_common(x, k, metric, n_init, max_iter, tol, fit_size, batch_size)
    device = _resolve_device(x, device)
    dtype = _compute_dtype(x)
    sub_seed, *init_seeds = np.random.SeedSequence(seed).spawn(1 + n_init)
    idx, pts = _fit_sample(
        x, fit_size, np.random.default_rng(sub_seed), device=device, dtype=dtype, metric=metric
    )
    fit = _fit(pts, k, metric=metric, n_init=n_init, max_iter=max_iter, tol=tol, seeds=init_seeds)
    if idx is None:
        labels = fit.labels.cpu().numpy()
        inertia = fit.inertia
    else:
        labels, inertia = _assign(x, fit.centroids, metric, batch_size, device)
        labels, inertia = _fill_empty_full(x, labels, inertia, fit.centroids, metric, batch_size, device)
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
    _check_metric(metric)
    _check_points(x)
    _check_points(centroids, "centroids")
    if centroids.shape[0] < 1:
        raise UserError("assign_clusters needs at least one centroid, got 0")
    if x.shape[1] != centroids.shape[1]:
        raise UserError(
            f"points have dimension {x.shape[1]} but centroids have {centroids.shape[1]}"
        )
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    device = _resolve_device(x, device)
    c = _to_tensor(centroids, device=device, dtype=_compute_dtype(x))
    _check_batch(c, metric, "centroids")
    labels, _ = _assign(x, c, metric, batch_size, device)
    return labels
