"""Segment many volumes with one clustering, in-process or on a dask cluster.

Three stages, each a dask graph run by whatever scheduler is given:

1. every volume's 1st/99th percentiles, found exactly in two histogram
   passes (:func:`intensity_bounds`);
2. unless a clustering is given, one is fitted on a bounded seeded sample of
   all volumes (:func:`fit_blockwise`): the blocks holding sampled voxels
   return those voxels' values (:mod:`.fit_sample`) and the mixtures are
   fitted here on them (the sample is small);
3. every volume is embedded and assigned block by block
   (:func:`segment_blockwise`), each block with a halo of the Potts prior's
   reach (plus the TV filter's, for the denoised channel), which gives the
   whole-volume labels. No task holds more than a block and its halo.

In-process (``client=None``) the same graphs run with the synchronous
scheduler, so a cluster changes where the work happens, not the numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .._device import resolve_device
from .._errors import UserError
from ..model.dense import encode_block
from ..model.vae import HyperbolicVAE
from . import dataset_clustering as dc
from . import fit_sample
from .dataset_clustering import DatasetClustering
from .distributed import Regions, as_they_come, embed_dask, merge_thin_chunks
from .fusion import FusionConfig
from .mixture import FIT_SIZE

Progress = Callable[[str, int, int], None]


class PathArray:
    """Array-like view of a volume file that pickles as its path: a worker reads only the blocks it needs."""

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype, self.ndim = str(path), tuple(shape), np.dtype(dtype), len(shape)

    def __getitem__(self, index):
        from ..io import MRC_SUFFIXES, full_suffix, read_mrc, read_nifti  # noqa: PLC0415

        # read_volume's readers without its NaN check, which copies a sample of up to 256 MB per call
        # (the client checked the file once). Opened for each read, not kept: the pages of a kept memory
        # map stay resident, and a worker reading block after block of a large file would grow to its size.
        reader = read_mrc if full_suffix(Path(self.path)) in MRC_SUFFIXES else read_nifti
        data = reader(self.path).data  # a memory map for MRC and uncompressed NIfTI
        return np.array(data[index])  # a copy: the map is released with `data`

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape, "dtype": self.dtype.str}

    def __setstate__(self, state):
        self.__init__(state["path"], state["shape"], state["dtype"])


def lazy_volume(path, shape, dtype, chunks: int):
    """A dask array of the volume file at ``path``, read blockwise where it is computed."""
    import dask.array as da  # noqa: PLC0415

    # inline: every read task carries the (path-sized) PathArray and depends on nothing, so distributed
    # treats the reads as root tasks and starts no more of them than the workers can consume; behind one
    # shared key they ran ahead of the block tasks and filled the workers' memory with blocks in waiting
    return da.from_array(
        PathArray(path, shape, dtype), chunks=chunks, name=f"hypseg-volume-{path}", asarray=False, inline_array=True
    )


def _as_dask(volume, chunks: int | None):
    """``volume`` as a dask array: a dask array as it is, anything else wrapped in chunks of ``chunks``."""
    import dask.array as da  # noqa: PLC0415

    return volume if isinstance(volume, da.Array) else da.from_array(np.asarray(volume), chunks=chunks or "auto")


def _run(collection, client):
    """Compute one dask collection (or a list of them) on ``client``, or here with the synchronous scheduler."""
    import dask  # noqa: PLC0415

    if client is None:
        return dask.compute(collection, scheduler="sync")[0]
    return client.gather(client.compute(collection))


def _gather_blocks(groups, client, progress: Progress | None, stage: str) -> list[list[np.ndarray]]:
    """Compute groups of dask arrays into numpy arrays here.

    On a client the blocks arrive one at a time as they finish, reporting blocks
    done (all groups together; the arrays of a group that share blocks, such as
    labels and embedding, computed once, the graph not optimised so they keep
    their shared keys). In-process each group is one synchronous graph,
    reporting groups done.
    """
    import dask.array as da  # noqa: PLC0415

    into = [[np.empty(a.shape, a.dtype) for a in group] for group in groups]
    if client is None:
        for n, (group, out) in enumerate(zip(groups, into), start=1):
            da.store([*group], [*out], lock=False, scheduler="sync")
            if progress:
                progress(stage, n, len(groups))
        return into
    parts = []
    for group, out in zip(groups, into):
        for a, target in zip(group, out):
            starts = [np.cumsum((0, *c)) for c in a.chunks]
            for index, block in np.ndenumerate(a.to_delayed(optimize_graph=False)):
                parts.append((target, tuple(slice(st[j], st[j + 1]) for st, j in zip(starts, index)), block))
    from distributed import as_completed  # noqa: PLC0415

    futures = client.compute([p[2] for p in parts], optimize_graph=False)
    where = {f.key: p for f, p in zip(futures, parts)}
    for n, future in enumerate(as_completed(futures), start=1):
        target, region, _ = where[future.key]
        target[region] = future.result()
        future.release()  # the worker may forget the block as soon as it is here
        if progress:
            progress(f"{stage} blocks", n, len(parts))
    return into


# -- blockwise assignment ---------------------------------------------------


def intensity_bounds(volume, client=None) -> tuple[np.float32, np.float32]:
    """:func:`.dataset_clustering.intensity_bounds` of a dask array: two passes of per-block histograms, summed."""
    return intensity_bounds_of([volume], client)[0]


def intensity_bounds_of(volumes, client=None) -> list[tuple[np.float32, np.float32]]:
    """:func:`intensity_bounds` of every volume, each pass one computation for all of them.

    Pass by pass rather than volume by volume: a dataset of many small
    volumes otherwise waits for two round trips to the workers per volume
    before any block is assigned (8 phantoms of 40³: 16 of them, in series).
    Each block's histogram comes back sparse (its non-zero bins) and is
    summed here: summed on the workers as dense arrays of 65536 bins, they
    moved 70-100 MiB between two workers for 2 MiB of voxels.
    """
    import dask.array as da  # noqa: PLC0415

    bounds: list = [None if isinstance(v, da.Array) else dc.intensity_bounds(np.asarray(v)) for v in volumes]
    lazy = [(i, v) for i, v in enumerate(volumes) if isinstance(v, da.Array)]
    if not lazy:
        return bounds
    highs = _summed_histograms([(v, dc.high_histogram, dc._BINS) for _, v in lazy], client)
    counts = [int(h.sum()) for h in highs]
    located = [dc.locate_ranks(h, dc.needed_ranks(n)) for h, n in zip(highs, counts)]
    prefixes = [sorted({p for p, _ in loc.values()}) for loc in located]
    lows = _summed_histograms(
        [
            (v, functools.partial(dc.low_histogram, prefixes=ps), len(ps) * dc._BINS)
            for (_, v), ps in zip(lazy, prefixes)
        ],
        client,
    )
    for (i, _), n, loc, ps, low in zip(lazy, counts, located, prefixes, lows):
        bounds[i] = dc.bounds_from_histograms(n, loc, ps, low.reshape(len(ps), dc._BINS))
    return bounds


def _sparse_histogram(histogram, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bins, counts) of ``histogram(block)``'s non-zero bins, flattened."""
    dense = histogram(np.asarray(block)).ravel()
    bins = np.flatnonzero(dense)
    return bins.astype(np.int32), dense[bins]


def _summed_histograms(jobs, client) -> list[np.ndarray]:
    """For each ``(volume, histogram, size)``, the sum over its blocks of ``histogram(block)`` (flat, ``size``),
    all volumes in one computation.

    Each block's histogram is added as it arrives and then dropped: held until
    all had come back, a volume of thousands of blocks would keep its sparse
    histograms (up to 12 bytes per voxel) here at once.
    """
    import dask  # noqa: PLC0415

    tasks, owners = [], []
    for j, (volume, histogram, _) in enumerate(jobs):
        for block in volume.to_delayed().ravel():
            tasks.append(dask.delayed(_sparse_histogram, pure=True)(histogram, block))
            owners.append(j)
    sums = [np.zeros(size, np.int64) for _, _, size in jobs]
    for j, (bins, counts) in as_they_come(tasks, owners, client):
        sums[j][bins] += counts
    return sums


def _segment_block(
    *, source, shape, starts, payload, clustering, ks, bounds, halo, half, device, targets=None, block_info=None
):
    """Embedding and labels of one block, as float32 channels ``[embedding (d) | labels (len(ks))]``; with
    ``targets`` (labels and embedding zarr arrays) written there instead, returning a one-voxel marker.

    The block is read with ``halo + half`` voxels of context on every side
    inside the volume: its labels need the Potts prior's ``halo``, and the
    embedding of those voxels the encoder's ``half`` more. On the volume's
    faces there is no context, and the encoder and the Potts prior mirror the
    region itself exactly as they mirror the whole volume.
    """
    from .distributed import worker_model  # noqa: PLC0415

    device = resolve_device(device)
    index = block_info[None]["chunk-location"][:3]
    core = [(int(st[i]), int(st[i + 1])) for st, i in zip(starts, index)]
    depth = halo + half
    region_lo = [max(0, a - depth) for a, _ in core]
    region_hi = [min(n, b + depth) for (_, b), n in zip(core, shape)]
    block = source.read(region_lo, region_hi)
    core_lo = [a - r for (a, _), r in zip(core, region_lo)]
    core_hi = [b - r for (_, b), r in zip(core, region_lo)]
    # the Potts prior's context: halo voxels beyond the core, where the volume goes on
    lo = [max(0, c - halo) for c in core_lo]
    hi = [min(n, c + halo) for c, n in zip(core_hi, block.shape)]
    crop = tuple(slice(c - a, e - a) for a, c, e in zip(lo, core_lo, core_hi))  # the core inside lo..hi
    weighted = clustering.embedding_weight > 0
    model = worker_model(payload, device)
    loc = encode_block(model, block, *((lo, hi) if weighted else (core_lo, core_hi)), device=device)
    embedding = np.ascontiguousarray(loc.permute(1, 2, 3, 0).float().cpu().numpy())
    region = tuple(slice(a, b) for a, b in zip(lo, hi))
    levels = clustering.assign(block[region], embedding if weighted else None, ks, bounds=bounds, crop=crop)
    kept = embedding[crop] if weighted else embedding
    if targets is not None:
        # written here, by the task that computed it: nothing of the block waits in memory for another task
        where = tuple(slice(a, b) for a, b in core)
        targets[0][where] = np.stack([levels[k] for k in ks], axis=-1)
        targets[1][where] = kept
        return np.ones((1, 1, 1), np.uint8)
    d = kept.shape[-1]
    out = np.empty((*kept.shape[:3], d + len(ks)), np.float32)
    out[..., :d] = kept
    for i, k in enumerate(ks):
        out[..., d + i] = levels[k]
    return out


def segment_blockwise(
    volume,
    model: HyperbolicVAE,
    clustering: DatasetClustering,
    ks,
    bounds,
    *,
    payload=None,
    shared=None,
    device: str = "cpu",
    targets=None,
):
    """(labels ``(Z, Y, X, len(ks))``, embedding ``(Z, Y, X, d)``) of ``volume`` (a dask array), lazily.

    ``bounds`` are the volume's :func:`intensity_bounds`. Each block of the
    volume's chunking is one task that reads the block with the Potts prior's
    halo (``clustering.halo`` voxels) plus the encoder's, embeds it and assigns
    it, so its labels are those of the whole-volume
    :meth:`.DatasetClustering.assign` and its embedding that of
    :func:`.embed.embed`, to float rounding. ``payload`` is the model from
    :func:`.distributed.model_payload`, ``shared`` the clustering as one graph
    key. With ``targets`` (a labels and an embedding zarr
    array, chunked as the blocks) each task writes its block there and the
    result is a lazy array of one marker per block, computed for its effect.
    """
    import dask  # noqa: PLC0415
    import dask.array as da  # noqa: PLC0415

    from .distributed import model_payload  # noqa: PLC0415

    ks = [int(k) for k in ks]
    halo, half, d = clustering.halo, model.patch_size // 2, model.config.latent_dim
    if min(volume.shape) < model.patch_size:
        raise UserError(
            f"the volume of shape {volume.shape} is smaller than the model's {model.patch_size}-voxel "
            "patch along some axis"
        )
    chunks = _blocks(volume, model, clustering)
    source = dask.delayed(Regions(volume), name=f"hypseg-regions-{volume.name}")
    starts = tuple(tuple(int(v) for v in np.cumsum((0, *c))) for c in chunks)
    common = dict(
        source=source,
        shape=tuple(volume.shape),
        starts=starts,
        ks=ks,
        halo=halo,
        half=half,
        payload=model_payload(model) if payload is None else payload,
        device=str(device),
        clustering=dask.delayed(clustering, pure=True) if shared is None else shared,
        bounds=tuple(float(b) for b in bounds),
    )
    if targets is not None:
        for target in targets:
            if not _aligned(chunks, target.chunks[:3]):  # two tasks writing one zarr chunk could lose one
                raise ValueError(f"the blocks {chunks} do not fall on the zarr chunks {target.chunks}")
        markers = tuple((1,) * len(c) for c in chunks)
        return da.map_blocks(
            _segment_block,
            chunks=markers,
            dtype=np.uint8,
            meta=np.empty((0,) * 3, np.uint8),
            targets=tuple(targets),
            **common,
        )
    combined = da.map_blocks(
        _segment_block,
        chunks=(*chunks, (d + len(ks),)),
        dtype=np.float32,
        meta=np.empty((0,) * 4, np.float32),
        **common,
    )
    return combined[..., d:].astype(dc.label_dtype(ks)), combined[..., :d]


def lazy_assignment(
    volume,
    model: HyperbolicVAE,
    ks,
    clustering: DatasetClustering,
    *,
    client=None,
    payload=None,
    shared=None,
    chunks: int | None = None,
    device: str = "cpu",
    targets=None,
    bounds=None,
):
    """(labels ``(Z, Y, X, len(ks))``, embedding ``(Z, Y, X, d)``) of one volume as lazy dask arrays.

    Only the volume's intensity bounds are computed now, unless given
    (two histogram passes, :func:`intensity_bounds`); the rest runs when the
    arrays are computed or stored, block by block (:func:`segment_blockwise`),
    so no task holds the whole volume.
    """
    volume = _as_dask(volume, chunks)
    if chunks is not None:
        volume = volume.rechunk(chunks)
    if bounds is None:
        bounds = intensity_bounds(volume, client)
    return segment_blockwise(
        volume, model, clustering, ks, bounds, payload=payload, shared=shared, device=device, targets=targets
    )


def _blocks(volume, model: HyperbolicVAE, clustering: DatasetClustering) -> tuple[tuple[int, ...], ...]:
    """The blocks of ``volume``'s chunking that :func:`segment_blockwise` assigns.

    A face block reads at least ``half + 1`` voxels, enough for the encoder's
    mirror. A volume that one block and its halo would cover along every axis
    is one block when the halo holds the TV filter's reach: each of its blocks
    would denoise nearly the whole volume again (8 phantoms of 40³ in blocks
    of 24 took 42 s on one worker against 30 s whole).
    """
    half = model.patch_size // 2
    reach = clustering.halo + half
    if clustering.intensity == "denoised" and all(n <= max(c) + 2 * reach for n, c in zip(volume.shape, volume.chunks)):
        return tuple((int(n),) for n in volume.shape)
    return tuple(merge_thin_chunks(c, half + 1) for c in volume.chunks)


def block_grid(
    volume, model: HyperbolicVAE, clustering: DatasetClustering, chunks: int | None = None
) -> tuple[tuple[int, ...], ...]:
    """The blocks :func:`segment_blockwise` makes of ``volume`` (for chunking the zarr arrays it writes)."""
    if chunks is not None:
        volume = volume.rechunk(chunks)
    return _blocks(volume, model, clustering)


def start_assignment(markers, client=None) -> list:
    """Send :func:`segment_blockwise`'s markers to ``client``'s workers now (their futures); in-process, the
    tasks to run in :func:`finish_assignment`. Starting the next volume before finishing this one keeps the
    workers busy while this process writes a volume's outputs."""
    tasks = list(markers.to_delayed().ravel())
    return tasks if client is None else client.compute(tasks)


def finish_assignment(
    started: list, *, client=None, progress: Progress | None = None, stage: str = "embed+assign"
) -> None:
    """Wait for (or, in-process, run) :func:`start_assignment`'s blocks, each writing its own outputs; reports
    blocks done and raises what a block raised."""
    import dask  # noqa: PLC0415

    if client is None:
        for n, task in enumerate(started, start=1):
            dask.compute(task, scheduler="sync")
            if progress:
                progress(f"{stage} blocks", n, len(started))
        return
    from distributed import as_completed  # noqa: PLC0415

    try:
        for n, future in enumerate(as_completed(started), start=1):
            future.result()
            future.release()
            if progress:
                progress(f"{stage} blocks", n, len(started))
    except BaseException:
        abandon_assignment(started, client)
        raise


def abandon_assignment(started: list, client=None) -> None:
    """Wait until every block of :func:`start_assignment` already sent has ended, whatever its outcome.

    A block still running writes into the scratch arrays after the caller
    has given up on them; removing them before that leaves a recreated
    scratch folder behind (observed).
    """
    if client is not None:
        from distributed import wait  # noqa: PLC0415

        wait(started)


def _aligned(chunks: tuple[tuple[int, ...], ...], grid: tuple[int, ...]) -> bool:
    """Whether every block boundary falls on the grid (a merged last block may span two grid chunks)."""
    return all(b % g == 0 for c, g in zip(chunks, grid) for b in np.cumsum(c)[:-1])


def fit_blockwise(
    volumes: Sequence,
    model: HyperbolicVAE,
    ks: Sequence[int],
    *,
    bounds: Sequence[tuple[float, float]] | None = None,
    client=None,
    payload=None,
    fusion: FusionConfig = FusionConfig(),
    seed: int = 0,
    sample_size: int = FIT_SIZE,
    chunks: int | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
) -> DatasetClustering:
    """:func:`.dataset_clustering.fit_dataset_clustering` of lazy ``volumes`` (dask arrays), block by block.

    The same seeded positions; each block holding some of them reads itself
    with the context their values need and returns only those values
    (:mod:`.fit_sample`), so nothing of a volume beyond a block and its halo
    is in memory anywhere. ``bounds`` are the volumes' :func:`intensity_bounds`
    (computed here when not given).
    """
    if not volumes:
        raise UserError("give at least one volume")
    arrays = [_as_dask(v, chunks) for v in volumes]
    bounds = intensity_bounds_of(arrays, client) if bounds is None else bounds
    share = max(1, sample_size // len(arrays))
    samples, channel, values = fit_sample.draw_sample(
        arrays, bounds, share=share, seed=seed, kind=fusion.intensity, client=client, progress=progress
    )
    latent_dim = model.config.latent_dim if model.config.hyperbolic else None
    tangents = None
    if fusion.embedding_weight > 0:
        lazy = [embed_dask(v, model, chunks=chunks, device=device, payload=payload) for v in arrays]
        points = [e.vindex[tuple(s.positions.T)] for e, s in zip(lazy, samples)]
        tangents = [dc.tangent_coordinates(p, latent_dim) for p in _run(points, client)]
    values, tangents = fit_sample.without_fill(samples, values, tangents)
    return dc.fit_on_sample(values, tangents, ks, channel, latent_dim=latent_dim, fusion=fusion, seed=seed)


def segment_dataset(
    volumes: Sequence,
    model: HyperbolicVAE,
    ks: Sequence[int],
    *,
    clustering: DatasetClustering | None = None,
    client=None,
    fusion: FusionConfig = FusionConfig(),
    seed: int = 0,
    sample_size: int = FIT_SIZE,
    chunks: int | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
) -> tuple[DatasetClustering, list[dict[int, np.ndarray]], list[np.ndarray]]:
    """Labels per volume (``{k: labels}``) with one clustering; returns (clustering, labels, embeddings).

    ``volumes`` are dask arrays (e.g. :func:`lazy_volume`) or numpy arrays.
    Without ``clustering`` one is fitted first (:func:`fit_blockwise`); then
    every volume is embedded and assigned block by block. The labels and
    embeddings returned are gathered here: to keep them out of memory, store
    :func:`lazy_assignment`'s arrays instead (as ``hypseg segment`` does).
    """
    import dask  # noqa: PLC0415

    ks = sorted(int(k) for k in ks)
    arrays = [_as_dask(v, chunks) for v in volumes]
    from .distributed import model_on_workers  # noqa: PLC0415

    payload = model_on_workers(model, client)  # one copy of the weights per worker, shared by all volumes
    bounds = intensity_bounds_of(arrays, client)
    if clustering is None:
        clustering = fit_blockwise(
            arrays,
            model,
            ks,
            bounds=bounds,
            client=client,
            payload=payload,
            fusion=fusion,
            seed=seed,
            sample_size=sample_size,
            chunks=chunks,
            device=device,
            progress=progress,
        )
        if progress:
            progress("fit", 1, 1)
    # one pass, block by block: embedding, then assignment with the halo of the TV filter and the Potts prior
    shared = dask.delayed(clustering, pure=True)  # one key: sent to each worker once
    pairs = [
        lazy_assignment(
            v,
            model,
            ks,
            clustering,
            client=client,
            payload=payload,
            shared=shared,
            chunks=chunks,
            device=device,
            bounds=b,
        )
        for v, b in zip(arrays, bounds)
    ]
    gathered = _gather_blocks([list(p) for p in pairs], client, progress, "embed+assign")
    labels = [{k: g[0][..., i] for i, k in enumerate(ks)} for g in gathered]
    return clustering, labels, [g[1] for g in gathered]
