"""Per-cluster statistics of a label volume: size, physical volume, intensity, bounding box.

One row per cluster id; the Clusters widget shows them as a table for the
current level and writes them as CSV, and the same two functions serve a
command line (``cluster_statistics`` then ``write_statistics_csv``).

The volume is read in slabs along z, so memory stays bounded on large
(possibly memory-mapped) tomograms; means and standard deviations are merged
across slabs with the pairwise update of Chan, Golub & LeVeque, which keeps
float64 precision even when the mean is large compared to the spread.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import UserError
from ..io.atomic import atomic_path
from ..io.slabs import SLAB_VOXELS, z_slabs

#: voxels per slab (the tests make it small to merge many slabs)
_SLAB_VOXELS = SLAB_VOXELS

CSV_COLUMNS = (
    "cluster",
    "voxels",
    "volume",
    "mean_intensity",
    "sd_intensity",
    "z_min",
    "y_min",
    "x_min",
    "z_max",
    "y_max",
    "x_max",
)


@dataclass(frozen=True)
class ClusterStats:
    """Statistics of one cluster.

    Attributes
    ----------
    cluster : int
        The label id.
    voxels : int
        Number of voxels with this id.
    volume : float
        ``voxels`` times the volume of one voxel, in cubed units of ``voxel_size``.
    mean, sd : float
        Mean and (population) standard deviation of the image over the
        cluster's finite voxels; NaN when it has none.
    bbox_min, bbox_max : (3,) tuple of int
        Smallest and largest voxel index (z, y, x) of the cluster, both inclusive.
    """

    cluster: int
    voxels: int
    volume: float
    mean: float
    sd: float
    bbox_min: tuple[int, int, int]
    bbox_max: tuple[int, int, int]

    def as_csv_row(self) -> list:
        return [
            self.cluster,
            self.voxels,
            f"{self.volume:.6g}",
            f"{self.mean:.6g}",
            f"{self.sd:.6g}",
            *self.bbox_min,
            *self.bbox_max,
        ]


def cluster_statistics(
    labels: np.ndarray,
    image: np.ndarray | None,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    include_zero: bool = False,
) -> list[ClusterStats]:
    """Statistics of every cluster id present in ``labels``, in increasing id order.

    Parameters
    ----------
    labels : (Z, Y, X) array of non-negative int
        Cluster id per voxel.
    image : (Z, Y, X) array or None
        The intensities, on the same grid as ``labels`` (None: mean and sd are NaN).
    voxel_size : (3,) sequence of float
        Physical size of a voxel along (z, y, x); the volume of a cluster is
        its voxel count times their product.
    include_zero : bool, optional
        Also report id 0 (by napari's convention "no label"; hypseg clusters
        start at 1).

    Returns
    -------
    list of ClusterStats

    Examples
    --------
    >>> labels = np.array([[[1, 1], [2, 0]]])
    >>> image = np.array([[[1.0, 3.0], [5.0, 9.0]]])
    >>> [(r.cluster, r.voxels, r.volume, r.mean, r.sd) for r in cluster_statistics(labels, image, (2, 1, 1))]
    [(1, 2, 4.0, 2.0, 1.0), (2, 1, 2.0, 5.0, 0.0)]
    """
    # array-likes with a shape (memory maps, dask and zarr arrays) are read slab by slab below, never whole
    labels = labels if hasattr(labels, "shape") and hasattr(labels, "dtype") else np.asarray(labels)
    if image is not None and not hasattr(image, "shape"):
        image = np.asarray(image)
    if labels.ndim != 3:
        raise UserError(f"expected a 3D label volume, got shape {labels.shape}")
    if image is not None and image.shape != labels.shape:
        raise UserError(f"labels {labels.shape} and image {image.shape} must have the same shape")
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"labels must be integers, got {labels.dtype}")
    voxel_size = tuple(float(v) for v in voxel_size)
    if len(voxel_size) != 3 or not all(math.isfinite(v) and v > 0 for v in voxel_size):
        raise UserError(f"voxel_size must be three positive numbers, got {voxel_size}")
    if labels.size == 0:
        return []

    n_ids = 0
    count = np.zeros(0, dtype=np.int64)
    finite_n = np.zeros(0, dtype=np.int64)
    mean = np.zeros(0)
    m2 = np.zeros(0)
    lo = np.zeros((0, 3), dtype=np.int64)
    hi = np.zeros((0, 3), dtype=np.int64)

    def grow(size: int) -> None:
        nonlocal n_ids, count, finite_n, mean, m2, lo, hi
        if size <= n_ids:
            return
        extra = size - n_ids
        count = np.concatenate([count, np.zeros(extra, dtype=np.int64)])
        finite_n = np.concatenate([finite_n, np.zeros(extra, dtype=np.int64)])
        mean = np.concatenate([mean, np.zeros(extra)])
        m2 = np.concatenate([m2, np.zeros(extra)])
        lo = np.concatenate([lo, np.full((extra, 3), np.iinfo(np.int64).max, dtype=np.int64)])
        hi = np.concatenate([hi, np.full((extra, 3), -1, dtype=np.int64)])
        n_ids = size

    for z in z_slabs(labels.shape, _SLAB_VOXELS):
        z0 = z.start
        lab = np.asarray(labels[z])
        if lab.min() < 0:
            raise UserError("labels must be non-negative")
        size = int(lab.max()) + 1
        grow(size)
        flat = lab.ravel()
        count[:size] += np.bincount(flat, minlength=size)

        # bounding boxes: which ids occur in each z plane, y row and x column of the slab
        for axis in range(3):
            for index in range(lab.shape[axis]):
                present = np.flatnonzero(np.bincount(np.take(lab, index, axis=axis).ravel(), minlength=size))
                position = index + (z0 if axis == 0 else 0)
                lo[present, axis] = np.minimum(lo[present, axis], position)
                hi[present, axis] = np.maximum(hi[present, axis], position)

        if image is None:
            continue
        values = np.asarray(image[z], dtype=np.float64).ravel()
        finite = np.isfinite(values)
        ids = flat if finite.all() else flat[finite]
        values = values if finite.all() else values[finite]
        n_b = np.bincount(ids, minlength=size).astype(np.int64)
        sum_b = np.bincount(ids, weights=values, minlength=size)
        mean_b = np.divide(sum_b, n_b, out=np.zeros(size), where=n_b > 0)
        m2_b = np.bincount(ids, weights=(values - mean_b[ids]) ** 2, minlength=size)
        # merge (n_a, mean_a, m2_a) with the slab's (n_b, mean_b, m2_b)
        n_a = finite_n[:size]
        n = n_a + n_b
        delta = mean_b - mean[:size]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(n > 0, n_b / np.maximum(n, 1), 0.0)
            m2[:size] += m2_b + delta**2 * n_a * share
        mean[:size] += delta * share
        finite_n[:size] = n

    voxel_volume = float(np.prod(voxel_size))
    rows = []
    for cluster in np.flatnonzero(count):
        if cluster == 0 and not include_zero:
            continue
        n = int(finite_n[cluster])
        rows.append(
            ClusterStats(
                cluster=int(cluster),
                voxels=int(count[cluster]),
                volume=int(count[cluster]) * voxel_volume,
                mean=float(mean[cluster]) if n else float("nan"),
                sd=float(math.sqrt(max(m2[cluster], 0.0) / n)) if n else float("nan"),
                bbox_min=tuple(int(v) for v in lo[cluster]),
                bbox_max=tuple(int(v) for v in hi[cluster]),
            )
        )
    return rows


def csv_header(unit: str | None = None) -> list[str]:
    """Column names; the volume column carries the cubed unit when one is known (``volume (Å³)``)."""
    header = list(CSV_COLUMNS)
    if unit:
        header[2] = f"volume ({unit}³)"
    return header


def write_statistics_csv(path: str | os.PathLike, rows: Sequence[ClusterStats], *, unit: str | None = None) -> Path:
    """Write ``rows`` as a CSV file (UTF-8, one header line), atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(csv_header(unit))
            writer.writerows(row.as_csv_row() for row in rows)
    return path
