"""Label volumes at every level of granularity k_min .. k_max, ready to switch instantly.

Two modes:

``"nested"`` (default) — divisive (bisecting) Poincaré k-means.
    Level ``k_min`` is ordinary Poincaré k-means, identical to flat mode's
    level ``k_min`` for the same seed (so level 2 is the flat k = 2
    clustering). Each next level splits one cluster in two with a
    2-means inside it, choosing the cluster whose split lowers the total
    within-cluster squared hyperbolic distance the most. Why this
    construction:

    * coarse levels carry the largest, most reliable distinctions and are
      never distorted by the fine ones (agglomerating a k_max clustering
      would make level 2 a union of fine cells rather than a 2-means
      optimum);
    * every cluster of level k+1 lies inside one cluster of level k by
      construction, and a voxel's label at every level comes from one
      descent through the tree of splits (the same rule on the fitting
      sample and on every voxel);
    * ids are stable: going from k to k+1 one cluster splits, its larger
      part keeps the id and the other part gets id k+1, so colours persist
      in napari as the user moves through the levels;
    * the greedy criterion is the k-means objective itself, measured with
      the ball's distance, and each step costs one 2-means per new cluster.

    Storage: the finest labels once (uint8, or uint16 above 255 clusters)
    plus a (k_max + 1,) lookup table per level; ``labels(k)`` is one
    chunked table lookup: O(N) byte reads and writes, no clustering.

``"flat"`` — independent Poincaré k-means per k (the papers' evaluation
    protocol). Levels are not nested; ids are matched level to level by the
    Hungarian algorithm on the overlap (fitting sample) so colours stay as
    stable as the clusterings allow. Storage: one label array per level
    (``len(k_values) * N`` bytes: 252 MB for 15 levels at 256^3).

Fitting always uses one seeded subsample of ``fit_size`` voxels; all voxels
are then labelled in batches in a single pass over the embedding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from napari_hypseg._errors import UserError
from napari_hypseg.segment_config import SegmentConfig
from napari_hypseg.segmentation import kmeans_engine as engine

__all__ = ["Hierarchy", "build_hierarchy"]

MODES = ("nested", "flat")
#: modes whose levels are stored one label array per level (ids matched level to level)
PER_LEVEL_MODES = ("flat", "mixture")

# voxels per np.take call in labels(): small enough that the intp copy of
# the indices stays in cache, which makes the lookup ~2x faster than one call
_LUT_CHUNK = 1 << 18


class Hierarchy:
    """Labels of a volume at levels ``k_values``, built by :func:`build_hierarchy`.

    Attributes
    ----------
    k_values : list of int
        The levels, consecutive from k_min to k_max.
    mode : {"nested", "flat"}
    metric : {"poincare", "euclidean"}
    shape : tuple of int
        Spatial shape of the label volumes.
    """

    def __init__(
        self,
        *,
        mode: str,
        metric: str,
        shape: tuple[int, ...],
        centroids: dict[int, np.ndarray],
        fine: np.ndarray | None = None,
        split_parent: np.ndarray | None = None,
        flat_labels: dict[int, np.ndarray] | None = None,
    ) -> None:
        self._mode = mode
        self._metric = metric
        self._shape = tuple(shape)
        self._centroids = centroids
        self._k_values = sorted(centroids)
        self._fine = fine
        self._split_parent = split_parent
        self._flat = flat_labels
        self._luts: dict[int, np.ndarray] = {}  # level -> fine id to level id, made on demand

    # ----------------------------------------------------------------- info
    @property
    def k_values(self) -> list[int]:
        return list(self._k_values)

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def nbytes(self) -> int:
        """Memory held by the label arrays."""
        if self._mode not in PER_LEVEL_MODES:
            return int(self._fine.nbytes)
        return int(sum(a.nbytes for a in self._flat.values()))

    def __repr__(self) -> str:
        ks = self._k_values
        return f"Hierarchy(mode={self._mode!r}, metric={self._metric!r}, shape={self._shape}, k={ks[0]}..{ks[-1]})"

    def _check_k(self, k: int) -> int:
        if k not in self._centroids:
            raise UserError(
                f"level k={k} was not computed; available levels are {self._k_values[0]}..{self._k_values[-1]}"
            )
        return int(k)

    # ---------------------------------------------------------------- access
    def labels(self, k: int) -> np.ndarray:
        """Label volume at level ``k``, ids 1..k (0 never used), a new array.

        O(N): one lookup per voxel (nested) or one copy (flat).
        """
        k = self._check_k(k)
        if self._mode in PER_LEVEL_MODES:
            return self._flat[k].copy()
        if k == self._k_values[-1]:
            return self._fine.copy()
        lut = self._lut(k)
        src = self._fine.reshape(-1)
        out = np.empty_like(src)
        for s, e in engine.batches(src.size, _LUT_CHUNK):
            np.take(lut, src[s:e], out=out[s:e])
        return out.reshape(self._shape)

    def take(self, index: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Hierarchy:
        """The hierarchy at the voxels ``np.ix_(*index)`` (e.g. nearest neighbours on another grid)."""
        ix = np.ix_(*index)
        shape = tuple(len(i) for i in index)
        if self._mode in PER_LEVEL_MODES:
            return Hierarchy(
                mode=self._mode,
                metric=self._metric,
                shape=shape,
                centroids=self._centroids,
                flat_labels={k: v[ix] for k, v in self._flat.items()},
            )
        return Hierarchy(
            mode=self._mode,
            metric=self._metric,
            shape=shape,
            centroids=self._centroids,
            fine=self._fine[ix],
            split_parent=self._split_parent,
        )

    def _lut(self, k: int) -> np.ndarray:
        """(k_max + 1,) table from finest ids to their ancestors at level k."""
        if k not in self._luts:
            lut = np.arange(self._k_values[-1] + 1)
            # ids above k were created after level k: climb to their parents
            # (always smaller ids) until every entry is a level-k id
            while (above := lut > k).any():
                lut[above] = self._split_parent[lut[above]]
            self._luts[k] = lut.astype(self._fine.dtype)
        return self._luts[k]

    def centroids(self, k: int) -> np.ndarray:
        """(k, d) centroids of level ``k``; row i is label id i + 1."""
        return self._centroids[self._check_k(k)].copy()

    def parent(self, k: int) -> np.ndarray:
        """Lookup table from level k+1 ids to their parent ids at level k.

        Returns an int array ``p`` of shape (k + 2,) with ``p[0] = 0``, so
        that ``p[labels(k + 1)] == labels(k)``. Only for nested hierarchies;
        ids 1..k map to themselves, id k+1 to the cluster that split.
        """
        if self._mode != "nested":
            raise UserError(f"{self._mode} levels are independent clusterings: they have no parents")
        k = self._check_k(k)
        if k + 1 not in self._centroids:
            raise UserError(f"level k={k} is the finest level; it has no children")
        p = np.arange(k + 2, dtype=np.int64)
        p[k + 1] = self._split_parent[k + 1]
        return p


# ------------------------------------------------------------------ building


def _size_order(labels: torch.Tensor, k: int) -> np.ndarray:
    """Cluster indices sorted by size, largest first (ties: lower index first)."""
    counts = torch.bincount(labels, minlength=k).cpu().numpy()
    return np.argsort(-counts, kind="stable")


def _relabel(perm_to_id: np.ndarray, labels: torch.Tensor, c: torch.Tensor):
    """Apply ids: cluster j becomes id perm_to_id[j] (0-based)."""
    mapping = torch.as_tensor(perm_to_id, device=labels.device)
    order = np.argsort(perm_to_id)
    return mapping[labels], c[torch.as_tensor(order, device=c.device)]


def _seq(seed: int, *key: int) -> np.random.SeedSequence:
    """An independent seed stream per role (subsample, level, split proposal)."""
    return np.random.SeedSequence(seed, spawn_key=key)


def _build_nested(pts: engine.Points, ks, *, metric, seed, fit_kw, progress, total):
    k_min, k_max = ks[0], ks[-1]
    # same seed stream as flat mode's level k_min: the two modes share that level exactly
    root = _kmeans(pts, k_min, metric, fit_kw, _seq(seed, 1, k_min))
    ids = np.empty(k_min, dtype=np.int64)
    ids[_size_order(root.labels, k_min)] = np.arange(k_min)
    labels, root_c = _relabel(ids, root.labels, root.centroids)
    centroids = list(root_c)
    sse = [float(root.d2[labels == j].sum()) for j in range(k_min)]
    levels = {k_min: torch.stack(centroids)}
    splits = []  # (parent id, new id, (2, d) centroids [kept part, new part]), 0-based
    split_parent = np.zeros(k_max + 1, dtype=np.int64)
    proposals: dict[int, tuple] = {}
    done = 1
    if progress:
        progress(done, total)

    def propose(j: int, key: tuple[int, ...]):
        members = torch.nonzero(labels == j).flatten()
        if members.numel() < 2:
            return (-np.inf, members, None)
        f = _kmeans(pts.subset(members), 2, metric, fit_kw, _seq(seed, *key))
        return (sse[j] - f.inertia, members, f)

    for j in range(k_min):
        proposals[j] = None
    for k in range(k_min, k_max):
        for j, prop in proposals.items():
            if prop is None:
                proposals[j] = propose(j, (2, k, j))
        gains = [proposals[j][0] for j in range(k)]
        j = int(np.argmax(gains))
        gain, members, f = proposals[j]
        if f is None:
            raise UserError(
                f"cannot split the volume into {k + 1} clusters: too few distinct embeddings (lower k_max or fit_size)"
            )
        counts = torch.bincount(f.labels, minlength=2)
        keep = 0 if counts[0] >= counts[1] else 1
        moved = f.labels != keep
        labels[members[moved]] = k
        centroids[j] = f.centroids[keep]
        centroids.append(f.centroids[1 - keep])
        sse[j] = float(f.d2[~moved].sum())
        sse.append(float(f.d2[moved].sum()))
        splits.append((j, k, torch.stack([f.centroids[keep], f.centroids[1 - keep]])))
        split_parent[k + 1] = j + 1
        levels[k + 1] = torch.stack(centroids)
        proposals[j] = None
        proposals[k] = None
        done += 1
        if progress:
            progress(done, total)
    return root_c, splits, split_parent, levels


def _kmeans(pts: engine.Points, k: int, metric: str, fit_kw: dict, seq: np.random.SeedSequence):
    return engine.fit(pts, k, metric=metric, seeds=seq.spawn(fit_kw["n_init"]), **fit_kw)


def _build_flat(pts: engine.Points, ks, *, metric, seed, fit_kw, progress, total):
    levels = {}
    prev = None  # previous level's labels on the sample, ids 0 .. k - 2
    for done, k in enumerate(ks, start=1):
        f = _kmeans(pts, k, metric, fit_kw, _seq(seed, 1, k))
        ids = np.full(k, -1, dtype=np.int64)
        if prev is None:
            ids[_size_order(f.labels, k)] = np.arange(k)
        else:
            kp = k - 1
            table = torch.zeros(kp * k, dtype=torch.int64, device=f.labels.device)
            table.index_add_(0, prev * k + f.labels, torch.ones_like(prev))
            rows, cols = linear_sum_assignment(table.view(kp, k).cpu().numpy(), maximize=True)
            ids[cols] = rows
            rest = [j for j in _size_order(f.labels, k) if ids[j] < 0]
            ids[rest] = np.arange(kp, kp + len(rest))
        labels, cents = _relabel(ids, f.labels, f.centroids)
        levels[k] = cents
        prev = labels
        if progress:
            progress(done, total)
    return levels


def build_hierarchy(
    embedding,
    *,
    k_min: int = SegmentConfig.k_min,
    k_max: int = SegmentConfig.k_max,
    mode: str = "nested",
    metric: str = "poincare",
    seed: int = 0,
    fit_size: int = 200_000,
    n_init: int = 4,
    max_iter: int = 100,
    tol: float = 1e-4,
    device=None,
    batch_size: int = 1_000_000,
    progress: Callable[[int, int], None] | None = None,
) -> Hierarchy:
    """Cluster a dense embedding at every level k_min..k_max.

    Parameters
    ----------
    embedding : (..., d) float array or tensor, e.g. (Z, Y, X, d)
        One embedding per voxel (inside the unit ball for
        ``metric="poincare"``). Memory maps are read in batches; never modified.
    k_min, k_max : int
        Levels to compute, 1 <= k_min <= k_max <= 65535.
    mode : {"nested", "flat"}
        See the module docstring.
    metric : {"poincare", "euclidean"}
        Euclidean for embeddings of a Euclidean model (arithmetic-mean centroids).
    seed : int
        Makes the result reproducible (exactly, on CPU).
    fit_size : int
        Voxels sampled (seeded) to fit the centroids.
    n_init, max_iter, tol :
        As in :func:`~napari_hypseg.segmentation.poincare_kmeans`, for
        every k-means and every 2-means split.
    device : str or torch.device, optional
        Where to compute; default the tensor's device, CPU for arrays.
    batch_size : int
        Voxels per batch when labelling the whole volume.
    progress : callable(done, total), optional
        Called after each fitted level and after the labelling pass
        (``total = len(k_values) + 1``). Raise from it to cancel.

    Returns
    -------
    Hierarchy

    Notes
    -----
    Cost. Nested: one k_min-means plus about ``k_min + 2 (k_max - k_min)``
    2-means fits on subsets of the sample, then one pass over the N voxels
    with O(k_min + number of splits) work per voxel. Flat: one k-means per
    level on the sample, then one pass with O(sum of k) work per voxel.
    """
    if mode not in MODES:
        raise UserError(f"mode must be one of {MODES}, got {mode!r}")
    if embedding.ndim < 2:
        raise UserError(f"expected an embedding of shape (..., d) such as (Z, Y, X, d), got {tuple(embedding.shape)}")
    if not (1 <= k_min <= k_max <= 65535):
        raise UserError(f"need 1 <= k_min <= k_max <= 65535, got k_min={k_min}, k_max={k_max}")
    shape = tuple(int(s) for s in embedding.shape[:-1])
    n = int(np.prod(shape))
    x = embedding.reshape(n, embedding.shape[-1])
    engine.check_fit_arguments(
        x,
        k_max,
        metric=metric,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        fit_size=fit_size,
        batch_size=batch_size,
        name="embedding",
        rows="voxels",
        k_name="k_max",
    )

    device, dtype = engine.placement(x, device)
    ks = list(range(k_min, k_max + 1))
    total = len(ks) + 1
    fit_kw = {"n_init": n_init, "max_iter": max_iter, "tol": tol}
    _, pts = engine.fit_sample(
        x,
        fit_size,
        np.random.default_rng(_seq(seed, 0)),
        device=device,
        dtype=dtype,
        metric=metric,
        name="embedding",
    )
    label_dtype = np.uint8 if k_max <= 255 else np.uint16

    if mode == "nested":
        root_c, splits, split_parent, levels = _build_nested(
            pts, ks, metric=metric, seed=seed, fit_kw=fit_kw, progress=progress, total=total
        )
        fine = np.empty(n, dtype=label_dtype)
        for s, e in engine.batches(n, batch_size):
            pb = engine.load(x, s, e, device=device, dtype=dtype, metric=metric, name="embedding")
            lab = engine.nearest_labels(pb, root_c, metric)
            for parent, new, pair in splits:
                members = torch.nonzero(lab == parent).flatten()
                if members.numel():
                    side = engine.nearest_labels(pb.subset(members), pair, metric)
                    lab[members[side == 1]] = new
            fine[s:e] = (lab + 1).cpu().numpy()
        hierarchy = Hierarchy(
            mode=mode,
            metric=metric,
            shape=shape,
            centroids={k: c.cpu().numpy() for k, c in levels.items()},
            fine=fine.reshape(shape),
            split_parent=split_parent,
        )
    else:
        levels = _build_flat(pts, ks, metric=metric, seed=seed, fit_kw=fit_kw, progress=progress, total=total)
        flat = {k: np.empty(n, dtype=label_dtype) for k in ks}
        for s, e in engine.batches(n, batch_size):
            pb = engine.load(x, s, e, device=device, dtype=dtype, metric=metric, name="embedding")
            for k in ks:
                flat[k][s:e] = (engine.nearest_labels(pb, levels[k], metric) + 1).cpu().numpy()
        hierarchy = Hierarchy(
            mode=mode,
            metric=metric,
            shape=shape,
            centroids={k: c.cpu().numpy() for k, c in levels.items()},
            flat_labels={k: a.reshape(shape) for k, a in flat.items()},
        )
    if progress:
        progress(total, total)
    return hierarchy
