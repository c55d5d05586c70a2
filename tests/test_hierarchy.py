"""Levels of granularity: nesting, stable ids, flat mode, and fast level switching."""

import time

import numpy as np
import pytest
import torch
from geoopt.manifolds.stereographic import math as gmath

from napari_hypseg._errors import UserError
from napari_hypseg.segmentation import Hierarchy, build_hierarchy, dice_scores

K = torch.tensor(-1.0, dtype=torch.float64)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def hierarchical_volume(shape=(8, 16, 16), noise=0.03, seed=0):
    """A (Z, Y, X, 2) ball embedding with a 2 / 4 / 8 class hierarchy.

    The 8 leaf classes are slabs along x; leaf centres sit at radius 0.85 at
    angles top * pi +- 0.6 +- 0.2: the two top groups are opposite, each
    splits into two groups 1.2 rad apart, each of those into two leaves
    0.4 rad apart. Returns (embedding float32, truth at 2, 4 and 8 classes).
    """
    rng = np.random.default_rng(seed)
    leaf = (np.arange(shape[2]) * 8 // shape[2])[None, None, :].repeat(shape[0], 0).repeat(shape[1], 1)
    ids = np.arange(8)
    angles = (ids // 4) * np.pi + ((ids // 2) % 2 - 0.5) * 1.2 + (ids % 2 - 0.5) * 0.4
    centres = 0.85 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    base = torch.from_numpy(centres[leaf].reshape(-1, 2))
    # hyperbolic noise: wrapped tangent noise at each centre
    v = torch.from_numpy(rng.normal(0, noise, size=base.shape)) * (1 - base.square().sum(1, keepdim=True))
    emb = gmath.expmap(base, v, k=K).numpy().reshape(shape + (2,)).astype(np.float32)
    return emb, {2: leaf // 4, 4: leaf // 2, 8: leaf}


def contingency(a, b):
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    return np.bincount(a.ravel().astype(np.int64) * kb + b.ravel(), minlength=ka * kb).reshape(ka, kb)


@pytest.fixture(scope="module")
def nested():
    emb, truth = hierarchical_volume()
    return build_hierarchy(emb, k_min=2, k_max=8, n_init=2, seed=0), emb, truth


def test_nested_levels_refine_each_other_with_stable_ids(nested):
    h, emb, _ = nested
    assert isinstance(h, Hierarchy)
    assert h.k_values == list(range(2, 9)) and h.mode == "nested" and h.shape == emb.shape[:3]
    for k in h.k_values:
        lab = h.labels(k)
        assert lab.shape == h.shape and lab.dtype == np.uint8
        assert set(np.unique(lab).tolist()) == set(range(1, k + 1))  # 0 never used
        assert h.centroids(k).shape == (k, 2)
    for k in h.k_values[:-1]:
        coarse, fine = h.labels(k), h.labels(k + 1)
        table = contingency(fine, coarse)[1:, 1:]
        # every level-(k+1) cluster lies inside exactly one level-k cluster
        assert np.all((table > 0).sum(axis=1) == 1)
        # exactly one cluster split: the new id k+1, all other voxels keep their id
        unchanged = fine != k + 1
        np.testing.assert_array_equal(fine[unchanged], coarse[unchanged])
        assert len(np.unique(coarse[~unchanged])) == 1
        # parent() is the lookup table from level k+1 to level k
        np.testing.assert_array_equal(h.parent(k)[fine], coarse)


def test_nested_levels_find_the_true_hierarchy(nested):
    h, _, truth = nested
    for k in (2, 4, 8):
        assert dice_scores(h.labels(k), truth[k]).mean == 1.0


def test_nested_coarsest_level_matches_flat_kmeans():
    emb, truth = hierarchical_volume(seed=1)
    nested = build_hierarchy(emb, k_min=2, k_max=4, n_init=2)
    flat = build_hierarchy(emb, k_min=2, k_max=4, n_init=2, mode="flat")
    # the divisive hierarchy starts from the very same k-means as flat mode
    np.testing.assert_array_equal(nested.centroids(2), flat.centroids(2))
    np.testing.assert_array_equal(nested.labels(2), flat.labels(2))
    assert dice_scores(nested.labels(2), truth[2]).mean == 1.0


def test_flat_levels_are_independent_kmeans():
    emb, truth = hierarchical_volume(seed=2)
    progress = []
    h = build_hierarchy(emb, k_min=2, k_max=6, mode="flat", n_init=2, progress=lambda d, t: progress.append((d, t)))
    assert h.mode == "flat" and h.k_values == [2, 3, 4, 5, 6]
    for k in h.k_values:
        lab = h.labels(k)
        assert set(np.unique(lab).tolist()) == set(range(1, k + 1))
        assert h.centroids(k).shape == (k, 2)
    assert dice_scores(h.labels(2), truth[2]).mean == 1.0
    assert dice_scores(h.labels(4), truth[4]).mean == 1.0
    assert progress[-1] == (6, 6) and [d for d, _ in progress] == sorted(d for d, _ in progress)
    with pytest.raises(UserError, match="no parents"):
        h.parent(2)


def test_labels_returns_a_fresh_array_and_checks_k(nested):
    h, _, _ = nested
    a = h.labels(3)
    a[:] = 0
    assert h.labels(3).min() == 1
    b = h.labels(8)
    b[:] = 0
    assert h.labels(8).min() == 1
    with pytest.raises(UserError, match="available levels are 2..8"):
        h.labels(9)
    with pytest.raises(UserError, match="finest level"):
        h.parent(8)


def test_deterministic_and_euclidean():
    emb, truth = hierarchical_volume(shape=(4, 8, 16), seed=3)
    a = build_hierarchy(emb, k_max=4, n_init=1, seed=5, fit_size=300)
    b = build_hierarchy(emb, k_max=4, n_init=1, seed=5, fit_size=300)
    for k in a.k_values:
        np.testing.assert_array_equal(a.labels(k), b.labels(k))
    # the Euclidean-VAE ablation: same interface, plain k-means
    e = build_hierarchy(emb * 10, k_max=4, n_init=1, metric="euclidean")
    assert e.metric == "euclidean"
    assert dice_scores(e.labels(4), truth[4]).mean == 1.0


def test_level_switch_timing_is_a_table_lookup():
    # 64^3 voxels, fitted on a small sample; prints the switch time (no timed assert)
    emb, _ = hierarchical_volume(shape=(64, 64, 64), noise=0.05, seed=4)
    h = build_hierarchy(emb, k_max=8, n_init=1, fit_size=4000, batch_size=100_000)
    t0 = time.perf_counter()
    for k in h.k_values:
        h.labels(k)
    per_level = (time.perf_counter() - t0) / len(h.k_values)
    print(f"\nlabels(k) on 64^3 voxels: {per_level * 1e3:.2f} ms per level; nbytes={h.nbytes}")
    assert h.nbytes == 64**3  # one uint8 volume, whatever the number of levels


def test_rejects_bad_input():
    emb, _ = hierarchical_volume(shape=(2, 2, 2))
    with pytest.raises(UserError, match="cannot make 9 clusters from 8 voxels"):
        build_hierarchy(emb, k_max=9)
    with pytest.raises(UserError, match="mode"):
        build_hierarchy(emb, k_max=2, mode="tree")
    with pytest.raises(UserError, match="k_min <= k_max"):
        build_hierarchy(emb, k_min=4, k_max=3)
    with pytest.raises(UserError, match=r"\(\.\.\., d\)"):
        build_hierarchy(np.zeros(5, dtype=np.float32))
