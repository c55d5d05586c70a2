"""The voxels a dataset's clustering is fitted on, read block by block where they lie.

:func:`.dataset_clustering.fit_dataset_clustering` fits on at most
``sample_size`` voxels: an equal share of every volume at seeded positions
(:func:`sample_positions`). For a dataset of lazy volumes
(:func:`draw_sample`) each block holding some of them is one task that reads
the block with the context its values need and returns only those values, so
neither this process nor any worker ever holds a whole volume:

1. the normalised intensity and the noise residual (against the six face
   neighbours, one voxel of context) of every sampled voxel; the dataset's
   channel follows the median over volumes of the noise σ of those residuals
   (:func:`.channels.intensity_for_noise`, and the TV weight with it);
2. for the denoised channel, its value at each sampled voxel: the block read
   with :data:`.channels.TV_HALO` voxels of context, which denoises it as
   inside the whole volume (to float rounding);
3. when the clustering fuses the embedding, the embedding at those voxels
   (:func:`.distributed.embed_dask`, only the blocks holding them computed).

A volume in memory is one block of itself (:func:`sample_in_memory`), so the
two ways give the same sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..segment_config import CPU_BLOCK
from . import channels

Progress = Callable[[str, int, int], None]

#: edge of the tiles a large volume's sample is drawn from: the CPU block edge, so with the default
#: chunking a drawn tile is one block to read
TILE = CPU_BLOCK
#: voxels of the sample a drawn tile should hold at least, and the most tiles drawn from one volume:
#: 64 tiles of 48³ hold 7 M voxels, so a fit reads at most that much of any volume
SAMPLES_PER_TILE = 512
MAX_TILES = 64


@dataclass
class Sample:
    """What the fit reads of one volume: values at its sampled voxels."""

    positions: np.ndarray  # (n, 3) voxel indices
    raw: np.ndarray  # (n,) normalised intensity
    residuals: np.ndarray  # noise residuals of the sampled voxels not on a face of the volume
    flat: np.ndarray  # (n,) whether each sampled voxel equals its six face neighbours (False on a face)

    @property
    def sigma(self) -> float:
        return channels.sigma_from_residuals(self.residuals)

    @property
    def fitted(self) -> np.ndarray:
        """(n,) which sampled voxels the mixture is fitted on: all but those at the volume's constant fill inside
        its intensity range (:func:`.channels.fill_value`), which :func:`.channels.fill_mask` leaves out of a
        single volume's fit. Every voxel at the value is left out, flat or not: a sample has no neighbourhoods
        to tell the fill's own voxels beside the data and on the volume's faces (a fifth of a padded MRI's
        fill, enough to take a component) from data voxels that happen to hold the value."""
        value = channels.fill_value(self.raw, self.flat)
        if value is None:
            return np.ones(len(self.raw), dtype=bool)
        return self.raw != value


def without_fill(samples: Sequence[Sample], values: Sequence[np.ndarray], tangents: Sequence[np.ndarray] | None):
    """Per volume, its channel ``values`` and ``tangents`` (None: no embedding) at the sampled voxels the
    mixture is fitted on (:attr:`Sample.fitted`)."""
    keep = [s.fitted for s in samples]
    values = [np.asarray(v)[m] for v, m in zip(values, keep)]
    return values, None if tangents is None else [np.asarray(t)[m] for t, m in zip(tangents, keep)]


def sample_rng(seed: int) -> np.random.Generator:
    """The generator of the fit's positions (its own stream of ``seed``: the mixture's draws use the seed itself)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))


def sample_positions(shape: Sequence[int], share: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) indices of ``min(share, voxels)`` distinct voxels drawn by ``rng``, in C order.

    Uniform over the volume when it has few tiles (:data:`TILE`³ voxels each,
    on a grid from voxel 0); else uniform over a seeded subset of its tiles,
    enough of them for :data:`SAMPLES_PER_TILE` voxels each and at most
    :data:`MAX_TILES`, so the blocks a fit reads (and denoises) are bounded
    whatever the volume's size. The grid does not depend on the chunking: the
    same seed gives the same sample with any ``--chunk``.
    """
    shape = tuple(int(n) for n in shape)
    tiles = tuple(-(-n // TILE) for n in shape)
    n_tiles = int(np.prod(tiles))
    wanted = min(n_tiles, MAX_TILES, max(1, -(-int(share) // SAMPLES_PER_TILE)))
    if wanted == n_tiles:
        n = int(np.prod(shape))
        flat = np.sort(rng.choice(n, min(int(share), n), replace=False))
        return np.stack(np.unravel_index(flat, shape), axis=1).astype(np.int64)
    chosen = np.sort(rng.choice(n_tiles, wanted, replace=False))
    corner = np.stack(np.unravel_index(chosen, tiles), axis=1) * TILE  # (t, 3) first voxel of each tile
    extent = np.minimum(TILE, np.asarray(shape) - corner)  # edge tiles are cut by the volume
    sizes = extent.prod(axis=1)
    before = np.concatenate([[0], np.cumsum(sizes)])
    flat = np.sort(rng.choice(int(before[-1]), min(int(share), int(before[-1])), replace=False))
    tile = np.searchsorted(before, flat, side="right") - 1
    inside = flat - before[tile]
    offsets = np.stack(
        [
            inside // (extent[tile, 1] * extent[tile, 2]),
            inside // extent[tile, 2] % extent[tile, 1],
            inside % extent[tile, 2],
        ],
        axis=1,
    )
    positions = corner[tile] + offsets
    return positions[np.lexsort(positions.T[::-1])].astype(np.int64)


def channel_for(samples: Sequence[Sample], kind: str) -> channels.Channel:
    """The dataset's channel: ``kind``, or for "auto" the one the volumes' median noise σ calls for."""
    sigma = float(np.median([s.sigma for s in samples]))
    return channels.Channel(channels.intensity_for_noise(sigma) if kind == "auto" else kind, sigma)


def _raw_values(normalised: np.ndarray, origin, shape, positions: np.ndarray) -> tuple[np.ndarray, ...]:
    """(intensity, residuals, flat) at ``positions`` (volume indices) of a normalised region starting at
    ``origin``: residuals of the positions off the volume's faces, flat (:attr:`Sample.flat`) of all."""
    local = positions - np.asarray(origin, np.int64)
    interior = np.all((positions >= 1) & (positions <= np.asarray(shape) - 2), axis=1)
    flat = np.zeros(len(positions), dtype=bool)
    residuals, flat[interior] = channels.face_residuals_and_flat(normalised, local[interior])
    return normalised[tuple(local.T)], residuals, flat


def sample_in_memory(volume: np.ndarray, bounds, positions: np.ndarray) -> Sample:
    """:class:`Sample` of a volume in memory (``bounds``: its 1st/99th percentiles)."""
    normalised = channels.normalise_between(volume, bounds)
    return Sample(positions, *_raw_values(normalised, (0, 0, 0), volume.shape, positions))


def denoised_in_memory(volume: np.ndarray, bounds, positions: np.ndarray, channel: channels.Channel) -> np.ndarray:
    return channels.tv_denoise(volume, channel.tv_weight, bounds=bounds)[tuple(positions.T)]


# -- lazy volumes, block by block -------------------------------------------


def _raw_block(source, lo, hi, shape, positions, bounds):
    normalised = channels.normalise_between(source.read(lo, hi), bounds)
    return _raw_values(normalised, lo, shape, positions)


def _denoised_block(source, lo, hi, positions, bounds, weight):
    return channels.tv_denoise(source.read(lo, hi), weight, bounds=bounds)[tuple((positions - np.asarray(lo)).T)]


def _regions(shape, chunks, positions: np.ndarray, pad: int) -> list[tuple[list[int], list[int], np.ndarray]]:
    """Per block holding sampled voxels: (region start, region end, which positions), the region the block's core
    widened by ``pad`` voxels inside the volume. A volume that one block and its padding would nearly cover is
    one block: its blocks would each read nearly all of it again."""
    if all(n <= max(c) + 2 * pad for n, c in zip(shape, chunks)):
        return [([0, 0, 0], list(shape), np.arange(len(positions)))]
    starts = [np.cumsum((0, *c)) for c in chunks]
    index = np.stack([np.searchsorted(st, positions[:, a], side="right") - 1 for a, st in enumerate(starts)], axis=1)
    keys, owner = np.unique(index, axis=0, return_inverse=True)
    out = []
    for b, key in enumerate(keys):
        lo = [max(0, int(st[i]) - pad) for st, i in zip(starts, key)]
        hi = [min(int(n), int(st[i + 1]) + pad) for st, i, n in zip(starts, key, shape)]
        out.append((lo, hi, np.flatnonzero(owner.reshape(-1) == b)))
    return out


def _per_block(volumes, positions, pad: int, task, client, progress: Progress | None, stage: str, kw: Callable):
    """Run ``task(source, lo, hi, positions=..., **kw(v))`` on every block of every volume ``v`` holding sampled
    voxels (its region widened by ``pad``); per volume, a list of (which of its positions, the task's result)."""
    import dask  # noqa: PLC0415

    from .distributed import Regions, as_they_come  # noqa: PLC0415

    tasks, where = [], []
    for v, (volume, pos) in enumerate(zip(volumes, positions)):
        source = dask.delayed(Regions(volume), name=f"hypseg-regions-{volume.name}")
        for lo, hi, which in _regions(volume.shape, volume.chunks, pos, pad):
            tasks.append(dask.delayed(task, pure=True)(source, lo, hi, positions=pos[which], **kw(v)))
            where.append((v, which))
    grouped = [[] for _ in volumes]
    for n, ((v, which), result) in enumerate(as_they_come(tasks, where, client), start=1):
        grouped[v].append((which, result))
        if progress:
            progress(stage, n, len(tasks))
    return grouped


def _placed(n: int, blocks, pick=lambda result: result, dtype=np.float32) -> np.ndarray:
    """(n,) values (of ``dtype``) of one volume's sampled voxels from its blocks' (which, result) pairs."""
    out = np.empty(n, dtype)
    for which, result in blocks:
        out[which] = pick(result)
    return out


def draw_sample(
    volumes: Sequence,
    bounds: Sequence[tuple[float, float]],
    *,
    share: int,
    seed: int,
    kind: str,
    client=None,
    progress: Progress | None = None,
) -> tuple[list[Sample], channels.Channel, list[np.ndarray]]:
    """(per-volume :class:`Sample`, the dataset's channel, per-volume channel values at the sampled voxels) of lazy
    ``volumes`` (dask arrays), block by block; ``bounds`` are their :func:`.dataset.intensity_bounds`."""
    rng = sample_rng(seed)
    positions = [sample_positions(v.shape, share, rng) for v in volumes]
    parts = _per_block(
        volumes,
        positions,
        1,
        _raw_block,
        client,
        progress,
        "sample",
        kw=lambda v: {"shape": tuple(volumes[v].shape), "bounds": tuple(float(b) for b in bounds[v])},
    )
    samples = [
        Sample(
            pos,
            _placed(len(pos), blocks, lambda r: r[0]),
            np.concatenate([r for _, (_, r, _) in blocks]),
            _placed(len(pos), blocks, lambda r: r[2], dtype=bool),
        )
        for pos, blocks in zip(positions, parts)
    ]
    channel = channel_for(samples, kind)
    if channel.kind == "raw":
        return samples, channel, [s.raw for s in samples]
    parts = _per_block(
        volumes,
        positions,
        channels.TV_HALO,
        _denoised_block,
        client,
        progress,
        "sample (denoised)",
        kw=lambda v: {"bounds": tuple(float(b) for b in bounds[v]), "weight": channel.tv_weight},
    )
    return samples, channel, [_placed(len(pos), blocks) for pos, blocks in zip(positions, parts)]
