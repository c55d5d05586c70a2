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


@contextlib.contextmanager
def interrupt_cancels(cancel: Callable[[], None], what: str) -> Iterator[None]:
    """First Ctrl-C calls ``cancel()`` (the job stops cleanly, keeping its result); a second one aborts."""
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        signal.signal(signal.SIGINT, previous)
        print(f"\ninterrupt: stopping {what} after the current step (Ctrl-C again to abort)", file=sys.stderr)
        cancel()

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no signal handling, Ctrl-C behaves as usual
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
