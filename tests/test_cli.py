"""The ``hypseg`` command line end to end, on real files (tiny budgets)."""

import csv
import json

import numpy as np
import pytest
import torch

from napari_hypseg.cli import main
from napari_hypseg.io import read_volume, write_image
from napari_hypseg.io.volume import Volume
from napari_hypseg.synthetic import make_phantom

FAST = ["--steps", "3", "--batch-size", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "cell.mrc"
    phantom = make_phantom(24, seed=3)
    like = Volume(phantom.image, affine=np.diag([1.0, 1.5, 2.0, 1.0]), format="mrc")
    write_image(path, phantom.image, like=like)
    return path


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and "hypseg" in capsys.readouterr().out
    assert main([]) == 0
    assert "segment" in capsys.readouterr().out


def test_train_then_resume(phantom_file, tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main(["train", str(phantom_file), "--out", str(model), *FAST]) == 0
    assert torch.load(model, weights_only=True)["step"] == 3
    assert (
        main(
            [
                "train",
                str(phantom_file),
                "--out",
                str(model),
                "--resume",
                str(model),
                "--steps",
                "5",
                "--batch-size",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert torch.load(model, weights_only=True)["step"] == 5
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda d: d / "missing.mrc", "missing.mrc"),
        (lambda d: _write(d / "flat.mrc", np.zeros((5, 30, 30), np.float32) + np.arange(30)), "smaller than"),
        (lambda d: _write(d / "const.mrc", np.full((20, 20, 20), 3.0, np.float32)), "constant"),
        (
            lambda d: _write(
                d / "nan.mrc", np.where(np.eye(20)[None].repeat(20, 0) > 0, np.nan, 1.0).astype(np.float32)
            ),
            "NaN",
        ),
    ],
)
def test_untrainable_input_is_one_line_and_exit_2(tmp_path, capsys, make, expected):
    path = make(tmp_path)
    capsys.readouterr()  # whatever writing the input printed
    code = main(["train", str(path), "--out", str(tmp_path / "m.pt"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert expected in err[-1] and err[-1].startswith("hypseg train: error:")
    assert all(line.startswith("hypseg") for line in err)  # warnings too are single lines, no traceback
    assert not (tmp_path / "m.pt").exists()


def test_run_says_which_level_was_refitted(outlier_volume, tmp_path, capsys):
    # the 3-component fit spends its third cluster on 20 outlier voxels, so k = 3 is refitted wider and the
    # cube gets its cluster
    image, truth = outlier_volume(n_hot=20)
    path = tmp_path / "hot.mrc"
    write_image(path, image)
    out = tmp_path / "out"
    assert main(["run", str(path), "--clusters", "2,3", "--out-dir", str(out), "--no-compartments", *FAST]) == 0
    err = capsys.readouterr().err
    assert "k = 3 was refitted: its 3-component mixture lost a cluster" in err and "refitted with 4 components" in err
    assert "k = 2 was refitted" not in err
    labels = read_volume(out / "hot_k3.mrc").data
    inside = np.bincount(labels[truth == 2])
    cube_cluster = int(np.argmax(inside))
    # one cluster holds the cube, and little else
    assert inside[cube_cluster] > 0.9 * (truth == 2).sum() and (labels == cube_cluster).sum() < 1.2 * (truth == 2).sum()


def test_missing_model_is_a_user_error(phantom_file, tmp_path, capsys):
    code = main(["segment", str(phantom_file), "--model", str(tmp_path / "nope.pt"), "--out-dir", str(tmp_path)])
    assert code == 2 and "model file not found" in capsys.readouterr().err


def test_run_writes_levels_on_the_source_grid(phantom_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(phantom_file), "--clusters", "2,3", "--out-dir", str(out), *FAST]) == 0
    err = capsys.readouterr().err
    # the run says how it clustered (the noisy phantom: denoised channel, one shared covariance)
    assert "Gaussian mixture on the TV-denoised intensity (weight " in err
    assert "one covariance shared by the clusters" in err
    source = read_volume(phantom_file)
    for k in (2, 3):
        labels = read_volume(out / f"cell_k{k}.mrc")
        assert labels.shape == source.shape
        np.testing.assert_allclose(labels.affine, source.affine)
        held = set(np.unique(labels.data).tolist())
        assert held <= set(range(1, k + 1)) and len(held) >= 2
        # a level with an empty cluster says so
        assert (len(held) < k) == (f"k = {k} has {len(held)} clusters with voxels" in err)
    emb = np.load(out / "cell_embedding.npy")
    assert emb.shape == (*source.shape, 2) and (np.linalg.norm(emb, axis=-1) < 1).all()
    assert (out / "cell_model.pt").exists()

    # one statistics CSV per level, beside its labels, listed in the manifest (written last)
    manifest = json.loads((out / "cell_manifest.json").read_text())
    assert manifest["files"]["2_stats"] == "cell_k2_stats.csv" and manifest["files"]["3_stats"] == "cell_k3_stats.csv"
    voxel_volume = float(np.prod(source.spacing))
    for k in (2, 3):
        labels = read_volume(out / f"cell_k{k}.mrc").data
        with open(out / f"cell_k{k}_stats.csv", newline="", encoding="utf-8") as handle:
            table = list(csv.reader(handle))
        assert table[0][:3] == ["cluster", "voxels", "volume (Å³)"]
        rows = table[1:]
        assert [int(r[0]) for r in rows] == sorted(np.unique(labels).tolist())  # one row per cluster with voxels
        for row in rows:
            inside = labels == int(row[0])
            assert int(row[1]) == inside.sum()
            assert float(row[2]) == pytest.approx(inside.sum() * voxel_volume, rel=1e-5)
            assert float(row[3]) == pytest.approx(float(source.data[inside].mean()), rel=1e-4, abs=1e-6)
            zyx = np.argwhere(inside)
            assert [int(v) for v in row[5:]] == [*zyx.min(0), *zyx.max(0)]
        assert (out / "cell_manifest.json").stat().st_mtime_ns >= (out / f"cell_k{k}_stats.csv").stat().st_mtime_ns


def test_run_makes_a_lumen_a_cluster_unless_told_not_to(tmp_path, capsys):
    from test_compartments import _spheres

    image, truth = _spheres(hollow=True)
    path = tmp_path / "vesicles.mrc"
    write_image(path, image)
    lumen = truth == 2
    for extra, expected in (([], True), (["--no-compartments"], False)):
        out = tmp_path / ("plain" if extra else "default")
        assert main(["run", str(path), "--clusters", "3", "--out-dir", str(out), *FAST, *extra]) == 0
        err = capsys.readouterr().err
        assert ("is what the thin cluster" in err) == expected
        labels = read_volume(out / "vesicles_k3.mrc").data
        # the lumen holds the medium's intensity: only the compartments give it its own cluster
        ids, counts = np.unique(labels[lumen], return_counts=True)
        alone = counts.max() / lumen.sum() > 0.9 and np.mean(labels[~lumen] == ids[counts.argmax()]) < 0.05
        assert alone == expected


def test_segment_many_files_flat_mode_and_nifti_output(phantom_file, tmp_path):
    model = tmp_path / "m.pt"
    main(["train", str(phantom_file), "--out", str(model), *FAST])
    second = tmp_path / "other.mrc"
    second.write_bytes(phantom_file.read_bytes())
    out = tmp_path / "seg"
    code = main(
        [
            "segment",
            str(phantom_file),
            str(tmp_path / "oth*.mrc"),
            "--model",
            str(model),
            "--clusters",
            "2-4",
            "--mode",
            "flat",
            "--format",
            "nii.gz",
            "--out-dir",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    for stem in ("cell", "other"):
        for k in (2, 3, 4):
            assert len(np.unique(read_volume(out / f"{stem}_k{k}.nii.gz").data)) == k


def test_bad_cluster_list(phantom_file, tmp_path, capsys):
    model = tmp_path / "m.pt"
    main(["train", str(phantom_file), "--out", str(model), *FAST])
    assert (
        main(["segment", str(phantom_file), "--model", str(model), "--clusters", "1,x", "--out-dir", str(tmp_path)])
        == 2
    )
    assert "--clusters" in capsys.readouterr().err


def test_demo_scores_and_writes_pictures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--size", "24", "--out-dir", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "mean Dice" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:1] in "123" and len(line.split()) >= 3]
    assert [r[:2] for r in rows] == [["1", "2"], ["2", "4"], ["3", "8"]]
    assert all(0.0 <= float(r[2]) <= 1.0 for r in rows)
    for k in (2, 4, 8):
        assert (out / f"phantom_k{k}.mrc").exists()
        assert (out / f"phantom_disk_k{k}.png").stat().st_size > 1000
    assert (out / "phantom_truth_level3.mrc").exists()


def test_demo_writes_and_scores_the_clusters_asked_for(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--size", "24", "--clusters", "2,3", "--out-dir", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines() if line.strip()[:1] in "123" and len(line.split()) >= 3]
    assert [r[:2] for r in rows] == [["1", "2"]]  # the one phantom level whose k was asked for
    assert "not scored: level 2 (k = 4), level 3 (k = 8), not among --clusters 2,3" in text
    assert sorted(p.name for p in out.glob("phantom_k*.mrc")) == ["phantom_k2.mrc", "phantom_k3.mrc"]
    assert json.loads((out / "phantom_manifest.json").read_text())["levels"] == [2, 3]


def test_cli_defaults_are_the_configs_defaults():
    from napari_hypseg.benchmark import LEVEL_K
    from napari_hypseg.cli import build_parser
    from napari_hypseg.cli._outputs import parse_clusters
    from napari_hypseg.cli._training import configs_from_args
    from napari_hypseg.cli.segment import segment_config_from_args
    from napari_hypseg.model import ModelConfig
    from napari_hypseg.segment_config import SegmentConfig
    from napari_hypseg.training import TrainConfig

    parser = build_parser()
    segment, train = SegmentConfig(), TrainConfig()
    # run and demo pass one --device and one --seed to both configs: their defaults must agree
    assert (segment.device, segment.seed) == (train.device, train.seed)
    args = parser.parse_args(["segment", "v.mrc", "--model", "m.pt", "--out-dir", "o"])
    assert segment_config_from_args(args) == segment.with_(k_max=max(parse_clusters(args.clusters)))
    for argv in (["run", "v.mrc", "--out-dir", "o"], ["demo"]):
        args = parser.parse_args(argv)
        config = segment_config_from_args(args)
        assert config.with_(k_max=segment.k_max, window=segment.window) == segment
        assert configs_from_args(args) == (ModelConfig(), train)
    assert parse_clusters(parser.parse_args(["demo"]).clusters) == sorted(LEVEL_K.values())
    bench = parser.parse_args(["bench"])
    assert (bench.device, bench.seed) == (train.device, train.seed)


def _write(path, data):
    write_image(path, data)
    return path


def test_model_records_voxel_size_and_segment_warns_or_resamples(phantom_file, tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main(["train", str(phantom_file), "--out", str(model), *FAST]) == 0
    from napari_hypseg.model import load_model

    source = read_volume(phantom_file)
    assert load_model(model).voxel_size == pytest.approx(source.spacing)  # (z, y, x) of the training volume

    # a tiny model (5³ patches) recording the same voxel size, so a coarser copy still holds patches
    from napari_hypseg.model import ModelConfig
    from napari_hypseg.training import TrainConfig, Trainer

    trainer = Trainer(
        [source.data],
        model_config=ModelConfig(channels=(4, 8), kernel_size=3, hidden=16),
        train_config=TrainConfig(steps=2, batch_size=2, device="cpu"),
        voxel_size=source.spacing,
    )
    for _ in trainer.run():
        pass
    model = trainer.save(tmp_path / "tiny.pt")

    # the same phantom at twice the voxel size (half the voxels): a mismatch of 100 % on every axis
    coarse = tmp_path / "coarse.mrc"
    like = Volume(source.data[::2, ::2, ::2], affine=np.diag([*(2 * np.asarray(source.spacing)), 1.0]), format="mrc")
    write_image(coarse, np.ascontiguousarray(source.data[::2, ::2, ::2]), like=like)
    coarse_volume = read_volume(coarse)
    capsys.readouterr()
    out = tmp_path / "plain"
    assert (
        main(
            [
                "segment",
                str(coarse),
                "--model",
                str(model),
                "--clusters",
                "2,3",
                "--out-dir",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    sizes = [" × ".join(f"{v:.4g}" for v in size) for size in (coarse_volume.spacing, source.spacing)]
    assert all(size in err for size in sizes), err
    assert "--resample-to-model" in err
    assert read_volume(out / "coarse_k2.mrc").shape == coarse_volume.shape

    out = tmp_path / "resampled"
    assert (
        main(
            [
                "segment",
                str(coarse),
                "--model",
                str(model),
                "--clusters",
                "2,3",
                "--out-dir",
                str(out),
                "--device",
                "cpu",
                "--resample-to-model",
            ]
        )
        == 0
    )
    assert "--resample-to-model" not in capsys.readouterr().err
    for k in (2, 3):
        labels = read_volume(out / f"coarse_k{k}.mrc")
        assert labels.shape == coarse_volume.shape  # back on the source grid, exactly
        np.testing.assert_allclose(labels.affine, coarse_volume.affine)
        assert set(np.unique(labels.data)) <= set(range(1, k + 1)) and len(np.unique(labels.data)) >= 2
    assert np.load(out / "coarse_embedding.npy").shape[:3] == coarse_volume.shape
    manifest = json.loads((out / "coarse_manifest.json").read_text())
    assert manifest["settings"]["resampled_to"] == pytest.approx(list(source.spacing))


def test_old_model_files_without_a_voxel_size_still_load(tmp_path):
    from napari_hypseg.model import HyperbolicVAE, ModelConfig, load_model, save_checkpoint

    path = save_checkpoint(tmp_path / "old.pt", HyperbolicVAE(ModelConfig(channels=(4, 8), kernel_size=3, hidden=16)))
    payload = torch.load(path, weights_only=True)
    assert "voxel_size" not in payload  # as files written before the voxel size was recorded
    assert load_model(path).voxel_size is None


def test_suite_only_flags_outside_the_suite_are_a_user_error(tmp_path, capsys):
    report = tmp_path / "report.md"
    code = main(["bench", "--sweep", "--report", str(report)])
    assert code == 2 and "belong to --suite" in capsys.readouterr().err
    assert not report.exists()
