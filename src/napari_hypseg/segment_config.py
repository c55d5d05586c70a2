"""How a volume is segmented: one dataclass, read by the CLI's options, the widgets and the pipeline.

Free of torch (like :mod:`napari_hypseg.training.config`), so the CLI can
build its options from these defaults at start-up; it lives outside the
``segmentation`` package because importing that package loads torch. Every value is checked
once, when a config is made; :class:`~napari_hypseg._errors.SettingError`
names the field, so the CLI can name its option instead.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Any

from ._device import DEFAULT_DEVICE, check_device_name
from ._errors import SettingError, UserError
from .segment_modes import DEFAULT_MODE, MAX_CLUSTERS, MIN_CLUSTERS, MODES

#: the intensity channels the clustering can read; "auto" picks one per volume from its noise
INTENSITY_KINDS = ("raw", "denoised")
DEFAULT_INTENSITY = "auto"
INTENSITY_CHOICES = (DEFAULT_INTENSITY, *INTENSITY_KINDS)
#: the mixture adds what a thin wall of its k = 2 level encloses as a cluster (segmentation/compartments.py)
COMPARTMENTS = True
#: block edge of the blockwise embedding on CPU (~0.3 GiB of peak activations) and on a GPU (~5 GiB)
CPU_BLOCK = 48
GPU_BLOCK = 128


@dataclass(frozen=True)
class FusionConfig:
    """How the clustering features are made (:mod:`napari_hypseg.segmentation.fusion`).

    Attributes
    ----------
    intensity : {"auto", "raw", "denoised"}
        Intensity channel; "auto" chooses per volume from its estimated noise
        (:func:`napari_hypseg.segmentation.channels.choose_channel`).
    embedding_weight : float
        Scale of the embedding block relative to the unit-variance intensity
        channel; 0 leaves the embedding out of the clustering. The default is
        0 because, fused this way, the embedding lost on the real MRI and the
        phantoms and gained little on the tomogram (the numbers are in
        docs/method.md). A full-covariance mixture is affine-invariant, so the
        weight barely matters once it is above 0: what the embedding encodes does.
    embedding_components : int
        Principal directions of the tangent embedding kept (at most the latent dimension).
    """

    intensity: str = DEFAULT_INTENSITY
    embedding_weight: float = 0.0
    embedding_components: int = 2

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITY_CHOICES:
            raise UserError(f"intensity must be one of {', '.join(INTENSITY_CHOICES)}, got {self.intensity!r}")
        if not math.isfinite(self.embedding_weight) or self.embedding_weight < 0:
            raise UserError(f"embedding_weight must be >= 0, got {self.embedding_weight}")
        if self.embedding_components < 1:
            raise UserError(f"embedding_components must be >= 1, got {self.embedding_components}")


@dataclass(frozen=True)
class SegmentConfig:
    """Which levels, which clustering, and how the embedding is computed.

    Attributes
    ----------
    k_min, k_max : int
        Levels computed, every k from k_min to k_max (the slider's range in
        napari; the CLI computes up to the largest k of ``--clusters``).
    mode : {"mixture", "nested", "flat"}
        Clustering of each level (:mod:`napari_hypseg.segment_modes`).
    window : int or tuple of int, optional
        Embedding window edge(s) in voxels; None = the model's patch. Several
        windows are fused.
    stride : int
        Embed every ``stride``-th voxel and interpolate (a fast preview).
    binning : int
        Mean-pool the volume by this factor before embedding (big tomograms);
        labels come back on the source grid.
    device : str
        ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
    seed : int
        Seed of the clustering (k-means initialisations, mixture fits).
    fusion : FusionConfig
        The mixture's features.
    compartments : bool
        Mixture mode: when a cluster of the k = 2 level is a thin wall, what it
        encloses is a cluster of its own from k = 3 on.
    """

    k_min: int = MIN_CLUSTERS
    k_max: int = 16
    mode: str = DEFAULT_MODE
    window: int | tuple[int, ...] | None = None
    stride: int = 1
    binning: int = 1
    device: str = DEFAULT_DEVICE
    seed: int = 0
    fusion: FusionConfig = field(default_factory=FusionConfig)
    compartments: bool = COMPARTMENTS

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingError("mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("k_min", "k_max"):
            if not _is_int(getattr(self, name)):
                raise SettingError(name, f"must be a whole number, got {getattr(self, name)!r}")
        if not MIN_CLUSTERS <= self.k_min <= self.k_max <= MAX_CLUSTERS:
            raise SettingError(
                "k_max",
                f"must be at least k_min and at most {MAX_CLUSTERS} (k_min at least {MIN_CLUSTERS}), "
                f"got k_min={self.k_min}, k_max={self.k_max}",
            )
        for name in ("stride", "binning"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise SettingError(name, f"must be >= 1, got {value!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise SettingError("seed", f"must be 0 or more, got {self.seed!r}")
        if self.window is not None:
            windows = (self.window,) if _is_int(self.window) else tuple(self.window)
            if not windows or not all(_is_int(w) and w >= 1 for w in windows):
                raise SettingError("window", f"must be one or more whole numbers of voxels, got {self.window!r}")
            # one spelling per value, so equal configs compare equal
            object.__setattr__(self, "window", windows[0] if len(windows) == 1 else tuple(int(w) for w in windows))
        # a torch.device (what resolve_device returns) is spelled as its name
        object.__setattr__(self, "device", str(self.device))
        check_device_name(self.device)
        if not isinstance(self.compartments, bool):
            raise SettingError("compartments", f"must be True or False, got {self.compartments!r}")
        if not isinstance(self.fusion, FusionConfig):
            raise SettingError("fusion", f"must be a FusionConfig, got {self.fusion!r}")

    @property
    def levels(self) -> range:
        """Every k computed."""
        return range(self.k_min, self.k_max + 1)

    def with_(self, **changes: Any) -> SegmentConfig:
        return replace(self, **changes)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
