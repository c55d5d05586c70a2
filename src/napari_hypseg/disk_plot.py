"""Static Poincaré-disk pictures of voxel embeddings (matplotlib's Agg canvas: no Qt, no display).

The framing (:func:`fit_bounds`) is the one the napari disk view uses for
"zoom to points", so ``hypseg demo``'s pictures and the widget agree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: A window as (x0, x1, y0, y1) in disk coordinates.
Bounds = tuple[float, float, float, float]
#: The whole disk with a small margin.
FULL_DISK: Bounds = (-1.04, 1.04, -1.04, 1.04)
#: A zoom window whose far corner is this far from the centre would cut the rim (1.0) or nearly touch it.
RIM_REACH = 0.98
_BOUNDS_SAMPLE = 200_000


def fit_bounds(xy: np.ndarray, *, seed: int = 0) -> Bounds:
    """The square window over the 0.5–99.5 percentile box of the points, padded by 10 %.

    Never larger than :data:`FULL_DISK`; never smaller than 1e-4 across, so a
    fully collapsed embedding still gets a window. A window that would cut the
    unit circle (:func:`reaches_rim`) becomes the whole disk.
    """
    xy = np.asarray(xy)
    if not len(xy):
        return FULL_DISK
    sample = xy if len(xy) <= _BOUNDS_SAMPLE else xy[np.random.default_rng(seed).integers(0, len(xy), _BOUNDS_SAMPLE)]
    lo, hi = np.percentile(sample, [0.5, 99.5], axis=0)
    centre = (lo + hi) / 2.0
    half = max(float((hi - lo).max()) * 0.55, 5e-5)
    if half >= FULL_DISK[1] * 0.8 or reaches_rim(centre, half):
        return FULL_DISK
    return (float(centre[0] - half), float(centre[0] + half), float(centre[1] - half), float(centre[1] + half))


def reaches_rim(centre, half: float) -> bool:
    """Whether the square window ``centre ± half`` would cut the unit circle.

    Such a window shows an arc of the rim at best, so the disk looks like a
    half-plane and points near the rim lose their context: the whole disk is
    shown instead.
    """
    far = np.hypot(abs(float(centre[0])) + half, abs(float(centre[1])) + half)
    return bool(far >= RIM_REACH)


def disk_coordinates(embedding: np.ndarray) -> np.ndarray:
    """2D disk coordinates of ``(N, d)`` ball points: as is for d = 2, else the top-2 principal
    directions of their tangent vectors at the origin, mapped back onto the disk."""
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.shape[1] == 2:
        return embedding
    if embedding.shape[1] == 1:
        return np.column_stack([embedding[:, 0], np.zeros(len(embedding))])
    norm = np.linalg.norm(embedding, axis=1, keepdims=True).clip(1e-12, 1 - 1e-7)
    tangent = np.arctanh(norm) * embedding / norm
    centred = tangent - tangent.mean(0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
    t2 = tangent @ vt[:2].T
    n2 = np.linalg.norm(t2, axis=1, keepdims=True).clip(1e-12)
    return np.tanh(n2) * t2 / n2


def label_colors(labels: np.ndarray) -> np.ndarray:
    """RGBA colours for cluster ids, matching napari's default label colormap where possible."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return cmap((np.asarray(labels) - 1) % 20)


def save_disk_plot(
    embedding: np.ndarray,
    labels: np.ndarray | None,
    path: str | os.PathLike,
    *,
    title: str = "",
    max_points: int = 200_000,
    seed: int = 0,
    zoom: bool = True,
) -> Path:
    """Scatter ``(N, d)`` embeddings on the unit disk, coloured by ``labels``, into a PNG.

    ``zoom`` frames the points as the disk view's "zoom to points" does
    (:func:`fit_bounds`); the unit circle is drawn either way (off the picture
    when the points sit well inside it and are zoomed on).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    embedding = np.asarray(embedding).reshape(-1, np.asarray(embedding).shape[-1])
    labels = None if labels is None else np.asarray(labels).ravel()
    if len(embedding) > max_points:
        keep = np.random.default_rng(seed).choice(len(embedding), max_points, replace=False)
        embedding = embedding[keep]
        labels = None if labels is None else labels[keep]
    xy = disk_coordinates(embedding)
    fig = Figure(figsize=(5, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="0.4", lw=1))
    colors = "tab:blue" if labels is None else label_colors(labels)
    ax.scatter(xy[:, 0], xy[:, 1], s=1, c=colors, alpha=0.4, linewidths=0, rasterized=True)
    bounds = fit_bounds(xy, seed=seed) if zoom else FULL_DISK
    x0, x1, y0, y1 = bounds
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    if bounds != FULL_DISK:
        # zoomed in: an inset shows the whole disk, its boundary and where the window lies
        from matplotlib.patches import Rectangle

        inset = ax.inset_axes([0.76, 0.76, 0.23, 0.23])
        inset.add_patch(Circle((0, 0), 1.0, fill=False, color="0.4", lw=0.8))
        inset.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="tab:red", lw=0.8))
        inset.set_xlim(*FULL_DISK[:2])
        inset.set_ylim(*FULL_DISK[2:])
        inset.set_aspect("equal")
        inset.set_axis_off()
        zoom_factor = (FULL_DISK[1] - FULL_DISK[0]) / (x1 - x0)
        title = f"{title} · zoom ×{zoom_factor:.0f}" if title else f"zoom ×{zoom_factor:.0f}"
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    return path
