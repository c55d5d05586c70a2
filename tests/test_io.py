"""Reading and writing volumes with their geometry: real files on disk, no viewer."""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings

import mrcfile
import nibabel as nib
import numpy as np
import pytest

from napari_hypseg._errors import UserError
from napari_hypseg.cli import main as hypseg
from napari_hypseg.io import (
    Geometry,
    geometry_from_metadata,
    read_volume,
    volume_layer_kwargs,
    write_image,
    write_labels,
)
from napari_hypseg.io.atomic import atomic_path, stem_of
from napari_hypseg.io.levels import write_levels
from napari_hypseg.io.stats import value_summary


def _labels_like(data: np.ndarray) -> np.ndarray:
    """Four label values spread over the volume, so misplaced voxels show."""
    return (np.asarray(data).astype(np.int64) % 4).astype(np.int32)


# -- MRC geometry ------------------------------------------------------------


def test_mrc_voxel_size_becomes_zyx_scale_and_origin_translate(tmp_mrc):
    path = tmp_mrc(voxel_size=(2.0, 1.5, 1.0), origin=(10.0, 20.0, 30.0))

    volume = read_volume(path)
    kwargs = volume_layer_kwargs(volume)

    assert volume.data.shape == (6, 7, 8)
    assert kwargs["scale"] == (1.0, 1.5, 2.0)
    assert kwargs["translate"] == (30.0, 20.0, 10.0)
    assert kwargs["name"] == "volume"
    assert kwargs["metadata"]["voxel_size_xyz"] == [2.0, 1.5, 1.0]
    assert kwargs["metadata"]["units"] == "Å"
    assert volume.spacing == (1.0, 1.5, 2.0)


def test_mrc_start_indices_place_volume_when_origin_is_zero(tmp_mrc):
    path = tmp_mrc(voxel_size=(2.0, 1.5, 1.0), nstart=(4, -2, 10))

    kwargs = volume_layer_kwargs(read_volume(path))

    assert kwargs["translate"] == (10.0, -3.0, 8.0)


def test_mrc_is_memory_mapped_read_only(tmp_mrc):
    volume = read_volume(tmp_mrc())

    assert isinstance(volume.data, np.memmap)
    assert not volume.data.flags.writeable
    np.testing.assert_array_equal(volume.data, np.arange(6 * 7 * 8).reshape(6, 7, 8))


@pytest.mark.skipif(sys.platform == "win32", reason="Windows cannot replace a memory-mapped file")
def test_mrc_file_can_be_replaced_while_its_volume_is_open(tmp_mrc, tmp_path):
    path = tmp_mrc()
    volume = read_volume(path)

    write_image(path, np.zeros((6, 7, 8)), like=volume)  # atomic replace of the open source

    assert float(np.asarray(read_volume(path).data).max()) == 0.0
    assert float(volume.data.max()) == 6 * 7 * 8 - 1  # the old map stays valid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume.mrc"]


def test_mrc_non_standard_axis_order_is_transposed_to_zyx(tmp_path):
    # Sections along x, rows along y, columns along z (mapc=3, mapr=2, maps=1).
    stored = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    path = tmp_path / "ccp4.map"
    with mrcfile.new(path) as mrc:
        mrc.set_data(stored)
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
        mrc.header.cella = (4 * 3.0, 5 * 2.0, 6 * 1.0)  # x, y, z lengths
        mrc.header.mx, mrc.header.my, mrc.header.mz = 4, 5, 6

    volume = read_volume(path)

    np.testing.assert_array_equal(volume.data, stored.transpose(2, 1, 0))
    assert volume_layer_kwargs(volume)["scale"] == (1.0, 2.0, 3.0)
    assert volume.metadata["axis_order"] == [3, 2, 1]


def test_mrc_labels_round_trip_keep_voxel_size_and_voxels(tmp_mrc, tmp_path):
    source = read_volume(tmp_mrc(voxel_size=(2.0, 1.5, 1.0), origin=(10.0, 20.0, 30.0)))
    labels = _labels_like(source.data)
    # What a writer gets from a napari layer: only its metadata and data shape.
    like = geometry_from_metadata(volume_layer_kwargs(source)["metadata"], labels.shape)

    out = write_labels(tmp_path / "labels.mrc", labels, like=like)

    with mrcfile.open(out) as mrc:
        assert tuple(float(v) for v in mrc.voxel_size.item()) == (2.0, 1.5, 1.0)
        assert (float(mrc.header.origin.x), float(mrc.header.origin.y), float(mrc.header.origin.z)) == (
            10.0,
            20.0,
            30.0,
        )
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, labels)
    assert volume_layer_kwargs(back)["scale"] == volume_layer_kwargs(source)["scale"]
    assert volume_layer_kwargs(back)["translate"] == volume_layer_kwargs(source)["translate"]
    assert back.metadata["is_labels"]


def test_mrc_labels_copy_start_indices_of_source(tmp_mrc, tmp_path):
    source = read_volume(tmp_mrc(voxel_size=(2.0, 2.0, 2.0), nstart=(3, 4, 5)))

    out = write_labels(tmp_path / "labels.mrc", _labels_like(source.data), like=source)

    with mrcfile.open(out) as mrc:
        assert (int(mrc.header.nxstart), int(mrc.header.nystart), int(mrc.header.nzstart)) == (3, 4, 5)


@pytest.mark.parametrize("max_label", [5, 300])
def test_labels_too_large_for_memory_stream_into_the_same_mrc_file(tmp_mrc, tmp_path, max_label):
    """A dask labels array is written slab by slab (a 2-voxel slab here): the file holds what the
    in-memory writer writes, header statistics and geometry included."""
    import dask.array as da

    source = read_volume(tmp_mrc(voxel_size=(2.0, 1.5, 1.0), origin=(10.0, 20.0, 30.0), nstart=(3, 4, 5)))
    labels = (_labels_like(source.data).astype(np.uint16) * max_label) // 3
    lazy = da.from_array(labels, chunks=(3, 5, 4))
    whole = write_labels(tmp_path / "whole.mrc", labels, like=source)
    from napari_hypseg.io import mrc as mrc_io

    slabs = mrc_io.write_mrc_slabs(
        tmp_path / "slabs.mrc",
        lazy,
        mrc_io.mrc_header_for(source.geometry, name="slabs.mrc"),
        dtype=mrc_io.labels_dtype_for_mrc(max_label),
        labels=True,
        slab_voxels=2 * labels.shape[1] * labels.shape[2],
    )
    streamed = write_labels(tmp_path / "streamed.mrc", lazy, like=source)
    with mrcfile.open(whole) as a:
        for other in (slabs, streamed):
            with mrcfile.open(other) as b:
                np.testing.assert_array_equal(a.data, b.data)
                assert a.data.dtype == b.data.dtype
                for field in (
                    "cella",
                    "origin",
                    "nxstart",
                    "nystart",
                    "nzstart",
                    "mode",
                    "label",
                    "nlabl",
                    "mx",
                    "my",
                    "mz",
                ):
                    assert a.header[field].tobytes() == b.header[field].tobytes(), field
                for field in ("dmin", "dmax", "dmean", "rms"):
                    assert float(b.header[field]) == pytest.approx(float(a.header[field]), rel=1e-5, abs=1e-6), field
    assert read_volume(streamed).metadata["is_labels"]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("endianness", ["<", ">"])
def test_labels_too_large_for_memory_stream_into_the_same_nifti_file(tmp_path, suffix, endianness):
    """A dask labels array is written to NIfTI slab by slab along its last axis (2 planes a slab
    here): the voxels in the file, uncompressed, are byte for byte those the in-memory writer
    writes, header included, in the source header's byte order."""
    import gzip

    import dask.array as da

    from napari_hypseg.io import nifti as nifti_io

    header = nib.Nifti1Header(endianness=endianness)
    data = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 1.5, 1.0, 1.0]), header=header), tmp_path / "source.nii")
    source = read_volume(tmp_path / "source.nii")
    labels = _labels_like(source.data) * 100  # 300: uint16 in the file
    lazy = da.from_array(labels, chunks=(4, 3, 5))

    whole = write_labels(tmp_path / f"whole{suffix}", labels, like=source)
    slabs = nifti_io.write_nifti_slabs(
        tmp_path / f"slabs{suffix}",
        lazy,
        source.geometry,
        dtype=np.uint16,
        value_range=(0, 300),
        labels=True,
        slab_voxels=2 * 6 * 7,
    )
    streamed = write_labels(tmp_path / f"streamed{suffix}", lazy, like=source)

    def file_bytes(path):
        raw = path.read_bytes()
        return gzip.decompress(raw) if suffix == ".nii.gz" else raw

    for other in (slabs, streamed):
        assert file_bytes(other) == file_bytes(whole)
        back = nib.load(other)
        assert back.header.endianness == endianness
        np.testing.assert_array_equal(np.asanyarray(back.dataobj), labels)
    assert read_volume(streamed).metadata["is_labels"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["source.nii", f"whole{suffix}", f"slabs{suffix}", f"streamed{suffix}"]
    ), "no temporary file is left behind"


def test_image_round_trip_is_float32_on_source_grid(tmp_mrc, tmp_path):
    source = read_volume(tmp_mrc(voxel_size=(2.0, 1.5, 1.0)))
    image = np.asarray(source.data, dtype=np.float64) / 7.0

    back = read_volume(write_image(tmp_path / "smooth.mrc", image, like=source))

    assert back.data.dtype == np.float32
    np.testing.assert_allclose(back.data, image, rtol=1e-6)
    assert back.spacing == source.spacing
    assert not back.metadata["is_labels"]


# -- NIfTI geometry ------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_oblique_affine_reaches_layer_and_label_file_exactly(tmp_nifti, tmp_path, suffix, oblique_affine):
    src_path = tmp_nifti(name=f"scan{suffix}")
    source_img = nib.load(src_path)

    volume = read_volume(src_path)
    kwargs = volume_layer_kwargs(volume)
    labels = _labels_like(volume.data)
    like = geometry_from_metadata(kwargs["metadata"], labels.shape)
    out = write_labels(tmp_path / f"labels{suffix}", labels, like=like)

    assert np.array_equal(volume.affine, source_img.affine)
    np.testing.assert_allclose(volume.affine, oblique_affine, atol=1e-6)  # float32 header
    assert np.array_equal(kwargs["affine"], source_img.affine)
    assert "scale" not in kwargs
    assert volume.metadata["oblique"]
    label_img = nib.load(out)
    assert np.array_equal(label_img.affine, source_img.affine)
    assert np.array_equal(label_img.get_sform(), source_img.get_sform())
    assert np.array_equal(label_img.get_qform(), source_img.get_qform())
    assert int(label_img.header["sform_code"]) == 2
    assert int(label_img.header["qform_code"]) == 1
    assert label_img.header.get_xyzt_units() == ("mm", "sec")
    assert label_img.get_data_dtype() == np.uint8
    assert label_img.header.get_intent()[0] == "label"
    np.testing.assert_array_equal(np.asanyarray(label_img.dataobj), labels)


def test_nifti_data_keep_ijk_order(tmp_nifti):
    data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)

    volume = read_volume(tmp_nifti(data, name="ijk.nii"))

    np.testing.assert_array_equal(volume.data, data)
    assert volume.metadata["axis_codes"] == "".join(nib.aff2axcodes(volume.affine))


def test_nifti_labels_without_source_get_identity_affine(tmp_path):
    out = write_labels(tmp_path / "plain.nii.gz", np.ones((2, 3, 4), dtype=np.int64))

    img = nib.load(out)
    assert np.array_equal(img.affine, np.eye(4))
    assert img.get_data_dtype() == np.uint8


def test_mrc_labels_saved_as_nifti_overlay_in_napari_world(tmp_mrc, tmp_path):
    source = read_volume(tmp_mrc(voxel_size=(2.0, 1.5, 1.0), origin=(10.0, 20.0, 30.0)))

    back = read_volume(write_labels(tmp_path / "labels.nii.gz", _labels_like(source.data), like=source))

    np.testing.assert_array_equal(back.affine, source.affine)


def test_oblique_nifti_saved_as_mrc_warns_that_rotation_is_lost(tmp_nifti, tmp_path):
    source = read_volume(tmp_nifti())

    with pytest.warns(UserWarning, match="orientation is not saved"):
        write_labels(tmp_path / "labels.mrc", _labels_like(source.data), like=source)


def test_4d_nifti_is_refused_with_a_message(tmp_nifti):
    path = tmp_nifti(np.zeros((4, 5, 6, 3), dtype=np.float32), name="series.nii.gz")

    with pytest.raises(UserError, match=r"4D series of 3 volumes.*extract one"):
        read_volume(path)


def test_nifti_with_trailing_singleton_axis_opens_as_3d(tmp_nifti):
    volume = read_volume(tmp_nifti(np.ones((4, 5, 6, 1), dtype=np.float32), name="one.nii.gz"))

    assert volume.shape == (4, 5, 6)


# -- label dtypes and validation ------------------------------------------------


@pytest.mark.parametrize(("max_label", "dtype"), [(3, np.uint8), (300, np.uint16), (70_000, np.uint32)])
def test_nifti_labels_use_smallest_unsigned_dtype(tmp_path, max_label, dtype):
    labels = np.zeros((3, 4, 5), dtype=np.int64)
    labels[1, 2, 3] = max_label

    img = nib.load(write_labels(tmp_path / "l.nii.gz", labels))

    assert img.get_data_dtype() == dtype
    assert int(np.asanyarray(img.dataobj)[1, 2, 3]) == max_label


@pytest.mark.parametrize(("max_label", "mode", "itemsize"), [(3, 0, 1), (300, 6, 2)])
def test_mrc_labels_use_smallest_mode(tmp_path, max_label, mode, itemsize):
    labels = np.zeros((3, 4, 5), dtype=np.int64)
    labels[1, 2, 3] = max_label

    out = write_labels(tmp_path / "l.mrc", labels)

    with mrcfile.open(out) as mrc:
        assert int(mrc.header.mode) == mode
        assert int(mrc.data[1, 2, 3]) == max_label
    assert out.stat().st_size == 1024 + labels.size * itemsize


def test_write_labels_does_not_modify_its_input(tmp_path):
    labels = np.arange(60, dtype=np.int64).reshape(3, 4, 5)
    before = labels.copy()

    write_labels(tmp_path / "l.mrc", labels)

    np.testing.assert_array_equal(labels, before)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (-np.ones((2, 3, 4), dtype=np.int32), "non-negative"),
        (np.full((2, 3, 4), 0.5), "integers"),
        (np.ones((3, 4), dtype=np.uint8), r"expected a 3D labels volume, got shape \(3, 4\)"),
    ],
)
def test_bad_labels_are_refused(tmp_path, labels, message):
    with pytest.raises(UserError, match=message):
        write_labels(tmp_path / "l.nii", labels)
    assert list(tmp_path.iterdir()) == []


def test_labels_of_other_shape_than_source_are_refused(tmp_mrc, tmp_path):
    source = read_volume(tmp_mrc())

    with pytest.raises(UserError, match=r"shape \(2, 2, 2\)"):
        write_labels(tmp_path / "l.mrc", np.ones((2, 2, 2), dtype=np.uint8), like=source)


def test_unknown_output_suffix_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"unknown file type \.tif"):
        write_labels(tmp_path / "l.tif", np.ones((2, 2, 2), dtype=np.uint8))


def test_geometry_for_another_shape_is_ignored(tmp_mrc):
    metadata = volume_layer_kwargs(read_volume(tmp_mrc()))["metadata"]

    assert geometry_from_metadata(metadata, (6, 7, 8)) is not None
    assert geometry_from_metadata(metadata, (3, 7, 8)) is None
    assert geometry_from_metadata({}, (6, 7, 8)) is None


@pytest.mark.parametrize("suffix", [".mrc", ".nii"])
def test_geometry_through_json_writes_the_same_file_as_the_volume(tmp_mrc, tmp_nifti, tmp_path, suffix):
    source = read_volume(tmp_mrc(origin=(10.0, 20.0, 30.0), nstart=(1, 2, 3)) if suffix == ".mrc" else tmp_nifti())
    labels = _labels_like(source.data)
    # what travels in a napari layer: JSON, no voxels
    stored = json.loads(json.dumps(volume_layer_kwargs(source)["metadata"]))
    geometry = geometry_from_metadata(stored, labels.shape)

    from_volume = write_labels(tmp_path / f"from_volume{suffix}", labels, like=source)
    from_geometry = write_labels(tmp_path / f"from_geometry{suffix}", labels, like=geometry)

    assert isinstance(geometry, Geometry) and geometry.shape == source.shape
    assert geometry.format == source.format and geometry.source == source.source
    assert from_geometry.read_bytes() == from_volume.read_bytes()


def test_geometry_is_read_only_and_refuses_what_is_not_a_3d_grid():
    geometry = Geometry(shape=(2, 3, 4), affine=np.diag([2.0, 1.0, 1.0, 1.0]))

    with pytest.raises(ValueError):
        geometry.affine[0, 0] = 5.0
    assert geometry.spacing == (2.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="3D"):
        Geometry(shape=(3, 4))
    with pytest.raises(ValueError, match="format"):
        Geometry(shape=(2, 3, 4), format="tiff")


# -- the levels of a segmentation -------------------------------------------------------


def test_write_levels_with_statistics_embedding_and_manifest(tmp_nifti, tmp_path):
    source = read_volume(tmp_nifti(name="scan.nii.gz"))
    levels = {k: (np.arange(source.data.size).reshape(source.shape) % k + 1).astype(np.uint8) for k in (2, 3)}
    embedding = np.zeros((*source.shape, 2), dtype=np.float32)

    written = write_levels(
        source.geometry,
        levels.__getitem__,
        [2, 3],
        tmp_path / "out",
        image=source.data,
        unit=source.metadata["units"],
        embedding=embedding,
        manifest={"model": "m.pt"},
    )

    names = [p.name for p in written]
    assert names == [
        "scan_k2.nii.gz",
        "scan_k3.nii.gz",
        "scan_k2_stats.csv",
        "scan_k3_stats.csv",
        "scan_embedding.npy",
        "scan_manifest.json",
    ]  # a NIfTI source gets .nii.gz, the stem of its name
    for k in (2, 3):
        back = read_volume(tmp_path / "out" / f"scan_k{k}.nii.gz")
        np.testing.assert_array_equal(back.data, levels[k])
        assert np.array_equal(back.affine, source.affine)
    with open(tmp_path / "out" / "scan_k2_stats.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0][2] == "volume (mm³)"
    assert [int(row[1]) for row in table[1:]] == [int((levels[2] == c).sum()) for c in (1, 2)]
    manifest = json.loads((tmp_path / "out" / "scan_manifest.json").read_text())
    assert manifest["files"] == {
        "2": "scan_k2.nii.gz",
        "3": "scan_k3.nii.gz",
        "2_stats": "scan_k2_stats.csv",
        "3_stats": "scan_k3_stats.csv",
        "embedding": "scan_embedding.npy",
    }
    assert manifest["levels"] == [2, 3] and manifest["model"] == "m.pt" and manifest["source"] == str(source.source)


def test_write_levels_of_labels_alone_in_another_format_and_stopped(tmp_mrc, tmp_path):
    source = read_volume(tmp_mrc(voxel_size=(2.0, 1.5, 1.0)))
    labels = _labels_like(source.data)

    def two_written() -> bool:  # as the panel's Stop between two levels
        return len(list(tmp_path.glob("cell_k*"))) == 2

    written = write_levels(
        source.geometry,
        lambda k: labels,
        [2, 3, 4],
        tmp_path,
        fmt="nii",
        stem="cell",
        tag="_flat",
        should_stop=two_written,
    )

    assert [p.name for p in written] == ["cell_k2_flat.nii", "cell_k3_flat.nii"]  # stopped before k = 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell_k2_flat.nii", "cell_k3_flat.nii", "volume.mrc"]
    np.testing.assert_array_equal(read_volume(written[0]).affine, source.affine)


def test_output_stem_drops_the_whole_format_suffix(tmp_path):
    assert stem_of(tmp_path / "brain.T1.nii.gz") == "brain.T1"
    assert stem_of(tmp_path / "tomo.ome.zarr") == "tomo"
    assert stem_of(tmp_path / "tomo.MRC") == "tomo"
    assert stem_of(tmp_path / "notes") == "notes"


# -- atomic writes ----------------------------------------------------------------


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    final = tmp_path / "labels.nii.gz"

    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("disk full")

    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file_intact(tmp_path):
    final = write_labels(tmp_path / "labels.mrc", np.ones((2, 3, 4), dtype=np.uint8))
    before = final.read_bytes()

    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("crash")

    assert final.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.mrc"]


def test_temporary_file_keeps_the_compression_suffix(tmp_path):
    with atomic_path(tmp_path / "x.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")


# -- bad input files -----------------------------------------------------------------


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.mrc"
    path.write_bytes(b"")

    with pytest.raises(UserError, match=r"empty\.mrc is empty \(0 bytes\)"):
        read_volume(path)


def test_truncated_mrc_is_refused(tmp_mrc):
    path = tmp_mrc(name="cut.mrc")
    path.write_bytes(path.read_bytes()[: 1024 + 100])

    with pytest.raises(UserError, match=r"cut\.mrc is truncated: its header describes 8x7x6 voxels"):
        read_volume(path)


def test_text_file_named_mrc_is_refused(tmp_path):
    path = tmp_path / "notes.mrc"
    path.write_text("These are my notes about the tomogram.\n" * 60)

    with pytest.raises(UserError, match=r"notes\.mrc is not an MRC file"):
        read_volume(path)


def test_tiny_text_file_named_mrc_is_refused(tmp_path):
    path = tmp_path / "short.mrc"
    path.write_text("hello")

    with pytest.raises(UserError, match=r"short\.mrc is not an MRC file: 5 bytes"):
        read_volume(path)


def test_mrc_header_announcing_huge_extended_header_is_refused_quickly(tmp_mrc):
    path = tmp_mrc(name="bogus.mrc")
    raw = bytearray(path.read_bytes())
    raw[92:96] = np.int32(1_500_000_000).tobytes()  # nsymbt: extended header size
    path.write_bytes(bytes(raw))

    with pytest.raises(UserError, match=r"bogus\.mrc is a damaged or unsupported MRC file.*extended header"):
        read_volume(path)


def test_2d_mrc_is_refused(tmp_mrc):
    path = tmp_mrc(np.zeros((7, 8), dtype=np.float32), name="image.mrc")

    with pytest.raises(UserError, match=r"expected a 3D volume, got shape \(7, 8\)"):
        read_volume(path)


def test_mrc_with_nans_opens_with_a_warning(tmp_mrc):
    data = np.ones((6, 7, 8), dtype=np.float32)
    data[2, 3, 4] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile warns about NaNs while writing
        path = tmp_mrc(data, name="holes.mrc")

    with pytest.warns(UserWarning, match=r"holes\.mrc has 1 NaN or infinite voxels"):
        volume = read_volume(path)

    assert np.isnan(volume.data[2, 3, 4])


def test_mrc_with_damaged_header_opens_permissively_with_a_warning(tmp_mrc):
    path = tmp_mrc(voxel_size=(2.0, 2.0, 2.0), name="old.mrc")
    raw = bytearray(path.read_bytes())
    raw[208:212] = b"\0\0\0\0"  # wipe the 'MAP ' identifier, as old writers did
    path.write_bytes(bytes(raw))

    with pytest.warns(UserWarning, match="damaged MRC header.*permissive"):
        volume = read_volume(path)

    np.testing.assert_array_equal(volume.data, np.arange(6 * 7 * 8).reshape(6, 7, 8))
    assert volume.spacing == (2.0, 2.0, 2.0)
    assert volume.metadata["permissive"]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_nifti_is_refused(tmp_nifti, suffix):
    path = tmp_nifti(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), name=f"cut{suffix}")
    path.write_bytes(path.read_bytes()[:2000])

    with pytest.raises(UserError, match=r"cut\.nii(\.gz)? is truncated or damaged") as error:
        read_volume(path)
    assert "\n" not in str(error.value)


def test_text_file_named_nii_is_refused(tmp_path):
    path = tmp_path / "scan.nii"
    path.write_text("not an image\n" * 40)

    with pytest.raises(UserError, match=r"scan\.nii is not a readable NIfTI file"):
        read_volume(path)


def test_missing_file_and_unknown_suffix_are_refused(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        read_volume(tmp_path / "nothing.mrc")
    other = tmp_path / "cells.tif"
    other.write_bytes(b"II*\0")
    with pytest.raises(UserError, match=r"unknown file type \.tif"):
        read_volume(other)


# -- value summaries on big volumes ------------------------------------------------------


def test_value_summary_samples_slices_when_over_budget():
    data = np.arange(100 * 10 * 10, dtype=np.float32).reshape(100, 10, 10)

    full = value_summary(data)
    sampled = value_summary(data, max_bytes=10 * data[:1].nbytes)

    assert (full.min, full.max, full.slices_read) == (0.0, 9999.0, 100)
    assert not full.sampled
    assert sampled.sampled and sampled.slices_read == 10
    assert (sampled.min, sampled.max) == (0.0, 9999.0)  # first and last slices are included


# -- hypseg info ----------------------------------------------------------------------------


def test_info_on_mrc_prints_geometry_and_range(tmp_mrc, capsys):
    path = tmp_mrc(voxel_size=(2.0, 1.5, 1.0), origin=(10.0, 20.0, 30.0), name="tomo.mrc")

    code = hypseg(["info", str(path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "(6, 7, 8)  (z, y, x)" in out
    assert "float32" in out
    assert "x 2 Å, y 1.5 Å, z 1 Å" in out
    assert "x 10 Å, y 20 Å, z 30 Å" in out
    assert "mapc/mapr/maps = 1, 2, 3" in out
    assert "min 0, max 335, mean 167.5" in out


def test_info_on_nifti_prints_units_and_orientation(tmp_nifti, capsys):
    path = tmp_nifti(name="scan.nii.gz")

    code = hypseg(["info", str(path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "(6, 7, 8)  (i, j, k)" in out
    assert " mm" in out
    assert "".join(nib.aff2axcodes(nib.load(path).affine)) + "+" in out
    assert "oblique" in out
    assert "qform code 1, sform code 2" in out


def test_info_on_bad_file_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "notes.mrc"
    path.write_text("not a tomogram\n" * 100)

    code = hypseg(["info", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "not an MRC file" in err
    assert os.fspath(path.name) in err
