"""Training hyper-parameters: one dataclass, stored in every model file and read by CLI and widgets."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .._device import DEFAULT_DEVICE, check_device_name
from .._errors import SettingError

#: how a triplet's negative box is chosen (:attr:`SamplerConfig.negatives`)
NEGATIVE_RULES = ("spatial", "content")


@dataclass(frozen=True)
class SamplerConfig:
    """Patch scales for the hierarchical triplets, in voxels.

    Anchors have edge ``r`` drawn from ``[anchor_min, anchor_max]`` (clipped to
    the volume); positives and negatives have edge ``r_child`` drawn uniformly
    from ``[child_min, r - child_gap]``. ``scale_sampling="log"`` draws ``r``
    log-uniformly (the paper's scheme for large inputs); ``"auto"`` picks it
    when the anchor range spans more than a factor of 4.
    """

    anchor_min: int = 9
    anchor_max: int = 40
    child_min: int = 5
    child_gap: int = 4
    scale_sampling: str = "auto"
    # anchors whose normalised intensity std is below this are homogeneous
    # background (e.g. the zero fill of a rotated tomogram) and are redrawn
    min_std: float = 1e-3
    # how a triplet's negative is chosen: "spatial" (any box that misses the anchor, the paper's rule) or
    # "content" (of `negative_candidates` such boxes, the one whose intensity content differs most from
    # the positive's: pushes different materials apart instead of the same material in another place)
    negatives: str = "spatial"
    negative_candidates: int = 4

    def __post_init__(self) -> None:
        if self.scale_sampling not in ("uniform", "log", "auto"):
            raise ValueError(f"scale_sampling must be uniform, log or auto, got {self.scale_sampling!r}")
        if self.child_min < 1:
            raise ValueError(f"child_min must be >= 1, got {self.child_min}")
        if self.negatives not in NEGATIVE_RULES:
            raise ValueError(f"negatives must be one of {', '.join(NEGATIVE_RULES)}, got {self.negatives!r}")
        if self.negative_candidates < 1:
            raise ValueError(f"negative_candidates must be >= 1, got {self.negative_candidates}")
        if self.child_min + self.child_gap > self.anchor_max:
            raise ValueError("child_min + child_gap must not exceed anchor_max")
        if self.anchor_min > self.anchor_max:
            raise ValueError("anchor_min must not exceed anchor_max")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are sized for a few minutes on 2 CPU cores (docs/training.md).

    ``lr`` is far above the authors' 5e-7: with Adam and gradient clipping the
    loss on the phantom falls within a few hundred steps at 1e-3 (measured in
    docs/training.md), while 5e-7 barely moves in that budget.
    """

    steps: int = 600
    max_minutes: float | None = None
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 50
    grad_clip: float = 8.0
    kl_weight: float = 1.0
    triplet: bool = True
    triplet_weight: float = 1e3
    triplet_margin: float = 0.2
    n_samples: int = 1
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    device: str = DEFAULT_DEVICE
    seed: int = 0
    amp: bool = True
    log_every: int = 5
    preview_every: int = 50
    preview_points: int = 4096
    # periodic saves to the checkpoint path, so a killed run keeps its progress:
    # every `checkpoint_every` steps (0 = off) and at least every
    # `checkpoint_minutes` (0 = off); a minute costs < 1 s of saving on CPU
    checkpoint_every: int = 0
    checkpoint_minutes: float = 1.0

    def __post_init__(self) -> None:
        _require(self, "steps", int, lambda v: v >= 0, "must be >= 0")
        _require(self, "batch_size", int, lambda v: v >= 1, "must be >= 1")
        _require(self, "lr", float, lambda v: math.isfinite(v) and v > 0, "must be a positive number")
        _require(self, "warmup_steps", int, lambda v: v >= 0, "must be >= 0")
        _require(self, "log_every", int, lambda v: v >= 1, "must be >= 1")
        _require(self, "checkpoint_every", int, lambda v: v >= 0, "must be >= 0")
        _require(self, "checkpoint_minutes", float, lambda v: math.isfinite(v) and v >= 0, "must be >= 0")
        if self.max_minutes is not None:
            _require(self, "max_minutes", float, lambda v: math.isfinite(v) and v > 0, "must be a positive number")
        check_device_name(self.device)

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("sampler"), dict):
            sampler_known = {f.name for f in fields(SamplerConfig)}
            values["sampler"] = SamplerConfig(**{k: v for k, v in values["sampler"].items() if k in sampler_known})
        return cls(**values)


def _require(config, name: str, kind: type, ok, reason: str) -> None:
    value = getattr(config, name)
    allowed = numbers.Integral if kind is int else numbers.Real
    if isinstance(value, bool) or not isinstance(value, allowed) or not ok(value):
        raise SettingError(name, f"{reason}, got {value!r}")
