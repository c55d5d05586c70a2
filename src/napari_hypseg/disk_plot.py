"""Static Poincaré-disk pictures of voxel embeddings (matplotlib's Agg canvas: no Qt, no display)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


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
) -> Path:
    """Scatter ``(N, d)`` embeddings on the unit disk, coloured by ``labels``, into a PNG."""
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
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    return path
