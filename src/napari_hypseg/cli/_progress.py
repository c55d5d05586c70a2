"""A dependency-free progress line for long CLI jobs, and Ctrl-C as a cooperative cancel."""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 60:d}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600:d}h{seconds % 3600 // 60:02d}"


class ProgressLine:
    """Redraws one status line on a terminal; prints a line every ~10% otherwise (logs, CI)."""

    def __init__(self, label: str, *, stream=None, width: int = 24):
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_decile = -1
        self._last_draw = 0.0

    def update(self, done: float, total: float, detail: str = "") -> None:
        frac = min(1.0, done / total) if total else 1.0
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < 0.1 and frac < 1.0:
                return
            self._last_draw = now
            bar = "#" * int(frac * self.width)
            self.stream.write(f"\r{self.label} [{bar:<{self.width}}] {frac:4.0%} {detail}\033[K")
            self.stream.flush()
        else:
            decile = int(frac * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                print(f"{self.label} {frac:4.0%} {detail}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def train_detail(event) -> str:
    loss = event.losses.get("loss")
    parts = [f"step {event.step}/{event.total_steps}"]
    if loss is not None:
        parts.append(f"loss {loss:.4g}")
    if event.steps_per_s:
        parts.append(f"{event.steps_per_s:.2f} it/s ETA {_clock(event.eta_s)}")
    return " ".join(parts)


class Interrupt:
    """What :func:`interrupt_cancels` caught: ``name`` is "Ctrl-C" or "SIGTERM", None while nothing arrived."""

    name: str | None = None


@contextlib.contextmanager
def interrupt_cancels(cancel: Callable[[], None], what: str) -> Iterator[Interrupt]:
    """First Ctrl-C or SIGTERM calls ``cancel()`` (the job stops cleanly, keeping its result); a second one aborts.

    SIGTERM is what ``kill``, ``timeout`` and batch schedulers send before
    SIGKILL, so it gets the same clean stop as Ctrl-C.
    """
    caught = Interrupt()
    signums = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {s: signal.getsignal(s) for s in signums}
    except ValueError:  # pragma: no cover - getsignal works in any thread
        previous = {}

    def handler(signum, frame):
        for s in signums:
            signal.signal(s, previous[s])
        caught.name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\ninterrupt ({caught.name}): stopping {what} after the current step (again to abort)", file=sys.stderr)
        cancel()

    try:
        for s in signums:
            signal.signal(s, handler)
    except ValueError:  # not the main thread: no signal handling, Ctrl-C behaves as usual
        yield caught
        return
    try:
        yield caught
    finally:
        for s in signums:
            signal.signal(s, previous[s])
