"""Dense encoding of a volume block: the encoder mean of the patch centred on every voxel.

The encoder has no padding, so it is exactly translation-equivariant: running
it over a block of the volume plus a halo of ``m // 2`` voxels gives, at
every output voxel, the same value as encoding the ``m³`` patch centred
there. Where the halo leaves the volume, the volume is mirror-reflected (not
zero-padded), so voxels near the faces see plausible context.

Training (live previews) and segmentation (:func:`napari_hypseg.segmentation.embed`,
the dask blocks of :mod:`napari_hypseg.segmentation.distributed`) both encode
through :func:`encode_block`; it lives with the model so that training does
not depend on segmentation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import hyperbolic as hyp
from .vae import HyperbolicVAE

__all__ = ["encode_block", "from_tangent", "read_reflected", "to_tangent"]


def read_reflected(data: np.ndarray, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    """``data[lo:hi]`` as float32, mirror-reflected where the range leaves the volume."""
    src = tuple(slice(max(0, a), min(n, b)) for a, b, n in zip(lo, hi, data.shape))
    block = np.asarray(data[src], dtype=np.float32)
    pad = [(max(0, -a), max(0, b - n)) for a, b, n in zip(lo, hi, data.shape)]
    if any(p for pair in pad for p in pair):
        # reflection needs at least two samples along an axis; a one-voxel-thick axis repeats its edge
        mode = "reflect" if min(block.shape) > 1 else "edge"
        block = np.pad(block, pad, mode=mode)
    return block


def to_tangent(loc: torch.Tensor, model: HyperbolicVAE) -> torch.Tensor:
    """Latent points (channel dim 1) as tangent vectors at the origin, where interpolation is linear."""
    return hyp.logmap0(loc, dim=1) if model.config.hyperbolic else loc


def from_tangent(v: torch.Tensor, model: HyperbolicVAE) -> torch.Tensor:
    """Inverse of :func:`to_tangent`."""
    return hyp.expmap0(v, dim=1) if model.config.hyperbolic else v


@torch.no_grad()
def encode_block(
    model: HyperbolicVAE,
    data: np.ndarray,
    lo: Sequence[int],
    hi: Sequence[int],
    *,
    stride: int = 1,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Embedding of the output voxels ``lo <= index < hi`` of ``data``: a ``(d, *(hi - lo))`` tensor.

    With ``stride > 1`` the encoder's last layer runs only on every
    ``stride``-th voxel (block-aligned) and the rest is interpolated linearly
    in the tangent space at the origin.
    """
    device = torch.device(device)
    half = model.patch_size // 2
    size = [b - a for a, b in zip(lo, hi)]
    steps = [math.ceil((n - 1) / stride) for n in size]  # coarse samples beyond the first
    read_hi = [a + stride * j + half + 1 for a, j in zip(lo, steps)]
    block = read_reflected(data, [a - half for a in lo], read_hi)
    x = model.normalize(torch.from_numpy(block).to(device))[None, None]
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loc = model.encoder.mean(x, stride=stride)
    if stride > 1:
        fine = [stride * j + 1 for j in steps]
        v = F.interpolate(to_tangent(loc, model), size=fine, mode="trilinear", align_corners=True)
        loc = from_tangent(v[..., : size[0], : size[1], : size[2]], model)
    return loc[0]
