"""Compartments: what a thin wall encloses becomes a cluster of its own; thick clusters change nothing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_hypseg.segmentation.compartments import (
    COMPARTMENT_ID,
    COMPARTMENT_OPENING,
    MIN_COMPARTMENT_FRACTION,
    MIN_WALL_BOUNDED,
    WALL_SURVIVAL,
    CompartmentMasks,
    enclosed_by,
    enclosure,
    find_compartments,
    is_thin,
    survival,
    thinnest_cluster,
    wall_bounded,
    wall_closure,
    wall_thickness,
    with_compartments,
)
from napari_hypseg.segmentation.metrics import dice_scores
from napari_hypseg.segmentation.mixture import mixture_levels

SHAPE = (40, 40, 40)
CENTRES = ((12, 12, 12), (28, 27, 14), (20, 14, 29), (29, 29, 29))


def _spheres(*, hollow: bool, noise: float = 0.15, seed: int = 0):
    """Bright spheres on a dark medium; ``hollow``: 2-voxel shells whose lumen is the medium's intensity.
    Returns the image and the truth (0 medium, 1 wall or sphere, 2 lumen)."""
    grid = np.indices(SHAPE).transpose(1, 2, 3, 0)
    truth = np.zeros(SHAPE, np.uint8)
    for centre in CENTRES:
        r = np.linalg.norm(grid - np.asarray(centre), axis=-1)
        if hollow:
            truth[(r >= 5) & (r < 7)] = 1
            truth[r < 5] = 2
        else:
            truth[r < 7] = 1
    rng = np.random.default_rng(seed)
    image = (truth == 1).astype(np.float32) + rng.normal(scale=noise, size=SHAPE).astype(np.float32)
    return image, truth


def test_enclosure_is_high_inside_a_closed_shell_and_low_far_outside():
    _, truth = _spheres(hollow=True)
    wall = truth == 1
    seen = enclosure(wall, reach=10)
    assert seen[truth == 2].min() == 1.0  # every ray from a lumen meets its shell
    assert seen[0, 39, 0] == 0.0  # a far corner sees no shell within reach
    assert is_thin(wall) and not is_thin(truth != 1)
    assert survival(wall) < survival(truth == 2)  # a 2-voxel shell is thinner than the ball it holds


def test_lumens_become_a_cluster_of_their_own_from_level_three_on():
    image, truth = _spheres(hollow=True)
    levels = mixture_levels(image.reshape(-1, 1), SHAPE, [2, 3, 4])
    found = levels.compartments
    assert found is not None and found.wall in (1, 2)
    # intensity alone cannot split the lumen from the medium: level 3 does, through the shells
    assert dice_scores(levels[3], truth).mean > 0.85
    lumen = truth == 2
    assert np.mean(levels[3][lumen] == COMPARTMENT_ID) > 0.9
    assert np.array_equal(levels[2], mixture_levels(image.reshape(-1, 1), SHAPE, [2], compartments=False)[2])
    # finer levels keep the compartment's id and add the mixture's clusters under other ids
    assert np.array_equal(levels[4] == COMPARTMENT_ID, levels[3] == COMPARTMENT_ID)
    assert set(np.unique(levels[4])) <= {1, 2, 3, 4}
    # the first level asked for may lie above k = 2: the wall is still looked for at k = 2
    alone = mixture_levels(image.reshape(-1, 1), SHAPE, [3])
    assert np.array_equal(alone[3], levels[3])


def test_solid_objects_have_no_wall_and_keep_the_mixture_levels():
    image, _ = _spheres(hollow=False)
    points = image.reshape(-1, 1)
    levels = mixture_levels(points, SHAPE, [2, 3, 4])
    assert levels.compartments is None
    plain = mixture_levels(points, SHAPE, [2, 3, 4], compartments=False)
    assert all(np.array_equal(levels[k], plain[k]) for k in (2, 3, 4))


@pytest.mark.parametrize("fill, radius, dense", [(0.1, 2, False), (0.17, 3, True)])
def test_a_crowd_of_small_particles_encloses_nothing(fill, radius, dense):
    # small solid particles are thin too, but the gaps between them are slivers (the opening removes them), and in
    # a dense crowd the gaps that survive the opening border mostly medium (not bounded by a wall)
    shape = (64, 64, 64)
    rng = np.random.default_rng(1)
    truth = _crowd_truth(shape, radius, fill, seed=1)
    image = truth.astype(np.float32) + rng.normal(scale=0.3, size=shape).astype(np.float32)
    levels = mixture_levels(image.reshape(-1, 1), shape, [2, 3])
    wall = levels[2] == thinnest_cluster(levels[2])
    assert is_thin(wall)
    enclosed = enclosed_by(wall)
    # without the opening, 0.5 % of the volume or more would count as enclosed
    assert enclosed.mean() > 0.005
    opened = ndimage.binary_opening(enclosed, iterations=COMPARTMENT_OPENING)
    assert (opened.mean() >= MIN_COMPARTMENT_FRACTION) == dense
    if dense:
        assert wall_bounded(opened, wall) < MIN_WALL_BOUNDED
    assert levels.compartments is None


def _crowd_truth(shape, radius: float, fill: float, seed: int) -> np.ndarray:
    """Solid balls of ``radius`` at random centres, filling about ``fill`` of ``shape``."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    truth = np.zeros(shape, bool)
    for centre in rng.uniform(0, min(shape), size=(int(fill * truth.size / (4.19 * radius**3)), 3)):
        lo = np.maximum(0, (centre - radius - 1).astype(int))
        hi = np.minimum(shape, (centre + radius + 2).astype(int))
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        truth[box] |= np.linalg.norm(grid[box] - centre, axis=-1) < radius
    return truth


def test_a_wall_five_voxels_thick_still_encloses_its_lumens():
    # a shell resampled finer, or a membrane in a less-binned tomogram, is thicker in voxels: more than half of
    # it survives an erosion, yet it is still a sheet
    shape = (48, 48, 48)
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    truth = np.zeros(shape, np.uint8)
    for centre in ((13, 13, 13), (34, 33, 15), (24, 16, 34)):
        r = np.linalg.norm(grid - np.asarray(centre), axis=-1)
        truth[(r >= 5) & (r < 10)] = 1
        truth[r < 5] = 2
    wall = truth == 1
    assert 0.5 < survival(wall) < WALL_SURVIVAL
    found, masks = find_compartments(wall.astype(np.uint8) + 1)
    assert found.wall == 2
    assert dice_scores(masks.inside.astype(np.uint8), (truth == 2).astype(np.uint8)).per_class[1] > 0.8


def test_the_medium_of_a_crowd_is_not_a_wall_around_the_particles():
    # at a quarter fill the medium between small particles is thin as well; it encloses the particles' cores,
    # but only the thinner cluster, the particles, is asked whether it is a wall
    particles = _crowd_truth((64, 64, 64), radius=2, fill=0.25, seed=0)
    medium = ~particles
    assert survival(medium) < WALL_SURVIVAL and survival(particles) < survival(medium)
    cores = ndimage.binary_opening(enclosed_by(medium), iterations=COMPARTMENT_OPENING)
    assert cores.mean() >= MIN_COMPARTMENT_FRACTION and wall_bounded(cores, medium) >= MIN_WALL_BOUNDED
    assert find_compartments(particles.astype(np.uint8) + 1) is None


def test_a_coarser_level_gains_the_compartments_and_keeps_its_other_ids():
    _, truth = _spheres(hollow=True)
    found, masks = find_compartments((truth == 1).astype(np.uint8) + 1)
    assert found.wall == 2 and 0.0 < found.fraction < 0.1 and found.fraction == masks.inside.mean()
    assert np.mean(masks.inside[truth == 2]) == 1.0 and not masks.inside[truth == 1].any()
    # a closed wall needs no closing
    assert found.closed == 0.0 and not masks.closure.any()
    coarser = np.array([[[1, 2, 3, 4]]], np.uint8)
    none = np.zeros_like(coarser, bool)
    moved = with_compartments(coarser, CompartmentMasks(np.array([[[False, True, False, False]]]), none, none))
    assert moved.tolist() == [[[1, COMPARTMENT_ID, 4, 5]]]


def test_a_wall_with_a_gap_is_closed_around_what_it_encloses():
    # shells open at both poles along z, as a missing wedge leaves them: the caps are medium in the image
    _, truth = _spheres(hollow=True)
    grid = np.indices(SHAPE).transpose(1, 2, 3, 0)
    caps = np.zeros(SHAPE, bool)
    for centre in CENTRES:
        r = np.linalg.norm(grid - np.asarray(centre), axis=-1)
        caps |= (r >= 5) & (r < 7) & (np.abs(grid[..., 0] - centre[0]) >= 5)
    wall = (truth == 1) & ~caps
    found, masks = find_compartments(wall.astype(np.uint8) + 1)
    assert found.closed > 0.0 and found.closed == masks.closure.mean()
    # the closure is medium in the image but shell in the truth: it lies in the gaps, not beyond the wall
    assert not (masks.closure & wall).any() and not (masks.closure & masks.inside).any()
    assert np.mean(truth[masks.closure] >= 1) > 0.9
    level3 = with_compartments(wall.astype(np.uint8) + 1, masks)
    assert np.all(level3[masks.closure] == 2)  # the wall's id: the gaps join the wall
    assert wall_thickness(wall) in (2, 3, 4)


def test_what_is_not_bounded_by_the_wall_is_not_a_compartment():
    _, truth = _spheres(hollow=True)
    wall = truth == 1
    assert wall_bounded(truth == 2, wall) > 0.9
    # the medium next to a few wall voxels is bounded by medium almost everywhere
    lone = np.zeros(SHAPE, bool)
    lone[20, 20, 10:30] = True
    slab = np.zeros(SHAPE, bool)
    slab[18:23, 18:23, 12:28] = True
    assert wall_bounded(slab & ~lone, lone) < MIN_WALL_BOUNDED
    assert wall_closure(truth == 2, wall).sum() == 0


def test_segment_reports_the_compartments_in_its_summary(one_torch_thread):
    from napari_hypseg.segmentation.pipeline import segment
    from napari_hypseg.training import TrainConfig, Trainer

    image, truth = _spheres(hollow=True)
    model = Trainer([image], train_config=TrainConfig(steps=2, device="cpu", preview_every=0)).fit()
    result = segment(image, model, k_min=2, k_max=3, device="cpu")
    assert result.compartments is not None
    assert f"cluster {COMPARTMENT_ID} is what the thin cluster" in result.clustering_summary
    assert np.mean(result.labels(3)[truth == 2] == COMPARTMENT_ID) > 0.9

    solid, _ = _spheres(hollow=False)
    plain = segment(solid, model, k_min=2, k_max=3, device="cpu")
    assert plain.compartments is None and "encloses" not in plain.clustering_summary
