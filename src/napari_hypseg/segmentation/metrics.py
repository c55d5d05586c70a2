"""Scores of an unsupervised segmentation against ground truth.

* :func:`dice_scores` — clusters carry arbitrary ids, so each ground-truth
  class is matched to at most one cluster by the Hungarian algorithm
  maximising Dice, and the mean Dice over classes is reported (an unmatched
  class, possible when there are fewer clusters than classes, scores 0), as
  in Hsu et al. 2021 and Tursynbek & Niethammer 2023. When there are at
  least as many clusters as classes this equals the authors' "mean over
  matched pairs".
* :func:`hausdorff95` — the 95th-percentile symmetric surface distance of
  two binary masks in physical units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from napari_hypseg._errors import UserError

__all__ = ["DiceResult", "dice_scores", "hausdorff95"]

# voxels per bincount chunk: bounds the int64 temporaries to ~100 MB
_CHUNK = 1 << 22


@dataclass
class DiceResult:
    """Outcome of :func:`dice_scores`.

    Attributes
    ----------
    mean : float
        Mean Dice over the ground-truth classes (unmatched classes count 0).
    per_class : dict
        Ground-truth label -> Dice of its matched cluster (0.0 if unmatched).
    matching : dict
        Ground-truth label -> the predicted label matched to it (matched
        classes only).
    """

    mean: float
    per_class: dict[int, float] = field(default_factory=dict)
    matching: dict[int, int] = field(default_factory=dict)


def _check_int_volume(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a.view(np.uint8)  # as indices, not masks
    if not np.issubdtype(a.dtype, np.integer):
        raise UserError(f"{name} must hold integer labels, got dtype {a.dtype}")
    return a


def _index(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(values present, lookup table value -> compact index) for a label array.

    Small non-negative labels (the usual case) use a lookup table; other
    labels return ``None`` and are compacted with ``np.unique`` instead.
    """
    if a.size == 0:
        return np.empty(0, dtype=np.int64), None
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= 1 << 20:
        return np.unique(a), None
    present = np.zeros(hi + 1, dtype=bool)
    flat = a.reshape(-1)
    for s in range(0, flat.size, _CHUNK):
        present[flat[s : s + _CHUNK]] = True
    values = np.flatnonzero(present)
    lut = np.full(hi + 1, -1, dtype=np.int64)
    lut[values] = np.arange(values.size)
    return values, lut


def _confusion(pred: np.ndarray, gt: np.ndarray):
    """Counts[i, j] of voxels with gt value g_vals[i] and pred value p_vals[j]."""
    g_vals, g_lut = _index(gt)
    p_vals, p_lut = _index(pred)
    ng, npr = g_vals.size, p_vals.size
    if g_lut is None or p_lut is None:  # rare: negative or huge ids
        g_idx = np.searchsorted(g_vals, gt.reshape(-1))
        p_idx = np.searchsorted(p_vals, pred.reshape(-1))
        counts = np.bincount(g_idx * npr + p_idx, minlength=ng * npr)
        return g_vals, p_vals, counts.reshape(ng, npr)
    counts = np.zeros(ng * npr, dtype=np.int64)
    g_flat, p_flat = gt.reshape(-1), pred.reshape(-1)
    for s in range(0, g_flat.size, _CHUNK):
        combined = g_lut[g_flat[s : s + _CHUNK]] * npr + p_lut[p_flat[s : s + _CHUNK]]
        counts += np.bincount(combined, minlength=ng * npr)
    return g_vals, p_vals, counts.reshape(ng, npr)


def dice_scores(pred, gt, *, ignore_gt: int | Iterable[int] | None = None) -> DiceResult:
    """Dice of a clustering against ground truth after Hungarian matching.

    Parameters
    ----------
    pred : (Z, Y, X) int array
        Predicted labels (cluster ids, any integers).
    gt : (Z, Y, X) int array
        Ground-truth classes, same shape.
    ignore_gt : int or iterable of int, optional
        Ground-truth labels whose voxels are left out entirely (e.g. an
        "unlabelled" value). By default every class counts, background included.

    Returns
    -------
    DiceResult
        Classes are the ground-truth labels present in ``gt`` (minus
        ``ignore_gt``).

    Notes
    -----
    Dice(i, j) = 2 |G_i ∩ P_j| / (|G_i| + |P_j|) for every (class, cluster)
    pair from one confusion matrix (a chunked ``np.bincount`` over combined
    ids: O(N) time, O(classes * clusters) memory), then
    ``scipy.optimize.linear_sum_assignment`` maximising total Dice.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[0, 0, 1, 1]])
    >>> dice_scores(np.array([[5, 5, 2, 2]]), gt).mean
    1.0
    """
    pred = _check_int_volume(pred, "pred")
    gt = _check_int_volume(gt, "gt")
    if pred.shape != gt.shape:
        raise UserError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    if ignore_gt is not None:
        ignore = list(ignore_gt) if isinstance(ignore_gt, Iterable) else [ignore_gt]
        keep = ~np.isin(gt, ignore)
        pred, gt = pred[keep], gt[keep]
    if gt.size == 0:
        raise UserError("no ground-truth voxels left to score (empty volume or everything ignored)")

    g_vals, p_vals, counts = _confusion(pred, gt)
    g_size = counts.sum(1)
    p_size = counts.sum(0)
    dice = 2.0 * counts / (g_size[:, None] + p_size[None, :])
    rows, cols = linear_sum_assignment(dice, maximize=True)
    per_class = {int(g): 0.0 for g in g_vals}
    matching = {}
    for r, c in zip(rows, cols):
        per_class[int(g_vals[r])] = float(dice[r, c])
        matching[int(g_vals[r])] = int(p_vals[c])
    return DiceResult(float(np.mean(list(per_class.values()))), per_class, matching)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (or on the array border)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def hausdorff95(pred_mask, gt_mask, spacing=(1.0, 1.0, 1.0)) -> float:
    """95th-percentile Hausdorff distance between two binary masks, in physical units.

    For every surface voxel of each mask, the distance to the nearest surface
    voxel of the other (voxel centres, Euclidean, scaled by ``spacing``);
    the result is the larger of the two directed 95th percentiles, the
    robust counterpart of the Hausdorff distance max(h(A, B), h(B, A)).

    Parameters
    ----------
    pred_mask, gt_mask : (Z, Y, X) bool arrays
        Same shape; any array is read as ``!= 0``.
    spacing : sequence of float
        Physical voxel size along each axis (e.g. ``Volume.spacing``).

    Returns
    -------
    float
        0.0 for identical masks and for two empty masks; ``inf`` when
        exactly one mask is empty (nothing to compare a surface to).

    Notes
    -----
    Works on the bounding box of both masks (plus one voxel), with two
    Euclidean distance transforms (``scipy.ndimage.distance_transform_edt``,
    exact, O(box voxels)).
    """
    a = np.asarray(pred_mask) != 0
    b = np.asarray(gt_mask) != 0
    if a.shape != b.shape:
        raise UserError(f"mask shapes differ: {a.shape} and {b.shape}")
    spacing = tuple(float(s) for s in np.atleast_1d(spacing))
    if len(spacing) != a.ndim or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise UserError(f"spacing must give one positive voxel size per axis ({a.ndim}), got {spacing}")
    has_a, has_b = bool(a.any()), bool(b.any())
    if not has_a and not has_b:
        return 0.0
    if not has_a or not has_b:
        return float("inf")

    # Crop to the union's bounding box plus a one-voxel margin: every surface
    # voxel lies inside, so the distance transforms are unchanged.
    coords = np.nonzero(a | b)
    box = tuple(slice(max(int(c.min()) - 1, 0), min(int(c.max()) + 2, n)) for c, n in zip(coords, a.shape))
    a, b = a[box], b[box]
    sa, sb = _surface(a), _surface(b)
    d_ab = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    d_ba = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))
