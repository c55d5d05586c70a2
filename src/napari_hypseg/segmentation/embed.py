"""Dense voxel embedding: the posterior location of the patch centred on every voxel.

The encoder has no padding, so it is exactly translation-equivariant: running
it over a block of the volume plus a halo of ``m // 2`` voxels
(:func:`napari_hypseg.model.dense.encode_block`) gives, at every output voxel,
the same value as encoding the ``m³`` patch centred there. That costs about
3 MFLOP a voxel instead of ~170 MFLOP for per-voxel patches
(:func:`embed_patches`, kept as the reference and the benchmark baseline).

Borders are filled by mirror reflection (not zeros), so voxels near the faces
see plausible context and do not form a cluster of their own.

A window ``w`` other than ``m`` (the paper encodes 5³ windows resized to the
encoder input) is obtained by resampling the whole volume by ``m / w``,
embedding natively and resampling the embedding back — a documented
approximation of resizing each window separately (they differ only in how
trilinear interpolation treats the window's outermost half voxel).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._device import resolve_device
from .._errors import UserError
from .._validation import check_volume, robust_range
from ..model.dense import encode_block, from_tangent, read_reflected, to_tangent
from ..model.vae import HyperbolicVAE
from ..segment_config import CPU_BLOCK, GPU_BLOCK

# A window below 3 voxels holds no structure, only its own voxel's intensity,
# and costs (m / w)^3 the voxels: --window 1 on a small volume took 241 s and 1.5 GB.
MIN_WINDOW = 3
# above this many times the input's voxels, a window's resampling gets a warning with its cost
_RESAMPLE_WARN = 8.0
# The model maps its training data's 1st-99th percentiles to [0, 1]; a volume
# whose percentile span is this many times wider or narrower, or whose centre
# sits this many training spans away, is embedded mostly at the ball's rim (or
# at one point), which looks like a result but is not one.
_RANGE_MISMATCH = 5.0

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


class EmbeddingCancelled(Exception):
    """Raised inside :func:`embed` when ``should_stop()`` returned True."""


def default_chunk(device: torch.device) -> int:
    """Output block edge for ``device``."""
    return GPU_BLOCK if device.type == "cuda" else CPU_BLOCK


def _blocks(shape: Sequence[int], chunk: int):
    ranges = [range(0, n, chunk) for n in shape]
    for z in ranges[0]:
        for y in ranges[1]:
            for x in ranges[2]:
                lo = (z, y, x)
                yield lo, tuple(min(a + chunk, n) for a, n in zip(lo, shape))


def _resample_volume(data: np.ndarray, factor: float, device: torch.device) -> np.ndarray:
    size = [max(1, round(n * factor)) for n in data.shape]
    t = torch.from_numpy(np.asarray(data, dtype=np.float32)).to(device)[None, None]
    return F.interpolate(t, size=size, mode="trilinear", align_corners=False)[0, 0].cpu().numpy()


def _resample_embedding(emb: np.ndarray, shape: Sequence[int], model: HyperbolicVAE, device) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(emb, -1, 0))).to(device)[None]
    v = F.interpolate(to_tangent(t, model), size=tuple(shape), mode="trilinear", align_corners=False)
    return np.moveaxis(from_tangent(v, model)[0].cpu().numpy(), 0, -1)


def embed(
    volume: np.ndarray,
    model: HyperbolicVAE,
    *,
    window: int | Sequence[int] | None = None,
    stride: int = 1,
    chunk: int | None = None,
    device: str | torch.device = "auto",
    out: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> np.ndarray:
    """Encoder mean of the window centred on every voxel.

    Parameters
    ----------
    volume : (Z, Y, X) array
        Raw intensities (any real dtype; may be a memory map — it is read block by block).
    model : HyperbolicVAE
        Trained model; its stored normalisation is applied.
    window : int or sequence of int, optional
        Window edge(s) in voxels. ``None`` = the encoder's own ``m`` (exact and
        fastest). Several windows are fused by concatenating their embeddings
        along the last axis (a product of balls, ``d`` coordinates each).
    stride : int
        Evaluate the last encoder layer every ``stride`` voxels and interpolate
        (fast previews); 1 is exact.
    chunk : int, optional
        Output block edge; bounds memory whatever the volume size.
    device : {"auto", "cpu", "cuda"} or torch.device
    out : (Z, Y, X, d) float32 array, optional
        Where to write (e.g. a ``numpy.lib.format.open_memmap`` for volumes
        whose embedding does not fit in RAM). Single window only.
    progress : callable(done, total), optional
    should_stop : callable() -> bool, optional
        Polled between blocks; when it returns True, :class:`EmbeddingCancelled` is raised.

    Returns
    -------
    (Z, Y, X, d · n_windows) float32 array

    Examples
    --------
    >>> from napari_hypseg.model import HyperbolicVAE
    >>> emb = embed(np.random.rand(20, 20, 20), HyperbolicVAE(), device="cpu")
    >>> emb.shape
    (20, 20, 20, 2)
    """
    m = model.patch_size
    # the same minimum edge as training, so a volume train refuses is not silently segmented
    check_volume(volume, min_size=m, name="volume")
    if not _is_int(stride) or stride < 1:
        raise UserError(f"stride must be an integer >= 1, got {stride!r}")
    if chunk is not None and (not _is_int(chunk) or chunk < 1):
        raise UserError(f"chunk must be an integer >= 1, got {chunk!r}")
    device = resolve_device(device)
    windows = [None] if window is None else ([window] if np.isscalar(window) else list(window))
    if not windows or not all(w is None or _is_int(w) for w in windows):
        raise UserError(f"window sizes must be integers, got {window!r}")
    windows = [m if w is None else int(w) for w in windows]
    if any(w < MIN_WINDOW for w in windows):
        raise UserError(
            f"window sizes must be at least {MIN_WINDOW} voxels, got {windows}: a smaller window holds "
            f"no structure and costs ({m}/w)^3 times the voxels"
        )
    d = model.config.latent_dim
    if out is not None:
        if len(windows) > 1:
            raise UserError("`out` supports a single window")
        _check_out(out, (*volume.shape, d))
    _warn_resampling(volume.shape, windows, m, d)
    _check_intensities(volume, model)
    model = model.to(device).eval()
    chunk = chunk or default_chunk(device)

    parts = []
    plans = []
    for w in windows:
        source = volume if w == m else _resample_volume(volume, m / w, device)
        plans.append((w, source, list(_blocks(source.shape, chunk))))
    total = sum(len(blocks) for _, _, blocks in plans)
    done = 0
    for w, source, blocks in plans:
        target = out if (out is not None and w == m) else np.empty((*source.shape, d), dtype=np.float32)
        for lo, hi in blocks:
            if should_stop is not None and should_stop():
                raise EmbeddingCancelled("embedding cancelled")
            loc = encode_block(model, source, lo, hi, stride=stride, device=device)
            target[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = loc.permute(1, 2, 3, 0).cpu().numpy()
            done += 1
            if progress is not None:
                progress(done, total)
        if w != m:
            target = _resample_embedding(target, volume.shape, model, device)
        parts.append(target)
    result = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
    _check_embedding(result)
    return result


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_out(out, shape) -> None:
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        kind = getattr(out, "dtype", type(out).__name__)
        raise UserError(f"`out` must be a float32 numpy array (e.g. numpy.lib.format.open_memmap), got {kind}")
    if tuple(out.shape) != tuple(shape):
        raise UserError(
            f"`out` must have shape {tuple(shape)} (the volume's shape + latent dimension), got {out.shape}"
        )
    if not out.flags.writeable:
        raise UserError("`out` is read-only")


def _warn_resampling(shape, windows, m: int, d: int) -> None:
    for w in windows:
        factor = (m / w) ** 3
        if factor > _RESAMPLE_WARN:
            voxels = factor * float(np.prod(shape))
            gigabytes = voxels * 4 * (1 + d) / 2**30  # resampled float32 volume + its embedding
            warnings.warn(
                f"window {w} resamples the volume by {m / w:.1f} per axis: {factor:.0f}x the voxels "
                f"(about {gigabytes:.1f} GB and {factor:.0f}x the time of the default window {m})",
                UserWarning,
                stacklevel=3,
            )


def _check_intensities(volume: np.ndarray, model: HyperbolicVAE) -> None:
    lo_m, hi_m = float(model.intensity_low), float(model.intensity_high)
    lo, hi = robust_range([volume], max_samples=200_000)
    span_m = hi_m - lo_m
    ratio = (hi - lo) / span_m
    offset = abs((lo + hi) / 2 - (lo_m + hi_m) / 2) / span_m
    if not (1 / _RANGE_MISMATCH <= ratio <= _RANGE_MISMATCH) or offset > _RANGE_MISMATCH:
        warnings.warn(
            f"the volume's intensities (1st-99th percentile {lo:.4g} to {hi:.4g}) are far from the model's "
            f"training range ({lo_m:.4g} to {hi_m:.4g}); its embeddings will crowd at the ball's rim or at one "
            "point: rescale the volume to the training data's range, or train on it",
            UserWarning,
            stacklevel=3,
        )


def _check_embedding(embedding: np.ndarray) -> None:
    flat = embedding.reshape(-1, embedding.shape[-1])
    sample = np.asarray(flat[:: max(1, len(flat) // 1_000_000)])
    if not np.isfinite(sample).all():
        raise UserError("the embedding contains NaN or infinite values; the model does not suit this volume")
    if np.ptp(sample, axis=0).max() <= 1e-6:
        warnings.warn(
            "every voxel got the same embedding: the labels will carry no information "
            "(the model sees this volume as uniform)",
            UserWarning,
            stacklevel=3,
        )


@torch.no_grad()
def embed_patches(
    volume: np.ndarray,
    model: HyperbolicVAE,
    coords: np.ndarray,
    *,
    window: int | None = None,
    batch_size: int = 256,
    device: str | torch.device = "auto",
) -> np.ndarray:
    """Reference path: cut the window around each voxel, resize it to ``m³`` and encode it alone.

    ``coords`` is ``(N, 3)`` integer voxel indices; returns ``(N, d)``. This is
    the paper's per-voxel procedure — ~60× the FLOPs of :func:`embed` — kept as
    the ground truth for tests and as the benchmark baseline.
    """
    device = resolve_device(device)
    model = model.to(device).eval()
    m = model.patch_size
    w = m if window is None else int(window)
    half = w // 2
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
    padded = read_reflected(volume, [-half] * 3, [n + w - half - 1 for n in volume.shape])
    padded_t = torch.from_numpy(padded).to(device)
    out = []
    offsets = torch.arange(w, device=device)
    for start in range(0, len(coords), batch_size):
        c = torch.from_numpy(coords[start : start + batch_size]).to(device)
        iz = (c[:, 0, None] + offsets)[:, :, None, None]
        iy = (c[:, 1, None] + offsets)[:, None, :, None]
        ix = (c[:, 2, None] + offsets)[:, None, None, :]
        patches = padded_t[iz, iy, ix][:, None]
        if w != m:
            patches = F.interpolate(patches, size=(m, m, m), mode="trilinear", align_corners=False)
        loc = model.encoder.mean(model.normalize(patches))
        out.append(loc.flatten(1).cpu())
    return torch.cat(out).numpy()
