"""Small Qt helpers: rate-limit GUI updates coming from workers, and check widgets are still alive."""

from __future__ import annotations

import time
from collections.abc import Callable

from qtpy.QtCore import QObject, QTimer


class Throttle(QObject):
    """Call ``callback`` at most once per ``interval_ms``; the last request is never dropped.

    ``request()`` is cheap and may be called for every worker event: the first
    request after a quiet period runs on the next event-loop turn, later ones
    are coalesced into one call when the interval has passed.
    """

    def __init__(self, callback: Callable[[], None], interval_ms: int, parent: QObject | None = None):
        super().__init__(parent)
        self._callback = callback
        self._interval = interval_ms / 1000.0
        self._last = -float("inf")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._fire)

    def request(self) -> None:
        if self._timer.isActive():
            return
        wait = max(0.0, self._last + self._interval - time.perf_counter())
        self._timer.start(int(wait * 1000))

    def flush(self) -> None:
        """Run a pending call now (e.g. for the final state of a job)."""
        if self._timer.isActive():
            self._timer.stop()
            self._fire()

    def cancel(self) -> None:
        self._timer.stop()

    def _fire(self) -> None:
        self._last = time.perf_counter()
        self._callback()


def is_alive(obj: QObject) -> bool:
    """False once the C++ side of a Qt object is deleted (a docked widget after its viewer closed).

    Worker results can arrive after that; handlers connected through lambdas
    check this first (PyQt disconnects bound methods of deleted objects itself).
    """
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True
