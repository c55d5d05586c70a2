"""A progress bar for long CLI jobs (tqdm on a terminal, plain lines otherwise), and Ctrl-C as a cooperative cancel."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator

#: Seconds between redraws of the terminal bar: often enough to look live, rarely enough to cost nothing.
REDRAW_S = 0.1


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    return (
        f"{seconds // 60:d}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600:d}h{seconds % 3600 // 60:02d}"
    )


def _columns(stream) -> int | None:
    """Width of the terminal behind ``stream``; None when it reports none (a fresh pty says 0 columns)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None
    return columns or None


class ProgressLine:
    """A tqdm bar redrawn in place on a terminal; a plain line every ~10% otherwise (logs, CI, pipes).

    ``update(done, total, detail)`` takes absolute counts, so a caller that
    moves through stages of different lengths (segmenting: embed, then
    cluster) just passes the new total: the bar starts over for that stage.
    """

    def __init__(self, label: str, *, stream=None, width: int = 24):
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_decile = -1
        self._bar = None

    def update(self, done: float, total: float, detail: str = "") -> None:
        if not total:  # nothing to do is all done
            done = total = 1
        done = min(done, total)
        if self.tty:
            self._draw(done, total, detail)
        else:
            decile = int(done / total * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                print(f"{self.label} {done / total:4.0%} {detail}", file=self.stream, flush=True)

    def _draw(self, done: float, total: float, detail: str) -> None:
        if self._bar is None:
            from tqdm import tqdm

            # The detail of a training step carries the trainer's own rate and ETA (which know
            # its time limit), so the bar shows the elapsed time only, not tqdm's estimate.
            self._bar = tqdm(
                total=total,
                desc=self.label,
                file=self.stream,
                leave=True,
                ncols=_columns(self.stream),
                mininterval=REDRAW_S,
                miniters=1,
                bar_format="{desc}: {percentage:3.0f}%|{bar:" + str(self.width) + "}| {elapsed}{postfix}",
            )
        bar = self._bar
        # measured here, not by tqdm's dynamic_ncols: that reads a 0-column pty as -1 and draws nothing
        bar.ncols = _columns(self.stream)
        bar.set_postfix_str(detail, refresh=False)
        if total != bar.total or done < bar.n:
            bar.reset(total=total)  # a new stage: its own total and clock
        bar.update(done - bar.n)  # redraws at most every REDRAW_S seconds...
        if done == total:
            bar.refresh()  # ...but a finished stage always shows as finished before the next one starts

    def close(self) -> None:
        """Draw the final state and end the line; safe to call twice or before any update."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
