"""The numbers behind the Poincaré-disk view: which points to draw, where to look, density, selection.

Pure numpy (no Qt), so the heavy parts run in worker threads and stay testable.
A dense embedding has one point per voxel (16.7 million at 256³); the view
draws a random subsample of at most :data:`MAX_POINTS` on top of a density
image of all points, and a selection is evaluated on all points.

Embeddings often occupy a small part of the disk, for instance a thin band
near the rim where Euclidean distances are tiny but hyperbolic ones are not,
so every point set carries :attr:`DiskPoints.bounds`: the square window that
holds (almost) all of its points, which the view can zoom to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path as MplPath

from ..disk_plot import FULL_DISK, RIM_REACH, Bounds, disk_coordinates, fit_bounds, reaches_rim  # noqa: F401 - re-exported
from ..segmentation.binning import upsample_labels

#: Most points drawn (rasterised: the redraw cost does not grow with it).
MAX_POINTS = 50_000
#: Edge of the density image, in bins over the point set's bounds.
DENSITY_BINS = 200
_CHUNK = 4_000_000


@dataclass
class DiskPoints:
    """Points of one embedding on the unit disk, and the voxels they belong to.

    Attributes
    ----------
    shape : (3,) tuple
        Shape of the volume the voxels index into.
    index : (M,) int64
        Flat voxel index (into ``shape``) of each drawn point, sorted.
    xy : (M, 2) float32
        Disk coordinates of the drawn points.
    xy_all : (N, 2) float32
        Disk coordinates of every embedded voxel (N = prod(shape) for dense
        embeddings, M for live previews); ``all_index`` maps them to voxels.
    all_index : (N,) int64 or None
        Flat voxel index of each row of ``xy_all``; None when row i is voxel i.
    bounds : (x0, x1, y0, y1)
        Square window holding 99 % of the points or more (see :func:`fit_bounds`).
    density : (B, B) float32 or None
        log(1 + count) of all points per bin over ``bounds`` (x along axis 1),
        when only a subsample is drawn.
    live : bool
        A training preview rather than the final dense embedding.
    """

    shape: tuple[int, int, int]
    index: np.ndarray
    xy: np.ndarray
    xy_all: np.ndarray
    all_index: np.ndarray | None
    bounds: Bounds
    density: np.ndarray | None
    live: bool

    @property
    def n_total(self) -> int:
        return len(self.xy_all)

    def point_of(self, voxel: tuple[int, int, int]) -> np.ndarray | None:
        """Disk coordinates ``(2,)`` of one voxel, or None if it was not embedded."""
        flat = int(np.ravel_multi_index(voxel, self.shape))
        if self.all_index is None:
            return self.xy_all[flat]
        pos = int(np.searchsorted(self.all_index, flat))
        if pos < len(self.all_index) and self.all_index[pos] == flat:
            return self.xy_all[pos]
        return None


def to_disk(points: np.ndarray, *, hyperbolic: bool = True) -> np.ndarray:
    """``(N, 2)`` float32 disk coordinates of ``(N, d)`` latent points.

    Ball points go through :func:`disk_coordinates`. Euclidean latents (the
    ablation model) are projected on their two main axes and scaled so that
    99.5 % of them fall inside the disk.
    """
    points = np.asarray(points)
    if hyperbolic:
        return disk_coordinates(points).astype(np.float32)
    p = points.astype(np.float64)
    if p.shape[1] > 2:
        centred = p - p.mean(0)
        _, _, vt = np.linalg.svd(centred[:: max(1, len(p) // 20000)], full_matrices=False)
        p = centred @ vt[:2].T
    elif p.shape[1] == 1:
        p = np.column_stack([p[:, 0], np.zeros(len(p))])
    radius = float(np.percentile(np.linalg.norm(p, axis=1), 99.5)) if len(p) else 1.0
    return (p / (1.05 * radius if radius > 0 else 1.0)).astype(np.float32)


def from_preview(coords: np.ndarray, embedding: np.ndarray, shape, *, hyperbolic: bool = True) -> DiskPoints:
    """Disk points of a training preview: ``coords`` (N, 3) voxel indices, ``embedding`` (N, d)."""
    flat = np.ravel_multi_index(tuple(np.asarray(coords).T), tuple(shape))
    order = np.argsort(flat, kind="stable")
    xy = to_disk(np.asarray(embedding)[order], hyperbolic=hyperbolic)
    flat = flat[order]
    return DiskPoints(tuple(shape), flat, xy, xy, flat, fit_bounds(xy), None, live=True)


def from_dense(
    embedding: np.ndarray, *, hyperbolic: bool = True, max_points: int = MAX_POINTS, seed: int = 0
) -> DiskPoints:
    """Disk points of a dense ``(Z, Y, X, d)`` embedding: all points for selection, a subsample to draw."""
    shape = tuple(int(n) for n in embedding.shape[:3])
    flat_embedding = embedding.reshape(-1, embedding.shape[-1])
    if flat_embedding.shape[1] == 2 and hyperbolic:
        xy_all = flat_embedding.astype(np.float32, copy=False)  # a view: no copy of a big array
    else:
        # one projection for all voxels, so drawn points and selections agree
        xy_all = to_disk(flat_embedding, hyperbolic=hyperbolic)
    n = len(xy_all)
    bounds = fit_bounds(xy_all, seed=seed)
    if n > max_points:
        rng = np.random.default_rng(seed)
        index = np.unique(rng.integers(0, n, size=max_points))
        density = density_image(xy_all, bounds)
    else:
        index = np.arange(n)
        density = None
    return DiskPoints(shape, index, xy_all[index], xy_all, None, bounds, density, live=False)


def _pixels(xy: np.ndarray, bounds: Bounds, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row of each point in a ``size``² grid over ``bounds`` (points outside are clipped)."""
    x0, x1, y0, y1 = bounds
    col = np.clip(((xy[:, 0] - x0) * (size / (x1 - x0))).astype(np.int64), 0, size - 1)
    row = np.clip(((xy[:, 1] - y0) * (size / (y1 - y0))).astype(np.int64), 0, size - 1)
    return col, row


def density_image(xy: np.ndarray, bounds: Bounds = FULL_DISK, bins: int = DENSITY_BINS) -> np.ndarray:
    """log(1 + count) of points per bin over ``bounds``, rows = y (for ``imshow(origin="lower")``)."""
    counts = np.zeros(bins * bins, dtype=np.int64)
    for start in range(0, len(xy), _CHUNK):
        col, row = _pixels(xy[start : start + _CHUNK], bounds, bins)
        counts += np.bincount(row * bins + col, minlength=bins * bins)
    return np.log1p(counts.reshape(bins, bins)).astype(np.float32)


def rasterize(
    xy: np.ndarray, colors: np.ndarray, size: int, bounds: Bounds = FULL_DISK, *, point: int = 2
) -> np.ndarray:
    """Draw points as ``point``-pixel squares into a ``(size, size, 4)`` RGBA image over ``bounds``.

    One image instead of one marker per point: the canvas then redraws in
    constant time whatever the number of points (a matplotlib scatter of
    50k individually coloured markers takes ~0.3 s to render).
    Rows are y (``imshow(origin="lower")``); later points are drawn on top.
    """
    image = np.zeros((size, size, 4), dtype=np.float32)
    if not len(xy):
        return image
    col, row = _pixels(np.asarray(xy), bounds, size)
    for dy in range(point):
        for dx in range(point):
            image[np.minimum(row + dy, size - 1), np.minimum(col + dx, size - 1)] = colors
    return image


def inside(xy: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Boolean mask ``(N,)``: which points lie inside the polygon ``vertices`` (V, 2)."""
    vertices = np.asarray(vertices, dtype=float)
    mask = np.zeros(len(xy), dtype=bool)
    if len(vertices) < 3:
        return mask
    path = MplPath(vertices)
    lo, hi = vertices.min(0), vertices.max(0)
    for start in range(0, len(xy), _CHUNK):
        part = xy[start : start + _CHUNK]
        # the bounding box test is cheap and rejects most points before the exact test
        box = np.flatnonzero(np.all((part >= lo) & (part <= hi), axis=1))
        if len(box):
            mask[start + box] = path.contains_points(part[box])
    return mask


def selection_mask(points: DiskPoints, vertices: np.ndarray, *, binning: int = 1, shape=None) -> np.ndarray:
    """``(Z, Y, X)`` uint8 volume, 1 at the voxels whose point lies inside the polygon.

    With ``binning > 1`` the points belong to binned voxels; the mask is
    upsampled (nearest) to the full-resolution ``shape``.
    """
    hit = inside(points.xy_all, vertices)
    mask = np.zeros(int(np.prod(points.shape)), dtype=np.uint8)
    rows = np.flatnonzero(hit)
    mask[rows if points.all_index is None else points.all_index[rows]] = 1
    mask = mask.reshape(points.shape)
    return upsample_labels(mask, binning, shape) if binning > 1 else mask
