"""The k-means engine behind :mod:`.kmeans` and :mod:`.hierarchy`: kernels, seeding, Lloyd, batching.

Internal: the public functions (validated arguments, numpy results) live in
:mod:`napari_hypseg.segmentation.kmeans`; this module is the machinery they
and the level hierarchy share. Its API, for those two modules only:

* validation, once for every caller: :func:`check_metric`,
  :func:`check_points`, :func:`check_batch` (NaN, points outside the ball),
  :func:`check_fit_arguments` (k, sizes and iteration options);
* placement: :func:`placement` (device and compute dtype), :func:`to_tensor`;
* points: :class:`Points` (points with their cached per-point terms),
  :func:`load` (a checked batch of rows), :func:`fit_sample` (the seeded
  fitting subsample), :func:`batches`;
* geometry: :func:`distance_matrix`, :func:`cluster_means` (Fréchet means);
* clustering: :func:`fit` (best of several k-means++ + Lloyd runs),
  :func:`nearest_labels` (labels on prepared points), :func:`assign` (labels
  of all rows of a large array, batch by batch).

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
comes from numpy generators derived from the caller's seed sequences, so a
seed gives the same result on CPU run after run with the same thread count
(CUDA atomics in ``index_add_`` may change the last bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from napari_hypseg._errors import UserError

__all__ = [
    "METRICS",
    "Fit",
    "Points",
    "assign",
    "batches",
    "check_batch",
    "check_fit_arguments",
    "check_metric",
    "check_points",
    "cluster_means",
    "distance_matrix",
    "fit",
    "fit_sample",
    "load",
    "nearest_labels",
    "placement",
    "to_tensor",
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


def check_metric(metric: str) -> str:
    """``metric`` itself, or a :class:`UserError` naming the choices."""
    if metric not in METRICS:
        raise UserError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def _compute_dtype(x) -> torch.dtype:
    # float64 input stays float64 (tests, small data); everything else float32
    return torch.float64 if x.dtype in (np.float64, torch.float64) else torch.float32


def to_tensor(x, *, device, dtype) -> torch.Tensor:
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


def placement(x, device) -> tuple[torch.device, torch.dtype]:
    """Where and in which precision to compute on ``x``.

    The device is ``device`` when given, else the tensor's own device, else
    the CPU; the dtype is float64 for float64 input, float32 otherwise.
    """
    return _resolve_device(x, device), _compute_dtype(x)


def check_points(x, name: str = "x") -> None:
    """Reject anything but a floating-point (N, d) array or tensor (no data is read)."""
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise UserError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] < 1:
        raise UserError(f"{name} must have shape (N, d), got {tuple(x.shape)}")
    if isinstance(x, np.ndarray) and not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"{name} must hold floating-point embeddings, got dtype {x.dtype}")
    if isinstance(x, torch.Tensor) and not x.is_floating_point():
        raise UserError(f"{name} must hold floating-point embeddings, got dtype {x.dtype}")


def check_batch(xb: torch.Tensor, metric: str, name: str = "x") -> None:
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


def check_fit_arguments(
    x,
    k,
    *,
    metric: str,
    n_init: int,
    max_iter: int,
    tol: float,
    fit_size: int,
    batch_size: int,
    name: str = "x",
    rows: str = "points",
    k_name: str = "k",
) -> None:
    """Check the points and options of a clustering with at most ``k`` clusters.

    ``name``, ``rows`` and ``k_name`` are how the messages call the points
    array, its rows and the cluster count (``"embedding"``, ``"voxels"`` and
    ``"k_max"`` for a hierarchy).
    """
    check_metric(metric)
    check_points(x, name)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise UserError(f"the number of clusters {k_name} must be a positive integer, got {k!r}")
    if x.shape[0] < k:
        raise UserError(f"cannot make {k} clusters from {x.shape[0]} {rows}")
    for option, value in (("n_init", n_init), ("max_iter", max_iter), ("batch_size", batch_size)):
        if value < 1:
            raise UserError(f"{option} must be >= 1, got {value}")
    if fit_size < k:
        raise UserError(f"fit_size ({fit_size}) must be at least {k_name} ({k})")
    if tol < 0:
        raise UserError(f"tol must be >= 0, got {tol}")


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


def distance_matrix(x: torch.Tensor, c: torch.Tensor, metric: str) -> torch.Tensor:
    """(n, k) distances between the rows of ``x`` (n, d) and ``c`` (k, d), differentiable.

    The direct-difference mode of ``cdist`` avoids the cancellation of
    |x|^2 - 2x.c + |c|^2, and ``2 asinh(|x - c| / sqrt(gap_x gap_c))`` is the
    module docstring's ``2 asinh(sqrt(u))``.
    """
    diff = torch.cdist(x, c, compute_mode="donot_use_mm_for_euclid_dist")
    if metric == "euclidean":
        return diff
    denom = torch.sqrt(_gap(x.square().sum(1))[:, None] * _gap(c.square().sum(1))[None, :])
    return 2.0 * torch.asinh(diff / denom)


@dataclass
class Points:
    """Points with the per-point quantities every kernel reuses.

    ``xa`` (n, d + 2) is ``[x, |x|^2, 1]``: one GEMM with it gives the
    assignment scores, and one ``index_add_`` of ``alpha * xa`` gives all
    the sums of a Fréchet step. ``gap`` is ``1 - |x|^2`` (Poincaré only).
    """

    x: torch.Tensor
    xa: torch.Tensor
    gap: torch.Tensor | None

    @classmethod
    def make(cls, x: torch.Tensor, metric: str) -> Points:
        sq = x.square().sum(1, keepdim=True)
        xa = torch.cat([x, sq, torch.ones_like(sq)], dim=1)
        return cls(x, xa, _gap(sq[:, 0]) if metric == "poincare" else None)

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, index: torch.Tensor) -> Points:
        gap = None if self.gap is None else self.gap[index]
        return Points(self.x[index], self.xa[index], gap)

    def double(self) -> Points:
        """float64 copy (the final Fréchet polish: float32 stalls near the rim)."""
        if self.x.dtype == torch.float64:
            return self
        return Points.make(self.x.double(), "euclidean" if self.gap is None else "poincare")


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


def _exact_u(p: Points, c: torch.Tensor, labels: torch.Tensor, metric: str) -> torch.Tensor:
    """Proxy ``u`` of each point to centroid ``labels`` from the direct difference."""
    sq = (p.x - c.index_select(0, labels)).square().sum(1)
    if metric == "euclidean":
        return sq
    return sq / (p.gap * _gap(c.square().sum(1)).index_select(0, labels))


def _nearest(p: Points, c: torch.Tensor, metric: str, *, exact: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
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


def nearest_labels(p: Points, c: torch.Tensor, metric: str) -> torch.Tensor:
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


def cluster_means(
    p: Points,
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
    for steps in range(1, max_iter + 1):  # noqa: B007 - the count is returned after the loop
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
# k-means on an in-memory sample: seeding, Lloyd, the best of several runs


def _subsample(n: int, fit_size: int, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted random row indices (sorted for memory locality), or None for all rows."""
    if n <= fit_size:
        return None
    return np.sort(rng.choice(n, size=fit_size, replace=False))


def _kmeanspp(p: Points, k: int, rng: np.random.Generator, metric: str) -> torch.Tensor:
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
    p: Points, labels: torch.Tensor, u: torch.Tensor, c: torch.Tensor, k: int
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
    p: Points, c: torch.Tensor, metric: str, max_iter: int, tol: float
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
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned after the loop
        labels, u = _nearest(p, c, metric, exact=False)
        labels, u, c = _repair_empty(p, labels, u, c, k)
        if prev is not None and torch.equal(labels, prev):
            break
        prev = labels
        c_new, _ = cluster_means(p, labels, k, c, metric, max_iter=_INNER_STEPS)
        if metric == "poincare":
            shift2 = float(_row_dist(c, c_new).square().sum())
        else:
            shift2 = float((c - c_new).square().sum())
        c = c_new
        if shift2 <= tol * float(_u_to_d2(u, metric).sum()) / n:
            break
    # float32 Lou steps jitter at ~1e-4 relative near the rim, where the
    # quadratic's discriminant cancels; the polish runs in float64.
    c, _ = cluster_means(p.double(), labels, k, c.double(), metric, max_iter=100)
    c = c.to(p.x.dtype)
    labels, u = _nearest(p, c, metric)
    labels, u, c = _repair_empty(p, labels, u, c, k)
    return c, labels, u, it


@dataclass
class Fit:
    """The best of the k-means runs of :func:`fit`, on its in-memory sample."""

    centroids: torch.Tensor  # (k, d)
    labels: torch.Tensor  # (n,) int64, on the fitted sample
    d2: torch.Tensor  # (n,) squared distance to own centroid
    inertia: float
    n_iter: int
    init_inertias: tuple[float, ...]


def fit(
    p: Points,
    k: int,
    *,
    metric: str,
    n_init: int,
    max_iter: int,
    tol: float,
    seeds: list[np.random.SeedSequence],
) -> Fit:
    """Best of ``n_init`` k-means++ + Lloyd runs on the in-memory sample ``p``.

    ``seeds[i]`` drives initialisation i, so the first run of ``n_init=4``
    equals the only run of ``n_init=1`` for the same parent seed.
    """
    best: Fit | None = None
    inertias = []
    for i in range(n_init):
        rng = np.random.default_rng(seeds[i])
        c0 = _kmeanspp(p, k, rng, metric)
        c, labels, u, n_iter = _lloyd(p, c0, metric, max_iter, tol)
        d2 = _u_to_d2(u, metric)
        inertia = float(d2.sum())
        inertias.append(inertia)
        if best is None or inertia < best.inertia:
            best = Fit(c, labels, d2, inertia, n_iter, ())
    best.init_inertias = tuple(inertias)
    return best


# --------------------------------------------------------------------------
# arrays larger than memory, batch by batch


def batches(n: int, batch_size: int):
    """(start, stop) of consecutive batches of at most ``batch_size`` out of ``n`` rows."""
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


def load(x, s: int, e: int, *, device, dtype, metric: str, name: str = "x") -> Points:
    """Rows s:e of ``x`` as checked, prepared points on ``device``."""
    xb = to_tensor(x[s:e], device=device, dtype=dtype)
    check_batch(xb, metric, name)
    return Points.make(xb, metric)


def assign(
    x,
    c: torch.Tensor,
    metric: str,
    batch_size: int,
    device: torch.device,
    *,
    repair: bool = False,
    name: str = "x",
) -> tuple[np.ndarray, float]:
    """Nearest centroid for all rows of ``x`` in batches; (labels int64, inertia).

    With ``repair`` an empty cluster afterwards takes the farthest point of a
    cluster that can spare one (see :func:`_fill_empty_full`).
    """
    labels, inertia = _assign_nearest(x, c, metric, batch_size, device, name)
    if repair:
        labels, inertia = _fill_empty_full(x, labels, inertia, c, metric, device)
    return labels, inertia


def _assign_nearest(
    x, c: torch.Tensor, metric: str, batch_size: int, device: torch.device, name: str
) -> tuple[np.ndarray, float]:
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    inertia = 0.0
    for s, e in batches(n, batch_size):
        pb = load(x, s, e, device=device, dtype=c.dtype, metric=metric, name=name)
        lab, u = _nearest(pb, c, metric)
        labels[s:e] = lab.cpu().numpy()
        inertia += float(_u_to_d2(u, metric).sum())
    return labels, inertia


def _fill_empty_full(x, labels, inertia, c, metric, device):
    """Empty-cluster repair after the full assignment.

    Only happens with duplicated points (the fit sample had every cluster
    filled, and its points are among these). Loads all points at once, which
    is acceptable for this degenerate case.
    """
    k = c.shape[0]
    if np.bincount(labels, minlength=k).min() > 0:
        return labels, inertia
    p = load(x, 0, x.shape[0], device=device, dtype=c.dtype, metric=metric)
    lab = torch.as_tensor(labels, device=device)
    lab, u, _ = _repair_empty(p, lab, _exact_u(p, c, lab, metric), c, k)
    return lab.cpu().numpy(), float(_u_to_d2(u, metric).sum())


def fit_sample(x, fit_size: int, rng: np.random.Generator, *, device, dtype, metric: str, name: str = "x"):
    """(indices or None, prepared points) of the seeded fitting subsample."""
    idx = _subsample(x.shape[0], fit_size, rng)
    if idx is None:
        sample = x
    else:
        sample = x[torch.as_tensor(idx, device=x.device) if isinstance(x, torch.Tensor) else idx]
    return idx, load(sample, 0, sample.shape[0], device=device, dtype=dtype, metric=metric, name=name)
