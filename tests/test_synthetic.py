"""The hierarchical cell phantom: determinism, nesting, classes, noise, variants, and ``hypseg sample``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.cluster.vq import kmeans2
from scipy.optimize import linear_sum_assignment

from napari_hypseg._errors import UserError
from napari_hypseg.cli import main
from napari_hypseg.io import read_volume
from napari_hypseg.synthetic import (
    CLASS_NAMES,
    MIN_SIZE,
    PARENT,
    Phantom,
    levels_from_finest,
    make_dataset,
    make_phantom,
    phantom_seeds,
    pink_noise,
    split_counts,
)

K = {1: 2, 2: 4, 3: 8}


@pytest.fixture(scope="module")
def phantoms() -> dict[tuple[bool, int], Phantom]:
    """A few default-size phantoms of each variant, made once for the module."""
    return {
        (irregular, seed): make_phantom(50, irregular=irregular, seed=seed)
        for irregular in (False, True)
        for seed in (0, 1, 2)
    }


def test_same_seed_same_phantom_other_seed_other_phantom():
    for irregular in (False, True):
        a = make_phantom(32, irregular=irregular, seed=7)
        b = make_phantom(32, irregular=irregular, seed=7)
        c = make_phantom(32, irregular=irregular, seed=8)
        np.testing.assert_array_equal(a.image, b.image)
        for level in (1, 2, 3):
            np.testing.assert_array_equal(a.levels[level], b.levels[level])
        assert not np.array_equal(a.levels[3], c.levels[3])
        assert not np.allclose(a.image, c.image)


def test_output_types_and_names(phantoms):
    p = phantoms[(False, 0)]
    assert p.image.dtype == np.float32 and p.image.shape == (50, 50, 50)
    assert sorted(p.levels) == [1, 2, 3]
    assert all(lab.dtype == np.uint8 and lab.shape == (50, 50, 50) for lab in p.levels.values())
    assert p.voxel_size == (1.0, 1.0, 1.0)
    assert [len(p.class_names[level]) for level in (1, 2, 3)] == [2, 4, 8]
    p.class_names[3].append("changed")  # each phantom owns its copy
    assert len(CLASS_NAMES[3]) == 8


def test_levels_are_the_parents_of_the_finest_level(phantoms):
    for p in phantoms.values():
        np.testing.assert_array_equal(p.levels[2], PARENT[2][p.levels[3]])
        np.testing.assert_array_equal(p.levels[1], PARENT[1][p.levels[2]])
    assert levels_from_finest(np.array([[[0, 1, 2, 3, 4, 5, 6, 7]]]))[2].tolist() == [[[0, 1, 2, 3, 2, 2, 3, 3]]]


def test_children_lie_strictly_inside_their_parent(phantoms):
    """Every face neighbour of a child voxel belongs to the child's parent at the coarser level."""
    for p in phantoms.values():
        for level in (2, 3):
            fine, coarse = p.levels[level], p.levels[level - 1]
            for child in range(2 if level == 2 else 4, K[level]):
                parent = PARENT[level - 1][child]
                mask = fine == child
                ring = ndi.binary_dilation(mask) & ~mask
                assert mask.any()
                assert np.all(coarse[ring] == parent), (level, child, np.unique(coarse[ring]))


def test_every_class_is_present_with_a_usable_size(phantoms):
    for (irregular, seed), p in phantoms.items():
        counts = np.bincount(p.levels[3].ravel(), minlength=8)
        total = p.levels[3].size
        assert counts[0] > 0.4 * total, (irregular, seed, counts)
        assert np.count_nonzero(p.levels[1]) > 0.15 * total, (irregular, seed, counts)
        assert np.all(counts[2:4] >= 300), (irregular, seed, counts)  # organelles
        assert np.all(counts[4:] >= 8), (irregular, seed, counts)  # aggregates: a few voxels each, several of them
        for level in (1, 2):
            assert np.unique(p.levels[level]).tolist() == list(range(K[level]))


def _roughness(mask: np.ndarray) -> float:
    """Voxel faces on the boundary over volume^(2/3): scale-free, smallest for a ball."""
    faces = sum(np.count_nonzero(np.diff(mask.astype(np.int8), axis=a)) for a in range(3))
    return faces / np.count_nonzero(mask) ** (2 / 3)


def test_irregular_objects_have_rougher_boundaries(phantoms):
    for seed in (0, 1, 2):
        regular, irregular = phantoms[(False, seed)], phantoms[(True, seed)]
        assert not np.array_equal(regular.levels[3], irregular.levels[3])
        assert _roughness(irregular.levels[1] == 1) > 1.05 * _roughness(regular.levels[1] == 1)
    # Organelles (with their aggregates), averaged per object over the three seeds.
    per_object = {}
    for variant in (False, True):
        values = []
        for seed in (0, 1, 2):
            labelled, n = ndi.label(phantoms[(variant, seed)].levels[2] >= 2)
            values += [_roughness(labelled == i) for i in range(1, n + 1)]
        per_object[variant] = np.mean(values)
    assert per_object[True] > 1.05 * per_object[False], per_object


def _radial_power(field: np.ndarray, bins: np.ndarray):
    power = np.abs(np.fft.fftn(field)) ** 2
    freq = np.sqrt(sum(g**2 for g in np.meshgrid(*[np.fft.fftfreq(n) for n in field.shape], indexing="ij")))
    which = np.digitize(freq.ravel(), bins)
    mean = np.array([power.ravel()[which == i].mean() for i in range(1, len(bins))])
    centres = np.sqrt(bins[1:] * bins[:-1])
    return centres, mean


@pytest.mark.parametrize("shape", [(64, 64, 64), (40, 64, 48)])
def test_pink_noise_power_falls_as_one_over_frequency(shape):
    noise = pink_noise(shape, rng=3)
    assert noise.dtype == np.float32 and noise.shape == shape
    assert abs(float(noise.mean())) < 1e-4 and abs(float(noise.std()) - 1) < 1e-4
    freq, power = _radial_power(noise.astype(np.float64), np.geomspace(0.04, 0.45, 12))
    slope = np.polyfit(np.log(freq), np.log(power), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)
    # white noise, for contrast, is flat
    white = np.random.default_rng(3).standard_normal(shape)
    freq, power = _radial_power(white, np.geomspace(0.04, 0.45, 12))
    assert np.polyfit(np.log(freq), np.log(power), 1)[0] == pytest.approx(0, abs=0.1)


def test_noise_magnitude_is_relative_to_the_clean_dynamic_range():
    clean = make_phantom(32, seed=4, noise=0.0).image
    noisy = make_phantom(32, seed=4, noise=0.25).image
    assert clean.min() == 0.0 and clean.max() == pytest.approx(1.0)
    assert float(np.std(noisy - clean)) == pytest.approx(0.25, rel=1e-3)


def test_anisotropic_volume():
    p = make_phantom((MIN_SIZE, 40, 56), seed=2)
    assert p.image.shape == (MIN_SIZE, 40, 56)
    assert np.unique(p.levels[3]).tolist() == list(range(8))
    # the cell follows the box: wider along the longer axes
    z, y, x = np.nonzero(p.levels[1])
    assert np.ptp(z) < np.ptp(y) < np.ptp(x)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 10},
        {"size": (50, 50)},
        {"size": (50, 50, 12)},
        {"size": "big"},
        {"size": 50.5},
        {"seed": -1},
        {"seed": 1.5},
        {"noise": -0.1},
        {"noise": float("nan")},
    ],
)
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserError):
        make_phantom(**kwargs)


def test_split_counts_and_seeds():
    assert split_counts(120) == (80, 20, 20)
    assert split_counts(3) == (1, 1, 1)
    assert split_counts(1) == (1, 0, 0)
    assert all(sum(split_counts(n)) == n for n in range(1, 40))
    assert phantom_seeds(5, 10)[:3] == phantom_seeds(5, 3)
    assert len(set(phantom_seeds(5, 10))) == 10
    assert phantom_seeds(5, 3) != phantom_seeds(6, 3)


def test_hypseg_sample_writes_a_readable_dataset(tmp_path, capsys):
    out = tmp_path / "phantoms"
    assert main(["sample", "--out", str(out), "--n", "3", "--size", "24"]) == 0
    printed = capsys.readouterr().out
    assert "dataset.json" in printed and "train" in printed

    meta = json.loads((out / "dataset.json").read_text())
    assert meta["n"] == 3 and meta["size"] == [24, 24, 24] and meta["irregular"] is False
    assert meta["split"] == {"train": 1, "val": 1, "test": 1}
    assert meta["class_names"]["3"] == CLASS_NAMES[3]
    seeds = phantom_seeds(0, 3)
    for i, (entry, part) in enumerate(zip(meta["volumes"], ("train", "val", "test"))):
        assert entry["split"] == part and entry["seed"] == seeds[i]
        assert entry["image"] == f"{part}/phantom_{i:03d}.mrc"
        expected = make_phantom(24, seed=seeds[i])
        image = read_volume(out / entry["image"])
        assert image.spacing == (1.0, 1.0, 1.0)
        np.testing.assert_array_equal(np.asarray(image.data), expected.image)
        for level in (1, 2, 3):
            labels = read_volume(out / entry["labels"][str(level)])
            assert labels.data.dtype.kind in "iu"
            np.testing.assert_array_equal(np.asarray(labels.data), expected.levels[level])


def test_hypseg_sample_refuses_bad_arguments(tmp_path, capsys):
    assert main(["sample", "--out", str(tmp_path / "a"), "--size", "10"]) == 2
    assert "at least 24" in capsys.readouterr().err
    assert main(["sample", "--out", str(tmp_path / "a"), "--size", "24,24"]) == 2
    assert main(["sample", "--out", str(tmp_path / "a"), "--n", "0"]) == 2
    assert not (tmp_path / "a").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["sample", "--out", str(busy), "--n", "1", "--size", "24"]) == 2
    assert "already holds other files" in capsys.readouterr().err
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_rewriting_a_dataset_removes_what_the_old_one_listed(tmp_path):
    out = tmp_path / "ds"
    first = make_dataset(out, n=3, size=MIN_SIZE, seed=1)
    assert len(first) == 13
    second = make_dataset(out, n=1, size=MIN_SIZE, seed=1, irregular=True)
    remaining = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert remaining == sorted(str(p.relative_to(out)) for p in second)
    assert not (out / "val").exists() and not (out / "test").exists()
    assert json.loads((out / "dataset.json").read_text())["irregular"] is True


def _mean_dice(pred: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean Dice over the k true classes after Hungarian matching of the k clusters."""
    table = np.bincount(pred.ravel() * k + truth.ravel(), minlength=k * k).reshape(k, k).astype(float)
    dice = 2 * table / (table.sum(1)[:, None] + table.sum(0)[None, :] + 1e-12)
    rows, cols = linear_sum_assignment(-dice)
    return float(dice[rows, cols].sum() / k)


def test_intensity_kmeans_finds_the_cell_but_not_the_aggregates(phantoms, capsys):
    """The phantom is neither trivial nor hopeless for plain intensity clustering.

    Published (Tursynbek & Niethammer 2023, regular/irregular): k-means
    0.81/0.33/0.15 and 0.77/0.30/0.12; BM4D + k-means 0.95/0.53/0.34.
    """
    rows = {}
    for irregular in (False, True):
        for name, smooth in (("raw", 0.0), ("gauss1", 1.0)):
            scores = []
            for seed in (0, 1):
                p = phantoms[(irregular, seed)]
                image = ndi.gaussian_filter(p.image, smooth) if smooth else p.image
                values = image.reshape(-1, 1).astype(np.float64)
                scores.append(
                    [
                        _mean_dice(kmeans2(values, K[level], minit="++", seed=seed)[1], p.levels[level], K[level])
                        for level in (1, 2, 3)
                    ]
                )
            rows[(irregular, name)] = np.mean(scores, axis=0)
    with capsys.disabled():
        for (irregular, name), dice in rows.items():
            print(
                f"\n  k-means on {name:6s} {'irregular' if irregular else 'regular  '}: Dice L1/L2/L3 = "
                + " / ".join(f"{d:.3f}" for d in dice),
                end="",
            )
        print()
    for irregular in (False, True):
        raw, smooth = rows[(irregular, "raw")], rows[(irregular, "gauss1")]
        assert 0.65 < raw[0] < 0.93  # noisy but the cell is visible
        assert raw[2] < 0.3  # the aggregates are not found by intensity alone
        assert smooth[0] > raw[0] + 0.05  # denoising helps at the coarse level
