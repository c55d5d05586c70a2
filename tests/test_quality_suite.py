"""Plumbing of the quality suite on tiny volumes (never its numbers)."""

from __future__ import annotations

import numpy as np

from napari_hypseg._device import resolve_device
from napari_hypseg.quality.baselines import BASELINES, cluster_features, run_baseline
from napari_hypseg.quality.cases import Case, CaseVolume, phantom_case
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
