"""``hypseg segment`` with one clustering for all volumes, in-process or on a dask cluster.

Taken when any of ``--workers``, ``--scheduler``, ``--clusters-from``,
``--save-clusters`` is given, or an input or the output is OME-Zarr. The
default single-volume path (a clustering per volume) is unchanged.

Outputs are planned as for single volumes before any work (:func:`plan_dataset_outputs`:
the single-volume :func:`.segment.plan_outputs` for MRC / NIfTI outputs, the
same checks for OME-Zarr ones). Without a saved clustering (``--clusters-from``)
one is fitted first on a bounded sample read block by block
(:func:`.dataset.fit_blockwise`). Then every volume is streamed
(:func:`_stream_volume`): labels and embedding go
block by block into a scratch zarr, written by the workers, and from it, by one
worker (by this process when in-process), into the label pyramids or MRC / NIfTI files,
the statistics tables and a memory-mapped ``.npy``, so neither this process nor
any worker holds the whole volume, and the outputs of a dataset are written by
its workers in parallel, not by this process one after another. The next
volumes' blocks (as many volumes as there are workers) are sent before this one's
outputs are written, so the workers do not wait between volumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .._errors import UserError
from ..io import omezarr, read_volume
from ..segment_config import CPU_BLOCK
from ._outputs import MANIFEST_SUFFIX, parse_clusters, write_levels
from ._progress import ProgressLine

#: blockwise embedding chunk edge on CPU workers (GPU workers may use a larger --chunk)
DEFAULT_CHUNK = CPU_BLOCK


def wants_dataset_path(args: argparse.Namespace, paths: list[Path]) -> bool:
    return bool(
        args.workers
        or args.scheduler
        or args.clusters_from
        or args.save_clusters
        or args.intensity
        or args.format == "ome-zarr"
        or any(omezarr.is_ome_zarr(p) for p in paths)
    )


def check_dataset_args(args: argparse.Namespace) -> None:
    if args.mode != "mixture":
        raise UserError("one clustering across volumes (and dask / OME-Zarr runs) use --mode mixture")
    if args.window is not None or args.stride != 1 or args.binning != 1:
        raise UserError("--window, --stride and --bin are not blockwise: leave them at their defaults here")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.workers and args.scheduler:
        raise UserError("give --workers (a local cluster) or --scheduler (an existing one), not both")
    if args.clusters_from is not None and not Path(args.clusters_from).is_file():
        raise UserError(f"--clusters-from {args.clusters_from}: no such file")
    if args.clusters_from is not None and args.intensity is not None:
        raise UserError(
            "--intensity chooses the channel of a clustering fitted here; with --clusters-from it is the file's"
        )


def worker_env(n_workers: int) -> dict[str, str]:
    """Environment of local worker processes: one dask thread each, and torch's threads sharing the cores.

    Without it every worker's torch starts one thread per core and N workers
    oversubscribe the machine N times (2 workers on 2 cores ran slower than 1).
    """
    import os  # noqa: PLC0415

    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n_workers))}


@contextmanager
def dask_client(args: argparse.Namespace):
    """A distributed client for --scheduler / --workers, else None (in-process)."""
    if not (args.workers or args.scheduler):
        yield None
        return
    from distributed import Client, LocalCluster  # noqa: PLC0415

    if args.scheduler:
        client = Client(args.scheduler)
        cluster = None
    else:
        from ..cluster import WORKER_PRELOAD  # noqa: PLC0415

        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            env=worker_env(args.workers),
            preload=[WORKER_PRELOAD],
        )
        client = Client(cluster)
    print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _read(path: Path, chunk: int):
    """(Volume with geometry, dask array of its voxels read where computed)."""
    from ..segmentation.dataset import lazy_volume  # noqa: PLC0415

    if omezarr.is_ome_zarr(path):
        volume = omezarr.read_ome_zarr(path)
        return volume, volume.data.rechunk(chunk)
    volume = read_volume(path)
    return volume, lazy_volume(path, volume.shape, volume.data.dtype, chunk)


def _settings(args) -> dict:
    return {
        "mode": args.mode,
        "seed": args.seed,
        "clusters_from": str(args.clusters_from) if args.clusters_from else None,
        "format": args.format,
    }


def _complete(out_dir: Path, stem: str, ks, settings, model: Path) -> bool:
    """Whether a manifest says this volume was fully written with these settings and this model."""
    manifest = out_dir / f"{stem}{MANIFEST_SUFFIX}"
    try:
        record = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    files = record.get("files", {})
    paths = [
        Path(files[str(k)]) if Path(files.get(str(k), "")).is_absolute() else out_dir / files.get(str(k), "")
        for k in ks
        if str(k) in files
    ]
    return (
        record.get("settings") == settings
        and record.get("model") == str(model)
        and set(ks) <= set(record.get("levels", []))
        and len(paths) == len(ks)
        and all(p.exists() for p in paths)
    )


def writes_ome_zarr(path: Path, args: argparse.Namespace) -> bool:
    return args.format == "ome-zarr" or (args.format is None and omezarr.is_ome_zarr(path))


def plan_dataset_outputs(paths: list[Path], stems: dict[Path, str], model_config, args: argparse.Namespace) -> None:
    """Before any embedding, as for single volumes: shapes fit the model, no output overwrites an input, room on disk.

    MRC / NIfTI outputs go through the single-volume planning itself
    (:func:`.segment.plan_outputs`); OME-Zarr outputs (a labels folder, the
    embedding, the manifest) get the same checks here.
    """
    from ..io.atomic import check_writable  # noqa: PLC0415
    from ._outputs import EMBEDDING_SUFFIX  # noqa: PLC0415
    from .segment import peek_shape, plan_outputs, segment_config_from_args  # noqa: PLC0415

    ks = parse_clusters(args.clusters)
    files = [p for p in paths if not writes_ome_zarr(p, args)]
    if files:
        plan_outputs(files, stems, model_config, segment_config_from_args(args), ks, args.out_dir, args.format)
    inputs = {p.resolve() for p in paths}
    need = 0
    for path in (p for p in paths if writes_ome_zarr(p, args)):
        inside = omezarr.is_ome_zarr(path)  # labels go into the input's own labels/ group
        shape = tuple(omezarr.read_ome_zarr(path).shape) if inside else peek_shape(path)
        if shape is not None:
            if min(shape) < model_config.patch_size:
                raise UserError(
                    f"{path.name}: the volume of shape {shape} is smaller than the model's "
                    f"{model_config.patch_size}-voxel patch along some axis"
                )
            voxels = int(np.prod(shape))
            # labels (and their pyramid, < 8/7 more) plus, while streaming, a scratch copy; the embedding
            need += voxels * len(ks) * 3 + voxels * 4 * model_config.latent_dim
        stem = stems[path]
        targets = [args.out_dir / f"{stem}{EMBEDDING_SUFFIX}", args.out_dir / f"{stem}{MANIFEST_SUFFIX}"]
        for target in targets:
            if target.is_dir():
                raise UserError(f"cannot write {target}: a folder has that name")
            if target.resolve() in inputs:
                raise UserError(f"segmenting {path} would overwrite the input {target}; choose another --out-dir")
        if not inside:
            root = args.out_dir / f"{stem}_labels{omezarr.SUFFIX}"
            if root.exists() and not root.is_dir():
                raise UserError(f"cannot write the labels {root}: a file has that name")
            if root.resolve() in inputs:
                raise UserError(f"segmenting {path} would overwrite the input {root}; choose another --out-dir")
    if need:
        check_writable(
            args.out_dir / f"{stems[paths[0]]}{MANIFEST_SUFFIX}",
            need_bytes=need,
            what="output folder",
            shown=args.out_dir,
        )


def _stream_volume(
    volume,
    data,
    model,
    ks,
    clustering,
    *,
    client,
    payload,
    shared,
    chunk: int,
    device: str,
    args: argparse.Namespace,
    path: Path,
    stem: str,
    extra: dict,
    progress,
    bounds=None,
) -> Iterator[None]:
    """Segment one volume block by block into a scratch zarr, then write its outputs from there.

    A generator: the first ``next`` plans and sends the blocks, the second
    waits for them, writes the outputs and stops with the paths written
    (:func:`_finish_stream`). Closed before that, it waits for the blocks
    already sent to end and removes its scratch.

    The workers write the blocks; one of them (this process, in-process) then copies them, chunk by
    chunk or slab by slab, into the outputs (:func:`_write_outputs`): no output is ever whole in memory.
    """
    import zarr  # noqa: PLC0415

    from ..segmentation.dataset import (  # noqa: PLC0415
        abandon_assignment,
        block_grid,
        finish_assignment,
        lazy_assignment,
        start_assignment,
    )
    from ..segmentation.dataset_clustering import label_dtype  # noqa: PLC0415

    out_dir = args.out_dir.resolve()  # workers write here too, whatever their working folder
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / f"{stem}{MANIFEST_SUFFIX}"
    manifest.unlink(missing_ok=True)  # written last: its presence means complete
    grid = block_grid(data, model, clustering, chunk)
    edges = tuple(c[0] for c in grid)  # every block boundary falls on this grid: a merged last block spans two
    d = model.config.latent_dim
    shape = tuple(data.shape)
    scratch = out_dir / f".{stem}_scratch-{os.getpid()}.zarr"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        group = zarr.open_group(str(scratch), mode="w", zarr_format=2)
        label_store = group.create_array(
            "labels", shape=(*shape, len(ks)), dtype=label_dtype(ks), chunks=(*edges, len(ks)), fill_value=0
        )
        embedding_store = group.create_array(
            "embedding", shape=(*shape, d), dtype=np.float32, chunks=(*edges, d), fill_value=0
        )
        markers = lazy_assignment(
            data,
            model,
            ks,
            clustering,
            client=client,
            payload=payload,
            shared=shared,
            chunks=chunk,
            device=device,
            targets=(label_store, embedding_store),
            bounds=bounds,
        )
        started = start_assignment(markers, client)
        write = functools.partial(
            _write_outputs,
            scratch=scratch,
            ks=ks,
            out_dir=out_dir,
            manifest=manifest,
            ome_zarr=writes_ome_zarr(path, args),
            fmt=args.format,
            stem=stem,
            extra=extra,
        )
        # on a cluster a worker writes the outputs, as soon as the blocks are in (the task depends on them),
        # so a dataset's outputs are written by its workers, not one after another by this process
        writing = (
            None if client is None else _submit_write(client, write, dataclasses.replace(volume, data=data), started)
        )
        try:
            yield  # the blocks are on their way: the caller may start the next volume before this one's outputs
        except GeneratorExit:  # abandoned: let the blocks and the writing sent end before the scratch goes
            abandon_assignment(started if writing is None else [*started, writing], client)
            raise
        finish_assignment(started, client=client, progress=progress)
        written = write(volume) if writing is None else writing.result()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return written


#: scheduling priority of a volume's output writing: ahead of the next volumes' blocks, which are
#: already queued, so the finished volume leaves the pipeline first
WRITE_PRIORITY = 10


def _submit_write(client, write, volume, blocks):
    """``write(volume)`` on a worker once every future in ``blocks`` is done (its future; fails as they fail).

    ``volume`` travels with its voxels as a lazy array, not as the numbers.
    """
    import uuid  # noqa: PLC0415

    key = f"hypseg-write-{uuid.uuid4().hex}"  # named so in the dashboard's task stream
    return client.submit(_after, write, volume, blocks, key=key, priority=WRITE_PRIORITY)


def _after(function, argument, _done):
    """``function(argument)``; ``_done`` only orders the task after its dependencies."""
    return function(argument)


def _write_outputs(
    volume, *, scratch: Path, ks, out_dir: Path, manifest: Path, ome_zarr: bool, fmt, stem: str, extra: dict
):
    """Copy a volume's finished scratch zarr into its outputs: the OME-Zarr labels or the MRC / NIfTI files,
    the statistics tables and the ``.npy`` embedding, chunk or slab by slab; the manifest last."""
    import dask  # noqa: PLC0415
    import dask.array as da  # noqa: PLC0415
    import zarr  # noqa: PLC0415

    from ..io.atomic import atomic_path  # noqa: PLC0415
    from ..io.levels import store_npy  # noqa: PLC0415
    from ._outputs import EMBEDDING_SUFFIX  # noqa: PLC0415

    # this is one task's work: its reads run here, not as tasks sent back to the cluster
    with dask.config.set(scheduler="sync"):
        group = zarr.open_group(str(scratch), mode="r")
        stored = da.from_zarr(group["labels"])
        if not ome_zarr:
            return write_levels(
                volume.geometry,
                lambda k: stored[..., ks.index(k)],
                ks,
                out_dir,
                fmt=fmt,
                stem=stem,
                image=volume.data,
                unit=volume.metadata.get("units"),
                embedding=group["embedding"],
                manifest=extra,
            )
        emb = out_dir / f"{stem}{EMBEDDING_SUFFIX}"
        with atomic_path(emb) as tmp:
            store_npy(tmp, group["embedding"])
        root = omezarr.labels_root(volume, out_dir, stem)
        written = omezarr.write_label_levels(root, {k: stored[..., i] for i, k in enumerate(ks)}, volume.spacing)
    return _write_manifest(volume, written, emb, ks, manifest, extra)


def _finish_stream(stream: Iterator[None]) -> list[Path]:
    """Run a started :func:`_stream_volume` to its end: the paths it wrote."""
    try:
        next(stream)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a volume stream yielded twice")  # pragma: no cover - a programming error


def _print_paths(paths: list[Path]) -> None:
    for p in paths:
        print(p)


def _write_manifest(volume, written: list[Path], emb: Path, ks, manifest: Path, extra: dict) -> list[Path]:
    from datetime import UTC, datetime  # noqa: PLC0415

    from .. import __version__  # noqa: PLC0415
    from ..io.atomic import atomic_path  # noqa: PLC0415
    from ._outputs import MANIFEST_FORMAT  # noqa: PLC0415

    record = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "hypseg_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(volume.source) if volume.source else None,
        "levels": [int(k) for k in ks],
        "files": {**{str(k): str(p.resolve()) for k, p in zip(ks, written)}, "embedding": emb.name},
        **extra,
    }
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return [*written, emb, manifest]


def run_dataset(args: argparse.Namespace, paths: list[Path], stems: dict[Path, str], model) -> int:
    from ..segmentation.dataset_clustering import DatasetClustering  # noqa: PLC0415

    check_dataset_args(args)
    from ..segment_config import FusionConfig  # noqa: PLC0415

    fusion = FusionConfig() if args.intensity is None else FusionConfig(intensity=args.intensity)
    ks = parse_clusters(args.clusters)
    chunk = args.chunk or DEFAULT_CHUNK
    clustering = DatasetClustering.load(args.clusters_from) if args.clusters_from else None
    if clustering is not None:
        missing = [k for k in ks if k not in clustering.levels]
        if missing:
            raise UserError(f"{args.clusters_from} has levels {sorted(clustering.levels)}, not {missing}")
    settings = _settings(args)
    todo = paths
    if clustering is not None:
        # ids come from the file, not from the batch: a finished volume need not be redone
        todo = [p for p in paths if not _complete(args.out_dir, stems[p], ks, settings, args.model)]
        for p in paths:
            if p not in todo:
                print(f"{p.name}: complete (manifest), skipped", file=sys.stderr)
    if not todo:
        return 0
    plan_dataset_outputs(todo, stems, model.config, args)
    read = [_read(p, chunk) for p in todo]
    t0 = time.perf_counter()
    bars: dict[str, ProgressLine] = {}

    def report(stage: str, done: int, total: int) -> None:
        """One progress line per stage: blocks embedded (all volumes together), volumes fitted / assigned."""
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = ProgressLine(f"{len(todo)} volumes: {stage}")
        bars[stage].update(done, total, f"{done}/{total}")

    extra = {"model": str(args.model), "settings": settings}
    with dask_client(args) as client:
        import dask  # noqa: PLC0415

        from ..segmentation.dataset import fit_blockwise, intensity_bounds_of  # noqa: PLC0415
        from ..segmentation.distributed import model_on_workers  # noqa: PLC0415

        payload = model_on_workers(model, client)  # one copy of the weights per worker, shared by all volumes
        arrays = [data for _, data in read]
        # a fit needs every volume's percentiles first; so do workers: found per volume as it started,
        # their round trips queued behind the blocks already sent and left two workers idle 35 % of an
        # 8-volume run (docs/scaling.md). In-process each volume finds its own as it starts.
        up_front = client is not None or clustering is None
        bounds = intensity_bounds_of(arrays, client) if up_front else [None] * len(read)
        if clustering is None:
            # fitted on a bounded sample read block by block: no volume whole in memory, here or on a worker
            clustering = fit_blockwise(
                arrays,
                model,
                ks,
                bounds=bounds,
                client=client,
                payload=payload,
                fusion=fusion,
                seed=args.seed,
                chunks=chunk,
                device=args.device,
                progress=report,
            )
        if args.save_clusters:
            print(f"clusters: {clustering.save(args.save_clusters)}")
        shared = dask.delayed(clustering, pure=True)
        # volumes in flight: one being written here and, on the workers, as many as there are workers
        # (a small volume is one block, so one volume ahead would keep only one worker busy); in-process
        # a started volume does not run until it is finished, so one at a time
        in_flight = 1 if client is None else 1 + len(client.scheduler_info()["workers"])
        pending = []
        try:
            for path, (volume, data), volume_bounds in zip(todo, read, bounds):
                stream = _stream_volume(
                    volume,
                    data,
                    model,
                    ks,
                    clustering,
                    client=client,
                    payload=payload,
                    shared=shared,
                    chunk=chunk,
                    device=args.device,
                    args=args,
                    path=path,
                    stem=stems[path],
                    extra=extra,
                    progress=report,
                    bounds=volume_bounds,
                )
                next(stream)
                pending.append(stream)
                if len(pending) == in_flight:
                    _print_paths(_finish_stream(pending.pop(0)))
            while pending:
                _print_paths(_finish_stream(pending.pop(0)))
        finally:
            for stream in pending:
                stream.close()  # a volume not finished leaves no scratch behind
    for bar in bars.values():
        bar.close()
    hours = (time.perf_counter() - t0) / 3600
    print(f"{len(todo)} volumes, {len(todo) / hours:.0f} volumes/hour", file=sys.stderr)
    return 0
