"""Per-cluster statistics (segmentation/stats.py): checked against direct numpy on each cluster's mask."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_hypseg._errors import UserError
from napari_hypseg.segmentation import stats
from napari_hypseg.segmentation.stats import cluster_statistics, write_statistics_csv


@pytest.mark.parametrize("slab_voxels", [10**9, 1000])  # one slab, and many slabs merged
def test_statistics_match_each_clusters_mask(monkeypatch, slab_voxels):
    monkeypatch.setattr(stats, "_SLAB_VOXELS", slab_voxels)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, (23, 17, 11)).astype(np.uint8)
    labels[labels == 4] = 5  # an id with no voxels is not reported
    # a large offset: a naive sum of squares would lose the sd in float64 rounding
    image = rng.normal(1e6, 3.0, labels.shape).astype(np.float32)

    rows = cluster_statistics(labels, image, (2.0, 1.5, 0.5))

    assert [row.cluster for row in rows] == [1, 2, 3, 5]  # 0 is "no label" by default
    for row in rows:
        mask = labels == row.cluster
        values = image[mask].astype(np.float64)
        where = np.argwhere(mask)
        assert row.voxels == mask.sum()
        assert row.volume == pytest.approx(mask.sum() * 1.5)
        assert row.mean == pytest.approx(values.mean(), rel=1e-12)
        assert row.sd == pytest.approx(values.std(), rel=1e-9)
        assert row.bbox_min == tuple(where.min(axis=0)) and row.bbox_max == tuple(where.max(axis=0))


def test_zero_nan_and_missing_image():
    labels = np.zeros((2, 3, 4), dtype=np.int32)
    labels[1, 2, 1:3] = 7
    image = np.ones(labels.shape, dtype=np.float32)
    image[1, 2, 1] = np.nan  # non-finite voxels count in size, not in intensity

    with_zero = cluster_statistics(labels, image, include_zero=True)
    assert [(r.cluster, r.voxels) for r in with_zero] == [(0, 22), (7, 2)]
    seven = with_zero[1]
    assert (seven.mean, seven.sd) == (1.0, 0.0)
    assert seven.bbox_min == (1, 2, 1) and seven.bbox_max == (1, 2, 2)

    [no_image] = cluster_statistics(labels, None)
    assert no_image.voxels == 2 and np.isnan(no_image.mean) and np.isnan(no_image.sd)


@pytest.mark.parametrize(
    ("labels", "image", "voxel_size", "message"),
    [
        (np.zeros((4, 4), int), np.zeros((4, 4)), (1, 1, 1), "3D label volume"),
        (np.zeros((2, 2, 2), int), np.zeros((2, 2, 3)), (1, 1, 1), "same shape"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), (1, 1, 1), "integers"),
        (np.zeros((2, 2, 2), int), None, (1, 0, 1), "three positive numbers"),
    ],
)
def test_bad_input_is_explained(labels, image, voxel_size, message):
    with pytest.raises(UserError, match=message):
        cluster_statistics(labels, image, voxel_size)


def test_csv_round_trip(tmp_path):
    labels = np.array([[[1, 1, 2], [2, 2, 3]]])
    image = np.array([[[1.0, 3.0, 5.0], [5.0, 5.0, 0.5]]])
    rows = cluster_statistics(labels, image, (1.0, 2.0, 2.0))

    path = write_statistics_csv(tmp_path / "cell_k3_stats.csv", rows, unit="Å")

    with open(path, newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0] == [
        "cluster",
        "voxels",
        "volume (Å³)",
        "mean_intensity",
        "sd_intensity",
        "z_min",
        "y_min",
        "x_min",
        "z_max",
        "y_max",
        "x_max",
    ]
    assert table[1] == ["1", "2", "8", "2", "1", "0", "0", "0", "0", "0", "1"]
    assert table[2][:5] == ["2", "3", "12", "5", "0"]
    assert len(table) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["cell_k3_stats.csv"]  # no temporary file left


def test_csv_into_a_missing_folder_is_explained(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_statistics_csv(tmp_path / "nowhere" / "stats.csv", [])
