"""Scaling paths: block-mean binning, label upsampling, and ``hypseg segment`` over many files with ``--bin``.

These check correctness only; speed and memory are measured by the scripts in
``benchmarks/`` (never run as tests).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from napari_hypseg.cli import main
from napari_hypseg.cli import segment as segment_cli
from napari_hypseg.io import read_volume
from napari_hypseg.model import ModelConfig
from napari_hypseg.segmentation.binning import bin_volume, binned_shape, upsample_labels
from napari_hypseg.training import TrainConfig, Trainer

# -- binning ---------------------------------------------------------------


def _reference_bin(volume: np.ndarray, f: int) -> np.ndarray:
    """Block means written out the slow, obvious way (partial blocks average what they hold)."""
    out = np.empty(binned_shape(volume.shape, f), np.float64)
    for i, j, k in np.ndindex(out.shape):
        out[i, j, k] = volume[i * f : (i + 1) * f, j * f : (j + 1) * f, k * f : (k + 1) * f].astype(np.float64).mean()
    return out


@pytest.mark.parametrize("shape, factor", [((8, 12, 4), 2), ((9, 10, 7), 4), ((5, 3, 6), 3), ((2, 2, 2), 4)])
def test_bin_volume_is_the_mean_of_each_block(shape, factor):
    volume = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    binned = bin_volume(volume, factor)
    assert binned.dtype == np.float32
    assert binned.shape == binned_shape(shape, factor) == tuple(-(-n // factor) for n in shape)
    np.testing.assert_allclose(binned, _reference_bin(volume, factor), rtol=1e-5, atol=1e-6)


def test_bin_volume_of_integers_and_factor_one():
    volume = np.arange(4 * 6 * 8, dtype=np.int16).reshape(4, 6, 8)
    np.testing.assert_allclose(bin_volume(volume, 2), _reference_bin(volume, 2), rtol=1e-6)
    same = bin_volume(volume, 1)
    assert same.dtype == np.float32
    np.testing.assert_array_equal(same, volume)


def test_bin_volume_streams_a_read_only_memory_map_without_changing_it(tmp_path):
    volume = np.random.default_rng(2).normal(size=(11, 9, 10)).astype(np.float32)
    path = tmp_path / "vol.npy"
    np.save(path, volume)
    before = path.read_bytes()
    mapped = np.load(path, mmap_mode="r")
    np.testing.assert_allclose(bin_volume(mapped, 3), bin_volume(volume, 3))
    assert path.read_bytes() == before


@pytest.mark.parametrize("shape, factor", [((8, 8, 8), 2), ((9, 10, 7), 4), ((13, 5, 6), 3)])
def test_upsample_labels_repeats_each_binned_label_over_its_block(shape, factor):
    binned = np.random.default_rng(3).integers(0, 5, size=binned_shape(shape, factor)).astype(np.uint8)
    full = upsample_labels(binned, factor, shape)
    assert full.shape == shape and full.dtype == binned.dtype
    z, y, x = np.indices(shape)
    np.testing.assert_array_equal(full, binned[z // factor, y // factor, x // factor])
    np.testing.assert_array_equal(upsample_labels(binned, 1, binned.shape), binned)


# -- hypseg segment over many files with --bin -------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A really trained (if briefly) small model: m = 5, a few optimisation steps."""
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(16, 16, 16)).astype(np.float32)
    volume[4:12, 3:10, 5:13] += 3.0
    trainer = Trainer(
        [volume],
        model_config=ModelConfig(channels=(4, 8), kernel_size=3, hidden=16),
        train_config=TrainConfig(steps=3, batch_size=4, device="cpu", preview_every=0, log_every=1),
    )
    trainer.fit()
    return trainer.save(tmp_path_factory.mktemp("model") / "tiny.pt")


def _blob_volume(shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = rng.normal(scale=0.3, size=shape).astype(np.float32)
    z, y, x = np.indices(shape)
    vol[(z - shape[0] / 2) ** 2 + (y - shape[1] / 3) ** 2 + (x - shape[2] / 2) ** 2 < (min(shape) / 3) ** 2] += 2.0
    vol[:, : shape[1] // 4] -= 1.5
    return vol


def _write_mrc(path: Path, data: np.ndarray, voxel_size, origin) -> Path:
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size  # (x, y, z) in Å
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin
    return path


@pytest.fixture
def volume_dir(tmp_path) -> Path:
    """Three small MRC files of different shapes (two not divisible by the bin factor) and voxel sizes."""
    folder = tmp_path / "tomos"
    folder.mkdir()
    specs = [
        ("a", (12, 16, 14), (2.0, 2.0, 3.0)),
        ("b", (11, 13, 10), (4.5, 4.5, 4.5)),
        ("c", (10, 9, 15), (1.0, 1.5, 2.0)),
    ]
    for i, (stem, shape, voxel) in enumerate(specs):
        _write_mrc(folder / f"{stem}.mrc", _blob_volume(shape, i), voxel, (10.0 * i, -5.0, 2.5))
    (folder / "notes.txt").write_text("not a volume: the glob below must skip it")
    return folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_outputs(source: Path, out_dir: Path, ks, factor: int) -> None:
    """Label files on the source grid, constant over each bin block, k clusters each; binned embedding."""
    src = read_volume(source)
    stem = source.name[: -len(".mrc")]
    for k in ks:
        out = read_volume(out_dir / f"{stem}_k{k}.mrc")
        assert out.data.shape == src.data.shape
        np.testing.assert_allclose(out.affine, src.affine)
        assert out.spacing == pytest.approx(src.spacing)
        labels = np.asarray(out.data)
        assert len(np.unique(labels)) == k
        z, y, x = np.indices(labels.shape)
        corner = labels[(z // factor) * factor, (y // factor) * factor, (x // factor) * factor]
        np.testing.assert_array_equal(labels, corner)  # nearest upsampling of the binned grid
    embedding = np.load(out_dir / f"{stem}_embedding.npy")
    assert embedding.shape == (*binned_shape(src.data.shape, factor), 2)
    assert np.isfinite(embedding).all() and (np.linalg.norm(embedding, axis=-1) < 1).all()


def test_segment_a_glob_with_bin_writes_full_resolution_labels_and_leaves_inputs_alone(
    tiny_model, volume_dir, tmp_path, capsys
):
    sources = sorted(volume_dir.glob("*.mrc"))
    before = {p: _digest(p) for p in sources}
    out_dir = tmp_path / "out"
    code = main(
        [
            "segment",
            str(volume_dir / "*.mrc"),
            "--model",
            str(tiny_model),
            "--clusters",
            "2,3",
            "--out-dir",
            str(out_dir),
            "--bin",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    for source in sources:
        _check_outputs(source, out_dir, (2, 3), factor=2)
        assert _digest(source) == before[source]
    expected = {f"{p.stem}_k{k}.mrc" for p in sources for k in (2, 3)} | {f"{p.stem}_embedding.npy" for p in sources}
    expected |= {f"{p.stem}_manifest.json" for p in sources}
    expected |= {f"{p.stem}_k{k}_stats.csv" for p in sources for k in (2, 3)}
    assert {p.name for p in out_dir.iterdir()} == expected
    assert "3 volumes" in capsys.readouterr().err


def test_segment_several_files_memory_mapped_equals_prefetched(tiny_model, volume_dir, tmp_path, monkeypatch):
    files = [str(volume_dir / "b.mrc"), str(volume_dir / "c.mrc")]
    # bin 2, not 3: 3 shrinks b.mrc (11x13x10) below the model's 5-voxel patch, which segment refuses as train does
    args = ["--model", str(tiny_model), "--clusters", "2,4", "--bin", "2", "--device", "cpu"]
    assert main(["segment", *files, "--out-dir", str(tmp_path / "ram"), *args]) == 0
    # volumes above the prefetch limit stay memory-mapped and are binned slab by slab
    monkeypatch.setattr(segment_cli, "_PREFETCH_BYTES", 0)
    assert main(["segment", *files, "--out-dir", str(tmp_path / "mapped"), *args]) == 0
    for name in ("b", "c"):
        _check_outputs(volume_dir / f"{name}.mrc", tmp_path / "mapped", (2, 4), factor=2)
        for suffix in ("_k2.mrc", "_k4.mrc"):
            np.testing.assert_array_equal(
                np.asarray(read_volume(tmp_path / "ram" / f"{name}{suffix}").data),
                np.asarray(read_volume(tmp_path / "mapped" / f"{name}{suffix}").data),
            )


def test_segment_a_glob_that_matches_nothing_is_a_user_error(tiny_model, tmp_path, capsys):
    code = main(["segment", str(tmp_path / "*.mrc"), "--model", str(tiny_model), "--out-dir", str(tmp_path / "o")])
    assert code == 2
    assert "no file matches" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
