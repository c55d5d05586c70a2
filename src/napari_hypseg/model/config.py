"""Model hyper-parameters: one dataclass, saved inside every model file."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

from .._errors import SettingError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the hyperbolic (or Euclidean) VAE.

    The encoder is a stack of *unpadded* 3D convolutions (kernel ``kernel_size``,
    one layer per entry of ``channels``). Without padding the encoder is exactly
    translation-equivariant, so encoding every voxel of a volume is one fully
    convolutional pass (see :mod:`napari_hypseg.segmentation.embed`). The input
    patch edge ``m`` is therefore fixed by the architecture:
    ``m = 1 + len(channels) * (kernel_size - 1)`` (17 for the paper's four
    kernel-5 layers), and the conv stack maps an m³ patch to one 1³ feature.

    Attributes
    ----------
    latent_dim : int
        Dimension d of the latent space (the paper uses 2).
    channels : tuple of int
        Encoder feature widths; the decoder mirrors them.
    kernel_size : int
        Edge of every convolution kernel.
    hidden : int
        Width of the 1×1 layer between the conv stack and the posterior heads,
        and of the decoder's first (gyroplane) layer.
    manifold : {"poincare", "euclidean"}
        Latent geometry: Poincaré ball of curvature -1 with wrapped normals,
        or R^d with Gaussians (the paper's Euclidean ablation).
    gyroplane : bool
        Open the decoder with the gyroplane layer (hyperbolic only). When False
        the decoder maps log_0(z) through an ordinary linear layer.
    prior_scale : float
        Standard deviation of the prior (wrapped) normal at the origin.
    max_tangent_norm : float
        Bound r of the encoder's tangent vectors, applied smoothly as
        ``r·tanh(|v|/r)`` before the exponential map; latent points stay within
        hyperbolic distance ``2r`` of the origin (Euclidean radius tanh(r)).
    """

    latent_dim: int = 2
    channels: tuple[int, ...] = (16, 32, 64, 128)
    kernel_size: int = 5
    hidden: int = 300
    manifold: str = "poincare"
    gyroplane: bool = True
    prior_scale: float = 1.0
    max_tangent_norm: float = 3.0

    def __post_init__(self) -> None:
        # model files are user input: every field is checked for type as well as range
        if self.manifold not in ("poincare", "euclidean"):
            raise SettingError("manifold", f"must be 'poincare' or 'euclidean', got {self.manifold!r}")
        if not _is_int(self.latent_dim) or self.latent_dim < 1:
            raise SettingError("latent_dim", f"must be >= 1, got {self.latent_dim!r}")
        if not _is_int(self.kernel_size) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise SettingError("kernel_size", f"must be odd and positive, got {self.kernel_size!r}")
        if not _is_int(self.hidden) or self.hidden < 1:
            raise SettingError("hidden", f"must be >= 1, got {self.hidden!r}")
        if not isinstance(self.channels, (list, tuple)) or not self.channels:
            raise SettingError("channels", "must name at least one encoder layer")
        if not all(_is_int(c) and c >= 1 for c in self.channels):
            raise SettingError("channels", f"must be positive integers, got {list(self.channels)!r}")
        for name in ("prior_scale", "max_tangent_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise SettingError(name, f"must be a positive number, got {value!r}")
        # tuples survive a round trip through weights-only checkpoints as lists
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

    @property
    def patch_size(self) -> int:
        """Edge m of the encoder's input patch (= its receptive field)."""
        return 1 + len(self.channels) * (self.kernel_size - 1)

    @property
    def hyperbolic(self) -> bool:
        return self.manifold == "poincare"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
