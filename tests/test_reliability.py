"""Bad inputs and interrupts (issue #12): each case reproduces a way a user could lose data or time.

Real files, real torch steps, real subprocesses and signals; tiny volumes and
few steps. docs/reliability.md lists the same cases with their outcomes.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_hypseg._errors import UserError
from napari_hypseg.cli import main
from napari_hypseg.cli._outputs import unique_stems
from napari_hypseg.io import read_volume, write_image, write_labels
from napari_hypseg.model import HyperbolicVAE, ModelConfig
from napari_hypseg.model.checkpoint import load_model, read_checkpoint
from napari_hypseg.segmentation import assign_clusters, embed, segment
from napari_hypseg.synthetic import make_phantom
from napari_hypseg.training.config import TrainConfig
from napari_hypseg.training.trainer import Trainer

FAST = ["--steps", "3", "--batch-size", "2", "--device", "cpu"]
SMALL = ModelConfig(channels=(4, 8, 8), kernel_size=3, hidden=16)  # 7-voxel patch
SRC = str(Path(__file__).resolve().parents[1] / "src")


# -- fixtures and helpers ------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def good(data_dir):
    path = data_dir / "good.mrc"
    write_image(path, make_phantom(24, seed=3).image)
    return path


@pytest.fixture(scope="module")
def small_model(data_dir, good):
    """A trained 7-voxel-patch model file (segmenting with it is fast)."""
    path = data_dir / "small.pt"
    Trainer(
        read_volume(good).data,
        model_config=SMALL,
        train_config=TrainConfig(steps=4, batch_size=2, device="cpu", preview_every=0),
        checkpoint_path=path,
    ).fit()
    return path


def _write(path: Path, data) -> Path:
    write_image(path, np.asarray(data, np.float32))
    return path


def _one_line_error(capsys, command: str, *, after_work: bool = False) -> str:
    """The error line; without ``after_work`` it must be all there is (no progress, traceback or usage)."""
    text = capsys.readouterr().err
    err = text.strip().splitlines()
    assert err, "no message"
    assert err[-1].startswith(f"hypseg {command}: error:"), err
    assert "Traceback" not in text, text
    if not after_work:
        assert all(line.startswith("hypseg") for line in err), err
    return err[-1]


def _cli_process(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "napari_hypseg.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll until predicate() holds; a generous bound only so a broken build cannot hang the suite."""
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"process ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("timed out waiting for the process")
        time.sleep(0.1)


def _stderr_line_containing(proc: subprocess.Popen, text: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            if text in line:
                return
            if not line and proc.poll() is not None:
                break
    proc.kill()
    pytest.fail(f"never saw {text!r} on stderr")


def _leftover_temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


def _can_mount() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"], capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs unshare -rm and tmpfs mounts")


def _cli_on_tmpfs(
    mount: Path, options: str, args: list[str], *, python: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Run hypseg (or ``python ...``) in a private mount namespace where ``mount`` is a fresh tmpfs with ``options``."""
    mount.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    script = 'mount -t tmpfs -o "$1" none "$2" && shift 2 && exec "$@"'
    command = python if python is not None else ["-m", "napari_hypseg.cli", *args]
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", options, str(mount), sys.executable, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _single_error_line(stderr: str, command: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("hypseg")]
    assert "Traceback" not in stderr, stderr
    assert lines and lines[-1].startswith(f"hypseg {command}: error:"), stderr
    return lines[-1]


# -- train: never overwrite the input, never lose the model ---------------------


def test_train_out_that_is_an_input_or_a_volume_name_is_refused(good, tmp_path, capsys):
    before = good.read_bytes()
    assert main(["train", str(good), "--out", str(good), *FAST]) == 2
    assert "one of the input volumes" in _one_line_error(capsys, "train")
    assert good.read_bytes() == before
    for name in (
        "model.mrc",
        "model.rec",
        "model.map",
        "model.st",
        "model.ali",
        "model.mrcs",
        "model.nii",
        "model.nii.gz",
    ):
        assert main(["train", str(good), "--out", str(tmp_path / name), *FAST]) == 2
        assert "volume suffix" in _one_line_error(capsys, "train")
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--latent-dim", "0", "--latent-dim must be >= 1"),
        ("--steps", "-5", "--steps must be >= 0"),
        ("--batch-size", "0", "--batch-size must be >= 1"),
        ("--lr", "-1", "--lr must be a positive number"),
        ("--lr", "nan", "--lr must be a positive number"),
        ("--max-minutes", "0", "--max-minutes must be a positive number"),
        ("--device", "tpu", "--device must be auto, cpu or cuda"),
        ("--checkpoint-minutes", "-1", "--checkpoint-minutes must be >= 0"),
    ],
)
def test_invalid_training_options_are_one_line_before_any_work(good, tmp_path, capsys, option, value, message):
    args = ["train", str(good), "--out", str(tmp_path / "m.pt"), "--steps", "3", "--device", "cpu", option, value]
    assert main(args) == 2
    assert message in _one_line_error(capsys, "train")
    assert not (tmp_path / "m.pt").exists()


def test_unparsable_option_is_one_line_not_a_usage_block(good, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(good), "--out", str(tmp_path / "m.pt"), "--steps", "many"])
    assert exc.value.code == 2
    assert "invalid int value" in _one_line_error(capsys, "train")


def test_train_out_that_is_a_folder_or_under_a_file_is_refused_before_training(good, tmp_path, capsys):
    assert main(["train", str(good), "--out", str(tmp_path), *FAST]) == 2
    assert "is a folder" in _one_line_error(capsys, "train")
    assert main(["train", str(good), "--out", str(good / "m.pt"), *FAST]) == 2
    assert "is a file, not a folder" in _one_line_error(capsys, "train")


@needs_mount
@pytest.mark.parametrize("options,message", [("ro,size=1m", "read-only"), ("size=64k", "only")])
def test_train_out_on_a_read_only_or_full_file_system_is_refused_before_training(good, tmp_path, options, message):
    result = _cli_on_tmpfs(
        tmp_path / "mnt", options, ["train", str(good), "--out", str(tmp_path / "mnt" / "m.pt"), *FAST]
    )
    assert result.returncode == 2
    assert message in _single_error_line(result.stderr, "train")
    assert "training on" not in result.stderr  # refused before the first step


def test_diverging_learning_rate_is_an_error_and_keeps_the_previous_model(good, tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main(["train", str(good), "--out", str(model), *FAST]) == 0
    before = model.read_bytes()
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                str(good),
                "--out",
                str(model),
                "--lr",
                "1e6",
                "--steps",
                "40",
                "--batch-size",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "diverged" in _one_line_error(capsys, "train", after_work=True)
    assert model.read_bytes() == before


def test_diverging_library_run_reports_nonfinite_and_saves_nothing(good, tmp_path):
    trainer = Trainer(
        read_volume(good).data,
        model_config=SMALL,
        checkpoint_path=tmp_path / "m.pt",
        train_config=TrainConfig(steps=40, batch_size=2, lr=1e6, device="cpu", preview_every=0),
    )
    events = list(trainer.run())
    assert events[-1].kind == "nonfinite" and "diverged" in events[-1].message
    assert not (tmp_path / "m.pt").exists()
    assert max(p.abs().max().item() for p in trainer.model.parameters()) < 1e4  # last good weights restored


def test_volume_with_extreme_finite_values_is_refused_by_train_and_segment(tmp_path, small_model, capsys):
    image = make_phantom(24, seed=3).image
    extreme = _write(tmp_path / "extreme.mrc", np.where(image > image.mean(), 3e38, -3e38))
    assert main(["train", str(extreme), "--out", str(tmp_path / "m.pt"), *FAST]) == 2
    assert "too wide for float32" in _one_line_error(capsys, "train")
    out = tmp_path / "seg"
    assert main(["segment", str(extreme), "--model", str(small_model), "--out-dir", str(out), "--device", "cpu"]) == 2
    assert "too wide for float32" in _one_line_error(capsys, "segment", after_work=True)
    assert not out.exists() or not list(out.iterdir())


def test_resume_with_contradicting_architecture_is_refused(good, tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main(["train", str(good), "--out", str(model), *FAST]) == 0
    capsys.readouterr()
    for extra in (["--latent-dim", "5"], ["--euclidean"], ["--latent-dim", "5", "--euclidean"]):
        assert main(["train", str(good), "--out", str(model), "--resume", str(model), *FAST, *extra]) == 2
        assert "contradicts the model being resumed" in _one_line_error(capsys, "train")
    # options that agree with the checkpoint are fine
    assert (
        main(
            [
                "train",
                str(good),
                "--out",
                str(model),
                "--resume",
                str(model),
                "--latent-dim",
                "2",
                "--steps",
                "4",
                "--batch-size",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )


def test_library_resume_with_another_model_config_is_refused(good, tmp_path):
    volume = read_volume(good).data
    Trainer(
        volume,
        model_config=SMALL,
        checkpoint_path=tmp_path / "a.pt",
        train_config=TrainConfig(steps=2, batch_size=2, device="cpu", preview_every=0),
    ).fit()
    with pytest.raises(UserError, match="differs from the one asked for"):
        Trainer(volume, model_config=ModelConfig(), resume=tmp_path / "a.pt", train_config=TrainConfig(device="cpu"))


# -- interrupts ------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_exits_130_and_keeps_a_resumable_model(good, tmp_path, signum):
    model = tmp_path / "m.pt"
    proc = _cli_process(
        "train",
        str(good),
        "--out",
        str(model),
        "--steps",
        "100000",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--checkpoint-every",
        "1",
    )
    _wait_for(model.exists, proc)  # a periodic checkpoint: training is under way
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert read_checkpoint(model)["step"] > 0
    assert _leftover_temporaries(tmp_path) == []
    assert (
        main(
            [
                "train",
                str(good),
                "--out",
                str(model),
                "--resume",
                str(model),
                "--steps",
                str(read_checkpoint(model)["step"] + 1),
                "--batch-size",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )


def test_killed_training_keeps_its_last_periodic_checkpoint(good, tmp_path):
    model = tmp_path / "m.pt"
    proc = _cli_process(
        "train",
        str(good),
        "--out",
        str(model),
        "--steps",
        "100000",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--checkpoint-every",
        "1",
    )
    _wait_for(model.exists, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate(timeout=60)
    assert load_model(model) is not None and read_checkpoint(model)["step"] >= 5


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_segmentation_exits_130_and_leaves_the_earlier_result_whole(tmp_path, small_model, signum):
    volume = _write(tmp_path / "big.mrc", make_phantom(48, seed=1).image)
    out = tmp_path / "seg"
    assert (
        main(
            [
                "segment",
                str(volume),
                "--model",
                str(small_model),
                "--out-dir",
                str(out),
                "--device",
                "cpu",
                "--clusters",
                "2",
            ]
        )
        == 0
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _cli_process(
        "segment",
        str(volume),
        "--model",
        str(small_model),
        "--out-dir",
        str(out),
        "--device",
        "cpu",
        "--clusters",
        "2-12",
        "--mode",
        "flat",
        "--window",
        "3",
    )
    _stderr_line_containing(proc, "embed")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert _leftover_temporaries(out) == []
    # stopped before its first write: the complete earlier result, manifest included, is untouched
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_output_name_taken_by_a_folder_is_refused_before_work(tmp_path, small_model, good, capsys):
    out = tmp_path / "seg"
    (out / "good_k3.mrc").mkdir(parents=True)
    assert (
        main(
            [
                "segment",
                str(good),
                "--model",
                str(small_model),
                "--out-dir",
                str(out),
                "--device",
                "cpu",
                "--clusters",
                "2,3",
            ]
        )
        == 2
    )
    assert "good_k3.mrc: a folder has that name" in _one_line_error(capsys, "segment")
    assert sorted(p.name for p in out.iterdir()) == ["good_k3.mrc"]


# -- segment: outputs ------------------------------------------------------------


def test_inputs_with_the_same_name_get_distinct_outputs(tmp_path, small_model, good, monkeypatch, capsys):
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        shutil.copy(good, tmp_path / folder / "tomo.mrc")
    write_image(tmp_path / "d2" / "tomo.nii.gz", read_volume(good).data)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "seg"
    code = main(
        [
            "segment",
            "d*/tomo.*",
            "d1/tomo.mrc",
            "--model",
            str(small_model),
            "--out-dir",
            str(out),
            "--device",
            "cpu",
            "--clusters",
            "2,3,4",
        ]
    )
    assert code == 0
    assert "hypseg: warning: d1/tomo.mrc is given more than once" in capsys.readouterr().err
    labels = sorted(p.name for p in out.iterdir() if "_k" in p.name and not p.name.endswith("_stats.csv"))
    assert len(labels) == 9, labels  # 3 volumes x 3 levels, none overwritten
    assert len(list(out.glob("*_k*_stats.csv"))) == 9  # and one statistics table per label file
    manifests = sorted(p.name for p in out.glob("*_manifest.json"))
    assert manifests == ["d1_tomo_manifest.json", "d2_tomo_mrc_manifest.json", "d2_tomo_nii_gz_manifest.json"]


def test_an_output_name_clash_that_cannot_be_resolved_is_refused(tmp_path):
    paths = [tmp_path / "d1" / "tomo.mrc", tmp_path / "d2" / "tomo.mrc", tmp_path / "d1_tomo.mrc"]
    with pytest.raises(UserError, match="would both write d1_tomo"):
        unique_stems(paths)


def test_manifest_lists_a_complete_result(tmp_path, small_model, good):
    out = tmp_path / "seg"
    assert (
        main(
            [
                "segment",
                str(good),
                "--model",
                str(small_model),
                "--out-dir",
                str(out),
                "--device",
                "cpu",
                "--clusters",
                "2,3",
            ]
        )
        == 0
    )
    import json

    manifest = json.loads((out / "good_manifest.json").read_text())
    assert manifest["levels"] == [2, 3] and manifest["model"] == str(small_model)
    assert all((out / name).exists() for name in manifest["files"].values())
    assert manifest["created"].endswith("+00:00")


def test_output_that_would_overwrite_an_input_is_refused(tmp_path, small_model, good):
    shutil.copy(good, tmp_path / "cell.mrc")
    shutil.copy(good, tmp_path / "cell_k2.mrc")  # e.g. a label file from before, given as input again
    before = (tmp_path / "cell_k2.mrc").read_bytes()
    assert (
        main(
            [
                "segment",
                str(tmp_path / "cell.mrc"),
                str(tmp_path / "cell_k2.mrc"),
                "--model",
                str(small_model),
                "--out-dir",
                str(tmp_path),
                "--device",
                "cpu",
                "--clusters",
                "2",
            ]
        )
        == 2
    )
    assert (tmp_path / "cell_k2.mrc").read_bytes() == before


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--bin", "0", "--bin must be >= 1"),
        ("--bin", "-2", "--bin must be >= 1"),
        ("--bin", "64", "--bin 64 is larger than the volume"),
        ("--bin", "4", "smaller than the model's 7-voxel patch; use a bin of at most 3"),
        ("--window", "1", "--window values must be at least 3"),
        ("--stride", "0", "--stride must be >= 1"),
        ("--device", "tpu", "unknown device 'tpu'"),
        ("--clusters", "1", "--clusters values must be between 2 and 64"),
        ("--clusters", "2,65", "--clusters values must be between 2 and 64"),
    ],
)
def test_invalid_segment_options_are_one_line_before_any_work(
    tmp_path, small_model, good, capsys, option, value, message
):
    out = tmp_path / "seg"
    assert (
        main(
            ["segment", str(good), "--model", str(small_model), "--out-dir", str(out), "--device", "cpu", option, value]
        )
        == 2
    )
    assert message in _one_line_error(capsys, "segment")
    assert not out.exists()


def test_out_dir_that_is_a_file_is_refused_before_work(tmp_path, small_model, good, capsys):
    blocker = tmp_path / "seg"
    blocker.write_text("not a folder")
    assert main(["segment", str(good), "--model", str(small_model), "--out-dir", str(blocker), "--device", "cpu"]) == 2
    assert "is a file, not a folder" in _one_line_error(capsys, "segment")


@needs_mount
@pytest.mark.parametrize("options,message", [("ro,size=1m", "read-only"), ("size=64k", "only")])
def test_segment_to_a_read_only_or_full_file_system_is_refused_before_work(
    tmp_path, small_model, good, options, message
):
    result = _cli_on_tmpfs(
        tmp_path / "mnt",
        options,
        [
            "segment",
            str(good),
            "--model",
            str(small_model),
            "--out-dir",
            str(tmp_path / "mnt" / "seg"),
            "--device",
            "cpu",
        ],
    )
    assert result.returncode == 2
    assert message in _single_error_line(result.stderr, "segment")
    assert "embed" not in result.stderr


@needs_mount
def test_write_on_a_read_only_file_system_reports_the_first_error_only(tmp_path):
    """The temporary file's cleanup used to raise a second error that hid "read-only"."""
    code = (
        "import sys, numpy as np\n"
        "from napari_hypseg.io import write_labels\n"
        "from napari_hypseg._errors import UserError\n"
        "try:\n"
        "    write_labels(sys.argv[1], np.ones((4, 4, 4), np.uint8))\n"
        "except UserError as exc:\n"
        "    print('UserError:', exc)\n"
    )
    result = _cli_on_tmpfs(tmp_path / "mnt", "ro,size=1m", [], python=["-c", code, str(tmp_path / "mnt" / "l.mrc")])
    assert result.returncode == 0, result.stderr
    assert "UserError: cannot write" in result.stdout and "read-only" in result.stdout


def test_disk_filling_up_during_the_writes_is_one_line_and_withdraws_the_manifest(tmp_path, small_model, good):
    """A file-size limit makes the embedding's write fail as a full disk does, after the label files were replaced."""
    out = tmp_path / "seg"
    args = [
        "segment",
        str(good),
        "--model",
        str(small_model),
        "--out-dir",
        str(out),
        "--device",
        "cpu",
        "--clusters",
        "2",
    ]
    assert main(args) == 0  # a complete earlier result
    assert (out / "good_manifest.json").exists()

    # the limit is set inside the child (not with preexec_fn, which is unsafe in a threaded parent):
    # a 15 kB label file fits, the 110 kB embedding does not
    launcher = (
        "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000)); "
        "sys.argv = ['hypseg', *sys.argv[1:]]; runpy.run_module('napari_hypseg.cli', run_name='__main__')"
    )
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "stopped short (the disk is full" in _single_error_line(err, "segment")
    assert _leftover_temporaries(out) == []
    # new k=2 labels beside the old embedding: the folder must not claim to hold one complete result
    assert not (out / "good_manifest.json").exists()


def test_window_that_multiplies_the_work_warns_with_its_cost(tmp_path, small_model, good, capsys):
    assert (
        main(
            [
                "segment",
                str(good),
                "--model",
                str(small_model),
                "--out-dir",
                str(tmp_path / "seg"),
                "--device",
                "cpu",
                "--window",
                "3",
                "--clusters",
                "2",
            ]
        )
        == 0
    )
    assert "hypseg: warning: window 3 resamples the volume by 2.3 per axis: 13x the voxels" in capsys.readouterr().err


# -- segment: models and volumes --------------------------------------------------


def _damaged(path: Path, small_model: Path, change) -> Path:
    payload = torch.load(small_model, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


def _shape_mismatch(payload):
    payload["state_dict"] = HyperbolicVAE(ModelConfig(channels=(4, 8, 16), kernel_size=3, hidden=16)).state_dict()


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda p: p.pop("state_dict"), "'state_dict' is missing"),
        (lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))), "do not fit"),
        (_shape_mismatch, "do not fit"),
        (lambda p: p["model_config"].update(manifold="lorentz"), "manifold must be"),
        (lambda p: p["model_config"].update(kernel_size=4), "kernel_size must be odd"),
        (lambda p: p["model_config"].update(latent_dim="2"), "latent_dim must be"),
        (lambda p: p.update(format_version="1"), "format_version is '1'"),
        (lambda p: p["model_config"].update(hidden=10**9), "parameters; at most"),
        (lambda p: p["model_config"].update(kernel_size=99), "295-voxel patch; at most 129"),
    ],
)
def test_damaged_or_foreign_model_files_are_one_line(tmp_path, small_model, good, capsys, change, message):
    model = _damaged(tmp_path / "bad.pt", small_model, change)
    assert (
        main(["segment", str(good), "--model", str(model), "--out-dir", str(tmp_path / "seg"), "--device", "cpu"]) == 2
    )
    assert message in _one_line_error(capsys, "segment")
    with pytest.raises(UserError) as exc:
        load_model(model)
    assert message in str(exc.value)


def test_segment_refuses_the_volumes_that_train_refuses(tmp_path, small_model, capsys):
    model_patch = 7
    for shape in ((1, 64, 64), (4, 200, 200), (model_patch - 1, 30, 30)):
        path = _write(tmp_path / "thin.mrc", np.random.default_rng(0).normal(size=shape))
        assert main(["train", str(path), "--out", str(tmp_path / "m.pt"), *FAST]) == 2
        assert "smaller than the model's" in _one_line_error(capsys, "train")
        assert (
            main(
                [
                    "segment",
                    str(path),
                    "--model",
                    str(small_model),
                    "--out-dir",
                    str(tmp_path / "seg"),
                    "--device",
                    "cpu",
                ]
            )
            == 2
        )
        assert "smaller than the model's 7-voxel patch" in _one_line_error(capsys, "segment")


def test_volume_far_from_the_training_range_warns_with_both_ranges(small_model, good):
    model = load_model(small_model)
    volume = read_volume(good).data * 1e4 + 5e4
    with pytest.warns(UserWarning, match=r"1st-99th percentile .* far from the model's training range \(.* to .*\)"):
        embed(volume, model, device="cpu")


# -- library boundary -------------------------------------------------------------


def test_embed_rejects_bad_chunk_and_out_arrays(small_model, good):
    model = load_model(small_model)
    volume = np.asarray(read_volume(good).data)
    for chunk in (-5, 0, 2.5):
        with pytest.raises(UserError, match="chunk must be an integer >= 1"):
            embed(volume, model, chunk=chunk, device="cpu")
    with pytest.raises(UserError, match="float32"):
        embed(volume, model, out=np.zeros((*volume.shape, 2), np.int32), device="cpu")
    with pytest.raises(UserError, match="must have shape"):
        embed(volume, model, out=np.zeros((*volume.shape, 3), np.float32), device="cpu")


def test_segment_rejects_an_embedding_of_another_shape(small_model, good):
    from napari_hypseg.segmentation.pipeline import cluster_embedding

    model = load_model(small_model)
    volume = np.asarray(read_volume(good).data)
    wrong = np.zeros((10, 10, 10, 2), np.float32)
    with pytest.raises(UserError, match=r"the embedding has shape \(10, 10, 10, 2\)"):
        cluster_embedding(wrong, model, volume=volume, k_max=2, device="cpu")


def test_assign_clusters_needs_a_centroid():
    with pytest.raises(UserError, match="at least one centroid"):
        assign_clusters(np.zeros((5, 2), np.float32), np.zeros((0, 2), np.float32))


def test_labels_beyond_32_bits_are_written_to_nifti_as_uint64(tmp_path):
    labels = np.zeros((3, 4, 5), np.uint64)
    labels[1, 2, 3] = 2**33 + 7
    path = write_labels(tmp_path / "big.nii.gz", labels)
    back = read_volume(path).data
    assert back.dtype == np.uint64 and int(back.max()) == 2**33 + 7


def test_binning_larger_than_the_volume_says_so(small_model):
    from napari_hypseg.segmentation.binning import bin_volume

    volume = np.random.default_rng(0).normal(size=(24, 24, 24)).astype(np.float32)
    with pytest.raises(UserError, match=r"bin factor 64 is larger than the volume \(24x24x24 voxels\)"):
        segment(volume, load_model(small_model), binning=64, k_max=2, device="cpu")
    for factor in (0, -2, 1.5):
        with pytest.raises(UserError, match="integer >= 1"):
            bin_volume(volume, factor)
