"""The Qt-free Poincaré-disk framing and pictures shared by ``hypseg demo`` and the disk view."""

import numpy as np
import pytest
from matplotlib.image import imread

from napari_hypseg._napari import _disk_data
from napari_hypseg.disk_plot import FULL_DISK, fit_bounds, save_disk_plot


def _contains(bounds, xy) -> bool:
    x0, x1, y0, y1 = bounds
    return bool(((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)).all())


def test_points_near_the_rim_get_the_whole_disk_with_its_boundary():
    rng = np.random.default_rng(0)
    angle = rng.uniform(0.2, 0.9, 5000)  # one arc of the rim: a zoom window would cut the circle
    radius = rng.uniform(0.9, 0.995, 5000)
    xy = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    bounds = fit_bounds(xy)
    assert bounds == FULL_DISK
    assert _contains(bounds, xy)
    circle = np.column_stack([np.cos(np.linspace(0, 2 * np.pi, 361)), np.sin(np.linspace(0, 2 * np.pi, 361))])
    assert _contains(bounds, circle)


def test_points_inside_are_zoomed_on_and_the_widget_uses_the_same_framing():
    rng = np.random.default_rng(1)
    xy = rng.normal([0.2, -0.1], 0.03, (4000, 2))
    bounds = fit_bounds(xy)
    x0, x1, y0, y1 = bounds
    assert x1 - x0 == pytest.approx(y1 - y0) and x1 - x0 < 0.5  # a square window, well inside the disk
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    assert inside.mean() > 0.99
    assert _disk_data.fit_bounds is fit_bounds and _disk_data.FULL_DISK == FULL_DISK
    points = _disk_data.from_dense(xy[: 15**3].reshape(15, 15, 15, 2).astype(np.float32))
    assert points.bounds == fit_bounds(points.xy_all)


def test_demo_picture_is_written_zoomed_or_whole(tmp_path):
    rng = np.random.default_rng(2)
    embedding = rng.normal(0, 0.05, (3000, 2))
    labels = (embedding[:, 0] > 0).astype(int) + 1
    for zoom in (True, False):
        path = save_disk_plot(embedding, labels, tmp_path / f"disk_{zoom}.png", title="test", zoom=zoom)
        image = imread(path)
        assert image.shape[0] > 100 and image[..., :3].std() > 0.01
