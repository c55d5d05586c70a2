"""The CLI progress line: a tqdm bar redrawn in place on a terminal, plain lines in a pipe.

A real pseudo-terminal (``pty.openpty``) stands in for the terminal and a real
``os.pipe`` for a log file or CI; the last test runs ``hypseg sample`` in a
subprocess with its stderr on each.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from napari_hypseg.cli._progress import ProgressLine

SRC = str(Path(__file__).resolve().parents[1] / "src")
FULL_BLOCK = "█"


def _open_pty(columns: int) -> tuple[int, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    # raw output: the terminal driver would otherwise turn every "\n" into "\r\n"
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return master, slave


def _drain(fd: int) -> str:
    """Everything written so far to the other end of ``fd`` (a pty master or a pipe's read end)."""
    out = b""
    while select.select([fd], [], [], 0.5)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    return out.decode("utf-8")


@pytest.fixture
def terminal():
    """A writable text stream on a real 80-column pseudo-terminal, and a function returning what it showed."""
    master, slave = _open_pty(80)
    stream = os.fdopen(slave, "w", encoding="utf-8")
    yield stream, lambda: (stream.flush(), _drain(master))[1]
    stream.close()
    os.close(master)


@pytest.fixture
def pipe():
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", encoding="utf-8")
    yield stream, lambda: (stream.flush(), _drain(read_end))[1]
    stream.close()
    os.close(read_end)


def test_on_a_terminal_one_line_is_redrawn_in_place_and_ended_by_close(terminal):
    stream, shown = terminal
    bar = ProgressLine("train", stream=stream)
    assert bar.tty
    for step in range(0, 41):
        bar.update(step, 40, f"step {step}/40 loss 0.25")
    bar.close()
    text = shown()

    assert text.endswith("\n") and text.count("\n") == 1  # one line, redrawn with "\r", ended once
    frames = [f.rstrip() for f in text[:-1].split("\r") if f.strip()]
    assert frames[0].startswith("train:   0%|")
    assert frames[-1].startswith("train: 100%|" + FULL_BLOCK * 24 + "|")
    assert frames[-1].endswith("step 40/40 loss 0.25")
    assert all(len(f) <= 80 for f in frames)


def test_a_new_total_starts_the_bar_over_for_that_stage(terminal):
    stream, shown = terminal
    bar = ProgressLine("cell.mrc", stream=stream)
    bar.update(10, 10, "embed")
    bar.update(1, 4, "cluster")
    bar.close()
    frames = [f.rstrip() for f in shown().rstrip("\n").split("\r") if f.strip()]

    embed = [f for f in frames if f.endswith("embed")]
    assert embed and embed[-1].startswith("cell.mrc: 100%|")  # the finished stage was drawn finished
    assert frames[-1].startswith("cell.mrc:  25%|") and frames[-1].endswith("cluster")


def test_a_narrow_terminal_gets_lines_that_fit():
    master, slave = _open_pty(40)
    stream = os.fdopen(slave, "w", encoding="utf-8")
    try:
        bar = ProgressLine("train", stream=stream)
        bar.update(3, 7, "a detail far too long to fit on a forty-column terminal line")
        bar.close()
        stream.flush()
        frames = [f.rstrip() for f in _drain(master).rstrip("\n").split("\r") if f.strip()]
    finally:
        stream.close()
        os.close(master)
    assert frames and all(len(f) <= 40 for f in frames)
    assert frames[-1].startswith("train:  43%|")


def test_in_a_pipe_plain_lines_come_every_tenth_and_no_control_characters(pipe):
    stream, shown = pipe
    bar = ProgressLine("phantoms", stream=stream)
    assert not bar.tty
    for i in range(1, 101):
        bar.update(i, 100, f"phantom_{i:03d}.mrc")
    bar.close()
    text = shown()

    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "phantoms   1% phantom_001.mrc"
    assert [line.split()[1] for line in lines] == ["1%"] + [f"{p}%" for p in range(10, 101, 10)]
    assert lines[-1] == "phantoms 100% phantom_100.mrc"


def test_nothing_to_do_reads_as_done_and_close_is_safe_to_repeat(pipe, terminal):
    stream, shown = pipe
    bar = ProgressLine("volumes", stream=stream)
    bar.update(0, 0, "none left")
    bar.close()
    bar.close()
    assert shown() == "volumes 100% none left\n"

    tty_stream, tty_shown = terminal
    untouched = ProgressLine("train", stream=tty_stream)
    untouched.close()  # closed before any update: draws nothing
    assert tty_shown() == ""


@pytest.mark.parametrize("on_terminal", [True, False], ids=["pty", "pipe"])
def test_hypseg_sample_shows_a_bar_on_a_terminal_and_lines_in_a_pipe(tmp_path, on_terminal):
    if on_terminal:
        read_end, write_end = _open_pty(100)
    else:
        read_end, write_end = os.pipe()
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "napari_hypseg.cli",
            "sample",
            "--out",
            str(tmp_path / "data"),
            "--n",
            "3",
            "--size",
            "24",
        ],
        stdout=subprocess.DEVNULL,
        stderr=write_end,
        env=env,
    )
    os.close(write_end)
    chunks = []
    while True:  # read while it runs: a full pty or pipe buffer would block the writer
        try:
            chunk = os.read(read_end, 65536)
        except OSError:  # a pty master reads EIO once the last writer is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode("utf-8")

    assert "writing 3 regular phantoms" in text
    if on_terminal:
        assert "phantoms: 100%|" + FULL_BLOCK * 24 + "|" in text and "\r" in text
    else:
        assert "\r" not in text
        assert "phantoms 100% phantom_" in text
