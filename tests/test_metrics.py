"""Dice after Hungarian matching and the 95th-percentile Hausdorff distance, on hand-made volumes."""

import numpy as np
import pytest

from napari_hypseg._errors import UserError
from napari_hypseg.segmentation import DiceResult, dice_scores, hausdorff95


def blocks():
    gt = np.zeros((4, 6, 6), dtype=np.int64)
    gt[:, 3:, :] = 1
    gt[:, :, 4:] = 2
    return gt


def test_perfect_prediction_with_permuted_ids():
    gt = blocks()
    pred = np.choose(gt, [9, 3, 250]).astype(np.uint8)
    res = dice_scores(pred, gt)
    assert isinstance(res, DiceResult)
    assert res.mean == 1.0
    assert res.per_class == {0: 1.0, 1: 1.0, 2: 1.0}
    assert res.matching == {0: 9, 1: 3, 2: 250}


def test_hand_computed_overlap():
    gt = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([7, 7, 7, 1, 1, 1, 1, 1])
    # |G0 ∩ P7| = 3, |G0| = 4, |P7| = 3  -> 6/7
    # |G1 ∩ P1| = 4, |G1| = 4, |P1| = 5  -> 8/9  (the swap would give 2/9 + 0)
    res = dice_scores(pred, gt)
    assert res.matching == {0: 7, 1: 1}
    assert res.per_class[0] == pytest.approx(6 / 7)
    assert res.per_class[1] == pytest.approx(8 / 9)
    assert res.mean == pytest.approx((6 / 7 + 8 / 9) / 2)


def test_fewer_clusters_than_classes_scores_unmatched_classes_zero():
    gt = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([1, 1, 1, 1, 2, 2, 2, 2])  # classes 1 and 2 merged
    res = dice_scores(pred, gt)
    assert res.per_class[0] == 1.0
    # cluster 2 goes to class 1 or 2 (tie, 2*2/(2+4) = 2/3); the other class gets 0
    assert sorted([res.per_class[1], res.per_class[2]]) == [0.0, pytest.approx(2 / 3)]
    assert len(res.matching) == 2
    assert res.mean == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_more_clusters_than_classes():
    gt = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([1, 1, 2, 2, 3, 3, 3, 3])  # class 0 over-split
    res = dice_scores(pred, gt)
    assert res.per_class == {0: pytest.approx(2 * 2 / (4 + 2)), 1: 1.0}
    assert res.matching[1] == 3


def test_ignore_gt_and_odd_label_values():
    gt = blocks()
    pred = np.choose(gt, [5, 6, 7])
    pred[0, 0, 0] = 6  # one error inside class 0
    full = dice_scores(pred, gt)
    assert full.per_class[0] < 1.0
    # ignoring class 0 removes its voxels, including the error
    res = dice_scores(pred, gt, ignore_gt=0)
    assert set(res.per_class) == {1, 2} and res.mean == 1.0
    assert dice_scores(pred, gt, ignore_gt=[0, 2]).per_class == {1: 1.0}
    # negative and huge ids take the np.unique path and agree with the fast path
    odd = dice_scores(pred.astype(np.int64) * 10**9 - 7, gt - 1)
    assert odd.mean == pytest.approx(full.mean)
    # boolean volumes are labels 0/1, not masks
    assert dice_scores(gt == 1, gt == 1).mean == 1.0


def test_dice_rejects_bad_input():
    with pytest.raises(UserError, match="differs"):
        dice_scores(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(UserError, match="integer labels"):
        dice_scores(np.zeros(4), np.zeros(4, int))
    with pytest.raises(UserError, match="no ground-truth voxels"):
        dice_scores(np.zeros(4, int), np.zeros(4, int), ignore_gt=0)


def spheres(shape, spacing, centre, radii):
    """Balls of the given physical radii, voxelised on a grid with anisotropic spacing."""
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre)))
    return [r <= radius for radius in radii]


def test_hd95_concentric_spheres_in_physical_units():
    spacing = (2.0, 1.0, 1.0)
    inner, outer = spheres((20, 36, 36), spacing, (19.0, 17.5, 17.5), (10.0, 12.0))
    hd = hausdorff95(inner, outer, spacing)
    # the surfaces are 2 physical units apart; voxelisation moves each by < 1 voxel
    assert abs(hd - 2.0) <= 1.0
    assert hausdorff95(outer, inner, spacing) == hd  # symmetric


def test_hd95_uses_the_spacing_of_each_axis():
    # two slabs whose far faces differ by 2 voxels along z only
    a = np.zeros((12, 6, 6), bool)
    a[2:5] = True
    b = np.zeros((12, 6, 6), bool)
    b[2:7] = True
    assert hausdorff95(a, b, (2.0, 1.0, 1.0)) == pytest.approx(4.0)
    assert hausdorff95(a, b, (0.5, 3.0, 3.0)) == pytest.approx(1.0)


def test_hd95_identical_shifted_and_empty_masks():
    inner, outer = spheres((24, 24, 24), (1, 1, 1), (12, 12, 12), (6.0, 8.0))
    assert hausdorff95(inner, inner) == 0.0
    # distances scale with the voxel size
    assert hausdorff95(inner, outer, (3, 3, 3)) == pytest.approx(3 * hausdorff95(inner, outer))
    # a shift by 4 voxels along x: the far caps are 4 voxels apart
    shifted = np.roll(inner, 4, axis=2)
    assert 3.0 <= hausdorff95(inner, shifted) <= 4.0 + 1e-9
    empty = np.zeros_like(inner)
    assert hausdorff95(empty, empty) == 0.0
    assert hausdorff95(inner, empty) == float("inf")
    assert hausdorff95(empty, inner) == float("inf")


def test_hd95_masks_touching_the_array_border():
    a = np.zeros((5, 5, 5), bool)
    a[:, :, :2] = True  # touches three faces of the array
    b = np.zeros((5, 5, 5), bool)
    b[:, :, :3] = True
    # b's far face is one voxel from a's far face; border voxels count as surface
    assert hausdorff95(a, b) == pytest.approx(1.0)


def test_hd95_rejects_bad_spacing():
    m = np.ones((3, 3, 3), bool)
    with pytest.raises(UserError, match="spacing"):
        hausdorff95(m, m, (1.0, 1.0))
    with pytest.raises(UserError, match="spacing"):
        hausdorff95(m, m, (1.0, 0.0, 1.0))
    with pytest.raises(UserError, match="shapes differ"):
        hausdorff95(m, m[:2])
