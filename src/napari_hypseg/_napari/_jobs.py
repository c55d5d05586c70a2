"""Long jobs of the widgets, written to run in napari worker threads.

Each job is a plain object with a ``run`` method (a generator for training)
and a thread-safe ``cancel``. Failures are returned as :class:`JobFailed`
values instead of raised, so the widget shows one explained notification
(napari would otherwise add a traceback notification of its own) and always
gets its ``finished`` signal to restore the buttons.

Nothing here touches Qt widgets or layers: the GUI thread reads results
from the worker's ``yielded``/``returned`` signals and polls
:attr:`SegmentJob.progress` with a timer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

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
            trainer = Trainer([_as_array(self._data)], model_config=self.model_config, train_config=self.train_config,
                              voxel_size=self.voxel_size)
            with self._lock:
                self.trainer = trainer
                if self._cancelled:
                    trainer.cancel()
            yield from trainer.run()
        except Exception as exc:  # reported to the user by the widget, not raised in the thread
            yield JobFailed(exc, explain(exc, "training"))


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
        # (stage, done, total), replaced as a whole so the GUI thread reads a consistent tuple
        self.progress: tuple[str, int, int] = ("start", 0, 1)

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def _report(self, stage: str, done: int, total: int) -> None:
        self.progress = (stage, done, total)
        if self._stop.is_set():
            # clustering has no stop hook of its own; it stops when its progress callback raises
            raise EmbeddingCancelled("segmentation cancelled")

    def run(self):
        """Return the :class:`Segmentation`, or :class:`JobCancelled` / :class:`JobFailed`."""
        from ..segmentation.pipeline import cluster_embedding, segment
        from ..segmentation.resample import segment_at_voxel_size

        try:
            if self.embedding is not None:
                return cluster_embedding(
                    self.embedding, self.model, self.config,
                    volume=None if self._data is None else _as_array(self._data),
                    shape=self.shape if self._data is None else None,
                    progress=self._report,
                )
            if self.resample is not None:
                source, target = self.resample
                return segment_at_voxel_size(
                    _as_array(self._data), self.model, self.config, voxel_size=source, target=target,
                    progress=self._report, should_stop=self._stop.is_set,
                )
            return segment(_as_array(self._data), self.model, self.config, progress=self._report,
                           should_stop=self._stop.is_set)
        except EmbeddingCancelled:
            return JobCancelled("segmentation cancelled")
        except Exception as exc:
            if self._stop.is_set():
                return JobCancelled("segmentation cancelled")
            return JobFailed(exc, explain(exc, "segmentation"))
