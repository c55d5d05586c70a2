"""Boundaries placed by each class's local mean (segmentation/local_means.py and its pass in mixture.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_hypseg.segmentation.channels import Channel
from napari_hypseg.segmentation.local_means import class_spreads, local_mean_posteriors
from napari_hypseg.segmentation.metrics import dice_scores
from napari_hypseg.segmentation.mixture import (
    channel_settings,
    describe,
    mixture_labels,
    mixture_levels,
    refine_by_local_means,
)


def _bright_and_dim_spheres(n: int = 40, seed: int = 0):
    """A bright and a dim sphere of equal size, blurred, with a little noise: one global threshold
    grows the bright one and shrinks the dim one."""
    z, y, x = np.mgrid[:n, :n, :n]
    truth = np.zeros((n, n, n), dtype=np.int64)
    image = np.zeros((n, n, n), dtype=np.float32)
    for centre, value in (((12, 20, 20), 1.0), ((28, 20, 20), 0.45)):
        inside = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < 6.5**2
        truth[inside] = 1
        image[inside] = value
    image = ndimage.gaussian_filter(image, 1.5)
    image += np.random.default_rng(seed).normal(0, 0.03, image.shape).astype(np.float32)
    points = ((image - image.mean()) / image.std()).reshape(-1, 1).astype(np.float32)
    return points, truth


def test_local_means_put_each_objects_boundary_half_way_to_its_own_contrast():
    points, truth = _bright_and_dim_spheres()
    shape = truth.shape
    labels, _ = mixture_labels(points, shape, 2, covariance="tied", beta=3.0)
    refined = refine_by_local_means(points, labels.reshape(-1), shape, 2, beta=3.0)
    before = dice_scores(labels, truth).per_class[1]
    after = dice_scores(refined.reshape(shape), truth).per_class[1]
    assert after > before + 0.05
    # the dim sphere, shrunk by the global decision, is what grows back
    dim = np.zeros(shape, dtype=bool)
    dim[20:, :, :] = True
    object_id = np.bincount(refined[truth.reshape(-1) == 1]).argmax()
    assert (refined.reshape(shape)[dim] == object_id).sum() > (labels[dim] == object_id).sum()


def test_a_class_is_never_carried_far_from_where_it_is():
    rng = np.random.default_rng(1)
    shape = (30, 30, 30)
    points = rng.normal(0, 1, (np.prod(shape), 1)).astype(np.float32)
    labels = np.zeros(shape, dtype=np.int64)
    labels[:6, :6, :6] = 1  # one small corner class, noise everywhere
    post = local_mean_posteriors(points, labels.reshape(-1), shape, 2)
    far = np.zeros(shape, dtype=bool)
    far[15:, 15:, 15:] = True
    assert post.shape == (labels.size, 2)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-5)
    assert post[far.reshape(-1), 1].max() < 1e-6


def test_an_edge_voxel_goes_to_the_nearer_local_mean_whatever_the_classes_spreads():
    rng = np.random.default_rng(2)
    shape = (20, 20, 20)
    labels = np.zeros(shape, dtype=np.int64)
    labels[:, :, 10:] = 1
    image = np.where(labels == 0, rng.normal(0.0, 0.01, shape), rng.normal(1.0, 0.3, shape)).astype(np.float32)
    edge = (10, 10, 9)  # a class-0 voxel on the edge, half-way between the two levels
    image[edge] = 0.5
    points = image.reshape(-1, 1)
    flat_edge = np.ravel_multi_index(edge, shape)
    pooled = local_mean_posteriors(points, labels.reshape(-1), shape, 2)
    own = local_mean_posteriors(points, labels.reshape(-1), shape, 2, spread="class")
    assert 0.2 < pooled[flat_edge, 1] < 0.8
    assert own[flat_edge, 1] > 0.99  # each class's own spread hands it to the broad class
    with pytest.raises(ValueError, match="spread"):
        local_mean_posteriors(points, labels.reshape(-1), shape, 2, spread="wide")


def test_class_spreads_per_class_and_pooled():
    points = np.concatenate([np.zeros(100), np.linspace(-1, 1, 100)])[:, None].astype(np.float32)
    points[:100] += np.tile([-0.1, 0.1], 50)[:, None]
    labels = np.repeat([0, 1], 100)
    own = class_spreads(points, labels, 3, pooled=False)  # class 2 is empty: it gets the pooled spread
    pooled = class_spreads(points, labels, 3, pooled=True)
    assert own[0, 0] < own[1, 0]
    assert np.allclose(pooled, pooled[0]) and own[0, 0] < pooled[0, 0] < own[1, 0]
    np.testing.assert_allclose(own[2], pooled[0])


def test_the_pass_runs_on_the_denoised_channel_only():
    assert channel_settings(Channel("denoised", 0.2))["local_means"]
    assert channel_settings(Channel("denoised", 0.05))["local_means"]
    assert not channel_settings(Channel("raw", 0.02))["local_means"]
    assert describe(Channel("denoised", 0.2)).endswith("boundaries by local class means")
    assert "local" not in describe(Channel("raw", 0.02))


def test_mixture_levels_with_local_means_keep_ids_and_levels():
    points, truth = _bright_and_dim_spheres(n=24)
    levels = mixture_levels(points, truth.shape, [2, 3], covariance="tied", beta=3.0, local_means=True)
    assert sorted(levels) == [2, 3]
    assert set(np.unique(levels[2])) == {1, 2}
    assert set(np.unique(levels[3])) <= {1, 2, 3}
    assert dice_scores(levels[2] - 1, truth).mean > 0.9
