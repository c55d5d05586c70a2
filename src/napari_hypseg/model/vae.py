"""The 3D convolutional VAE with a Poincaré-ball (or Euclidean) latent space.

Shapes: patches are ``(B, 1, m, m, m)`` with ``m = config.patch_size``; the
encoder is fully convolutional, so a larger input ``(B, 1, Z+m-1, Y+m-1,
X+m-1)`` gives one posterior per output voxel ``(B, d, Z, Y, X)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import hyperbolic as hyp
from .._intensity_range import OUTLIER_SPANS
from .config import ModelConfig

# A posterior scale this small is numerically a point mass; the floor keeps
# log-densities finite (the authors' code used the same 1e-5).
_MIN_SCALE = 1e-5


def _to_manifold(v: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Encoder output (tangent vector at 0, channel dim 1) → latent point.

    On the ball the tangent vector's norm is squashed smoothly below
    ``config.max_tangent_norm`` before the exponential map, ``|v| -> r·tanh(|v|/r)``
    (a soft version of the feature clipping of Guo et al., CVPR 2022).
    Unbounded, a few large Adam steps push every embedding to where float32
    tanh saturates and the latent space collapses onto one boundary point; a
    hard clip instead makes the bound sticky (zero radial gradient beyond it),
    and we saw every voxel end on that circle.
    """
    if not config.hyperbolic:
        return v
    r = config.max_tangent_norm
    norm = torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(1e-12)
    v = v * (r * torch.tanh(norm / r) / norm)
    return hyp.expmap0(v, dim=1)


class Encoder(nn.Module):
    """Unpadded conv stack + 1×1 heads: patch → (posterior location, scale)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        in_ch = 1
        for out_ch in config.channels:
            layers += [nn.Conv3d(in_ch, out_ch, config.kernel_size), nn.ReLU(inplace=True)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Sequential(nn.Conv3d(in_ch, config.hidden, 1), nn.ReLU(inplace=True))
        self.loc_head = nn.Conv3d(config.hidden, config.latent_dim, 1)
        self.scale_head = nn.Conv3d(config.hidden, config.latent_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``loc`` and ``scale``, each ``(B, d, *spatial_out)``; ``loc`` lies on the manifold."""
        h = self.hidden(self.features(x))
        loc = _to_manifold(self.loc_head(h).float(), self.config)
        scale = F.softplus(self.scale_head(h).float()) + _MIN_SCALE
        return loc, scale

    def mean(self, x: torch.Tensor, *, stride: int = 1) -> torch.Tensor:
        """Posterior location only (what segmentation clusters).

        With ``stride > 1`` the last convolution (the most expensive one) and
        the heads are evaluated only on every ``stride``-th output voxel; the
        outputs there are exact, the caller interpolates in between.
        """
        if stride == 1:
            h = self.features(x)
        else:
            *early, last_conv, last_act = self.features
            h = nn.Sequential(*early)(x) if early else x
            h = last_act(F.conv3d(h, last_conv.weight, last_conv.bias, stride=stride))
        return _to_manifold(self.loc_head(self.hidden(h)).float(), self.config)


class Decoder(nn.Module):
    """Latent point → patch. Opens with the gyroplane layer on the ball."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        if config.hyperbolic and config.gyroplane:
            self.first = hyp.GyroplaneLayer(config.latent_dim, config.hidden)
        else:
            self.first = nn.Conv3d(config.latent_dim, config.hidden, 1)
        widths = list(reversed(config.channels))
        layers: list[nn.Module] = [nn.ReLU(inplace=True), nn.Conv3d(config.hidden, widths[0], 1), nn.ReLU(inplace=True)]
        for in_ch, out_ch in zip(widths, widths[1:] + [1]):
            layers.append(nn.ConvTranspose3d(in_ch, out_ch, config.kernel_size))
            if out_ch != 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` of shape ``(B, d)`` → reconstruction ``(B, 1, m, m, m)``."""
        z = z.float().reshape(*z.shape, 1, 1, 1)
        # ball geometry stays in float32 even under mixed precision: near the
        # boundary bfloat16 cannot tell 1 - |z|^2 from 0
        with torch.autocast(device_type=z.device.type, enabled=False):
            if self.config.hyperbolic and not self.config.gyroplane:
                # without the gyroplane layer the decoder reads the ball through its tangent space at 0
                z = hyp.logmap0(z, dim=1)
            h = self.first(z)
        return self.body(h)


def normalise_intensity(x: torch.Tensor, low, high) -> torch.Tensor:
    """``low`` -> 0, ``high`` -> 1, clamped to ±:data:`OUTLIER_SPANS` beyond (``low``, ``high``: floats or
    0-d tensors)."""
    return ((x - low) / (high - low)).clamp(-OUTLIER_SPANS, 1.0 + OUTLIER_SPANS)


class HyperbolicVAE(nn.Module):
    """Encoder, decoder, prior and the robust intensity normalisation of the training data."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        # robust 1st/99th percentiles of the training intensities; saved with the weights
        self.register_buffer("intensity_low", torch.tensor(0.0))
        self.register_buffer("intensity_high", torch.tensor(1.0))
        #: physical voxel size (z, y, x) of the training data, stored in the model file; None if unknown
        self.voxel_size: tuple[float, float, float] | None = None

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    def set_normalization(self, low: float, high: float) -> None:
        if not high > low:
            raise ValueError(f"normalisation needs high > low, got ({low}, {high})")
        self.intensity_low.fill_(float(low))
        self.intensity_high.fill_(float(high))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map raw intensities so the training data's 1st..99th percentiles span 0..1 (clamped to
        ±:data:`OUTLIER_SPANS` beyond)."""
        return normalise_intensity(x, self.intensity_low, self.intensity_high)

    def posterior(self, loc: torch.Tensor, scale: torch.Tensor):
        if self.config.hyperbolic:
            # argument validation reads values back from the device every call
            return hyp.WrappedNormal(loc, scale, validate_args=False)
        return torch.distributions.Normal(loc, scale, validate_args=False)

    def prior(self, like: torch.Tensor):
        loc = torch.zeros_like(like)
        scale = torch.full_like(like, self.config.prior_scale)
        return self.posterior(loc, scale)

    def latent_distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Geodesic distance in the latent space along the last axis."""
        if self.config.hyperbolic:
            return hyp.dist(x, y, dim=-1)
        return torch.linalg.vector_norm(x - y, dim=-1)

    def forward(self, patches: torch.Tensor, n_samples: int = 1):
        """Encode normalised patches ``(B, 1, m, m, m)``, sample, decode.

        Returns ``(recon, loc, scale, z)`` with ``recon`` of shape
        ``(n_samples, B, 1, m, m, m)``, ``loc``/``scale`` ``(B, d)`` and ``z``
        ``(n_samples, B, d)``.
        """
        loc, scale = self.encoder(patches)
        loc, scale = loc.flatten(1), scale.flatten(1)
        # Sampling (and scoring, see losses.negative_elbo) in float64: near the
        # ball's edge float32 resolves only ~1e-5 in geodesic distance, so a
        # sharp posterior's own samples get absurd log-densities and the
        # Monte-Carlo KL can be driven to -inf by shrinking the scale.
        z = self.posterior(loc.double(), scale.double()).rsample((n_samples,))
        recon = self.decoder(z.reshape(-1, z.shape[-1]).float())
        return recon.reshape(n_samples, *patches.shape), loc, scale, z
