"""What a training run reports while it runs (consumed by the CLI progress bar and the widgets)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Preview:
    """Current embedding of a fixed voxel subsample: ``coords`` (N, 3) int, ``embedding`` (N, d) float32."""

    coords: np.ndarray
    embedding: np.ndarray


@dataclass
class TrainEvent:
    """One report from :meth:`Trainer.run`.

    ``kind`` is ``"start"``, ``"step"`` (losses averaged since the last
    report), ``"preview"`` (with :attr:`preview`), or a final ``"done"``,
    ``"cancelled"``, ``"time_budget"`` or ``"nonfinite"`` (with a message).
    """

    kind: str
    step: int
    total_steps: int
    elapsed_s: float = 0.0
    steps_per_s: float = 0.0
    eta_s: float = float("nan")
    losses: dict[str, float] = field(default_factory=dict)
    preview: Preview | None = None
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.kind in ("done", "cancelled", "time_budget", "nonfinite")
