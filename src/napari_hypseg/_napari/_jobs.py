"""Long jobs of the widgets, written to run as napari generator workers.

Each job's ``run`` is a generator: it yields progress events (a
:class:`TrainEvent`, a :class:`SegmentProgress`) and returns its result,
which the GUI thread receives through the worker's ``yielded`` and
``returned`` signals. ``worker.quit()`` stops a job at its next event; its
thread-safe ``cancel`` stops it at the next step of the computation.
Failures are returned as :class:`JobFailed` values instead of raised, so the
widget shows one explained notification (napari would otherwise add a
traceback notification of its own) and always gets its ``finished`` signal
to restore the buttons.

Nothing here touches Qt widgets or layers.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._errors import UserError
from ..model import HyperbolicVAE, ModelConfig
from ..segment_config import SegmentConfig
from ..segmentation.embed import EmbeddingCancelled
from ..training import TrainConfig, Trainer, TrainEvent

_WARM = False


def warm_up() -> None:
    """Pay, once and in the GUI thread when a widget opens, for slow first uses that would stall jobs.

    Importing in a worker thread does not keep the GUI responsive: loading a
    large module holds the GIL for 50–200 ms at a time, which froze napari
    when the first optimizer (torch imports its compiler stack, ~1 s) or the
    clustering code (scipy.optimize) was created mid-job (measured by
    benchmarks/bench_gui_stall.py). The first labels layer is warmed per
    viewer by :func:`._layers.warm_up_labels_display`.
    """
    global _WARM
    if _WARM:
        return
    from ..segmentation import pipeline  # noqa: F401 - imports the clustering stack

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    _WARM = True


@dataclass
class JobFailed:
    """A job ended with an exception; :attr:`message` explains it to the user."""

    error: BaseException
    message: str


@dataclass
class JobCancelled:
    """A cancellable job stopped early at the user's request."""

    message: str = "cancelled"


def explain(error: BaseException, what: str) -> str:
    """A message for a notification: what failed, why, and what to try."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, torch.cuda.OutOfMemoryError):
        hint = (
            "lower the batch size (Advanced), close other programs using the GPU, or choose device cpu"
            if what == "training"
            else "choose device cpu, or close other programs using the GPU"
        )
        return f"The GPU ran out of memory during {what}: {hint}."
    if isinstance(error, MemoryError):
        return f"Not enough RAM for {what}: close other layers or programs, or crop the volume."
    return f"{what.capitalize()} failed: {type(error).__name__}: {error}"


def _as_array(data) -> np.ndarray:
    return data if isinstance(data, np.ndarray) else np.asarray(data)


class TrainJob:
    """Build a :class:`Trainer` in the worker thread (it copies the volume) and relay its events.

    :meth:`cancel` may come before the trainer exists; it is then applied as
    soon as the trainer is built, so a cancel is never lost.
    """

    def __init__(self, data, model_config: ModelConfig, train_config: TrainConfig, *, voxel_size=None):
        self._data = data
        self.voxel_size = voxel_size  # (z, y, x) of the layer, recorded in the model
        self.model_config = model_config
        self.train_config = train_config
        self.trainer: Trainer | None = None
        self._lock = threading.Lock()
        self._cancelled = False

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            trainer = self.trainer
        if trainer is not None:
            trainer.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def run(self) -> Iterator[TrainEvent | JobFailed]:
        try:
            trainer = Trainer(
                [_as_array(self._data)],
                model_config=self.model_config,
                train_config=self.train_config,
                voxel_size=self.voxel_size,
            )
            with self._lock:
                self.trainer = trainer
                if self._cancelled:
                    trainer.cancel()
            yield from trainer.run()
        except Exception as exc:  # reported to the user by the widget, not raised in the thread
            yield JobFailed(exc, explain(exc, "training"))


@dataclass(frozen=True)
class SegmentProgress:
    """How far a segmentation is: ``done`` of ``total`` in ``stage`` ("embed", "features" or "cluster")."""

    stage: str
    done: int
    total: int


def stop_when_destroyed(owner, stop: Callable[[], None]) -> Callable[[], None]:
    """Call ``stop`` if the Qt object ``owner`` (a dock widget) is destroyed first.

    Returns the function that forgets it.

    Call that function when the job ends. ``stop`` must not refer to
    ``owner``: PyQt does not call a bound method of an object being destroyed,
    and a closure over the widget would keep it (and its viewer) alive.
    """

    def on_destroyed(*_) -> None:
        stop()

    owner.destroyed.connect(on_destroyed)

    def forget() -> None:
        try:
            owner.destroyed.disconnect(on_destroyed)
        except (RuntimeError, TypeError):  # the owner is gone, and its connections with it
            pass

    return forget


class SegmentJob:
    """Dense embedding plus clustering (:func:`segment`), or clustering alone of a given ``embedding``.

    ``data`` is the source voxels; re-clustering an embedding needs them only
    in the mixture mode (it fuses the embedding with the intensities) and
    otherwise takes the source grid as ``shape``.
    """

    def __init__(
        self,
        data,
        model: HyperbolicVAE,
        config: SegmentConfig,
        *,
        embedding: np.ndarray | None = None,
        shape: tuple[int, ...] | None = None,
        resample: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    ):
        if data is None and embedding is None:
            raise ValueError("SegmentJob needs the source voxels to embed")
        self._data = data
        self.model = model
        self.config = config
        self.embedding = embedding
        self.shape = shape
        # (voxel size of the data, the model's): segment at the model's voxel size, result on the data's grid
        self.resample = resample
        self._stop = threading.Event()

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def _compute(self, report: Callable[[str, int, int], None]):
        from ..segmentation.pipeline import cluster_embedding, segment
        from ..segmentation.resample import segment_at_voxel_size

        if self.embedding is not None:
            return cluster_embedding(
                self.embedding,
                self.model,
                self.config,
                volume=None if self._data is None else _as_array(self._data),
                shape=self.shape if self._data is None else None,
                progress=report,
            )
        if self.resample is not None:
            source, target = self.resample
            return segment_at_voxel_size(
                _as_array(self._data),
                self.model,
                self.config,
                voxel_size=source,
                target=target,
                progress=report,
                should_stop=self._stop.is_set,
            )
        return segment(_as_array(self._data), self.model, self.config, progress=report, should_stop=self._stop.is_set)

    def run(self) -> Generator[SegmentProgress, None, Any]:
        """Yield :class:`SegmentProgress`; return the :class:`Segmentation`,
        or :class:`JobCancelled` / :class:`JobFailed`."""
        try:
            return (yield from _relay(self._compute, self._stop))
        except EmbeddingCancelled:
            return JobCancelled("segmentation cancelled")
        except Exception as exc:
            if self._stop.is_set():
                return JobCancelled("segmentation cancelled")
            return JobFailed(exc, explain(exc, "segmentation"))


_DONE = object()
#: how long the relay waits for a report before it checks for a cancel and yields again
_WAKE_S = 0.25


def _relay(compute: Callable[[Callable[[str, int, int], None]], Any], stop: threading.Event):
    """Run ``compute(report)`` in a helper thread; yield its latest progress whenever there is news; return its result.

    The core reports progress through a callback, deep inside the embedding
    and clustering loops, and a generator cannot yield from there: the
    computation runs beside the generator, which relays what it reports.
    ``report`` raises :class:`EmbeddingCancelled` once ``stop`` is set (the
    clustering has no stop hook of its own); closing the generator sets it.
    Between reports the relay wakes every :data:`_WAKE_S` seconds, so a cancel
    or ``worker.quit()`` ends the job at once even while one step runs long.
    The computation's exceptions are raised here.
    """
    news: queue.SimpleQueue = queue.SimpleQueue()
    outcome: list = []

    def report(stage: str, done: int, total: int) -> None:
        if stop.is_set():
            raise EmbeddingCancelled("segmentation cancelled")
        news.put(SegmentProgress(stage, int(done), int(total)))

    def target() -> None:
        try:
            outcome.append((True, compute(report)))
        except BaseException as exc:  # noqa: BLE001 - handed to the generator, which raises it
            outcome.append((False, exc))
        finally:
            news.put(_DONE)

    helper = threading.Thread(target=target, name="hypseg segmentation", daemon=True)
    helper.start()
    finished = False
    latest = None
    try:
        while not finished:
            try:
                items = [news.get(timeout=_WAKE_S)]
            except queue.Empty:  # a long step between two reports
                if stop.is_set():  # cancelled: the helper stops at its next report; its result is not wanted
                    raise EmbeddingCancelled("segmentation cancelled") from None
                if latest is not None:
                    yield latest  # the worker acts on quit() at a yield
                continue
            while True:  # only the newest report is worth showing
                try:
                    items.append(news.get_nowait())
                except queue.Empty:
                    break
            finished = items[-1] is _DONE
            reports = [item for item in items if item is not _DONE]
            if reports:
                latest = reports[-1]
                yield latest
    finally:
        if not finished:  # closed early: the helper stops at its next report
            stop.set()
    helper.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
