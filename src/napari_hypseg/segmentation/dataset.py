"""Segment many volumes with one clustering, in-process or on a dask cluster.

Three stages, each a dask graph run by whatever scheduler is given:

1. every volume is embedded blockwise (:func:`.distributed.embed_dask`);
2. unless a clustering is given, one is fitted on a bounded seeded sample
   of all volumes (:func:`.dataset_clustering.fit_dataset_clustering`, in
   this process: the sample is small);
3. every volume is assigned with it, one task per volume (the Potts prior
   and the per-volume intensity normalisation need the whole volume).

In-process (``client=None``) the same graphs run with the synchronous
scheduler, so a cluster changes where the work happens, not the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..model.vae import HyperbolicVAE
from .dataset_clustering import DatasetClustering, fit_dataset_clustering
from .distributed import embed_dask
from .fusion import FusionConfig
from .mixture import FIT_SIZE

Progress = Callable[[str, int, int], None]


class PathArray:
    """Array-like view of a volume file that pickles as its path: a worker reads only the blocks it needs."""

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype, self.ndim = str(path), tuple(shape), np.dtype(dtype), len(shape)
        self._data = None

    def __getitem__(self, index):
        if self._data is None:
            from ..io import read_volume  # noqa: PLC0415

            self._data = read_volume(self.path).data  # a memory map for MRC and uncompressed NIfTI
        return np.asarray(self._data[index])

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape, "dtype": self.dtype.str}

    def __setstate__(self, state):
        self.__init__(state["path"], state["shape"], state["dtype"])


def lazy_volume(path, shape, dtype, chunks: int):
    """A dask array of the volume file at ``path``, read blockwise where it is computed."""
    import dask.array as da  # noqa: PLC0415

    return da.from_array(PathArray(path, shape, dtype), chunks=chunks, name=f"hypseg-volume-{path}", asarray=False)


def _assign(clustering: DatasetClustering, volume: np.ndarray, embedding: np.ndarray, ks) -> dict[int, np.ndarray]:
    return clustering.assign(volume, embedding, ks)


def _assign_keep(clustering, volume, embedding, ks):
    return clustering.assign(volume, embedding, ks), embedding


def _compute(collections, client, progress: Progress | None, stage: str):
    """Compute ``collections`` (a list) on ``client`` or in-process, reporting tasks done."""
    import dask  # noqa: PLC0415

    if client is None:
        done = []
        for i, c in enumerate(collections):
            done.append(dask.compute(c, scheduler="sync")[0])
            if progress:
                progress(stage, i + 1, len(collections))
        return done
    from distributed import as_completed  # noqa: PLC0415

    futures = client.compute(collections)
    index = {f.key: i for i, f in enumerate(futures)}
    results = [None] * len(futures)
    for n, future in enumerate(as_completed(futures), start=1):
        results[index[future.key]] = future.result()
        if progress:
            progress(stage, n, len(futures))
    return results


def _gather_blocks(arrays, client, progress: Progress | None, stage: str) -> list[np.ndarray]:
    """Compute dask arrays block by block into numpy arrays here, reporting blocks done (all volumes together)."""
    import dask  # noqa: PLC0415

    out = [np.empty(a.shape, a.dtype) for a in arrays]
    parts = []
    for i, a in enumerate(arrays):
        starts = [np.cumsum((0, *c)) for c in a.chunks]
        for index, block in np.ndenumerate(a.to_delayed()):
            parts.append((i, tuple(slice(st[j], st[j + 1]) for st, j in zip(starts, index)), block))

    def place(n, part, value):
        out[part[0]][part[1]] = value
        if progress:
            progress(f"{stage} blocks", n, len(parts))

    if client is None:
        for n, part in enumerate(parts, start=1):
            place(n, part, dask.compute(part[2], scheduler="sync")[0])
        return out
    from distributed import as_completed  # noqa: PLC0415

    futures = client.compute([p[2] for p in parts])
    where = {f.key: p for f, p in zip(futures, parts)}
    for n, future in enumerate(as_completed(futures), start=1):
        place(n, where[future.key], future.result())
    return out


def segment_dataset(
    volumes: Sequence, model: HyperbolicVAE, ks: Sequence[int], *, clustering: DatasetClustering | None = None,
    client=None, fusion: FusionConfig = FusionConfig(), seed: int = 0, sample_size: int = FIT_SIZE,
    chunks: int | None = None, device: str = "cpu", progress: Progress | None = None,
) -> tuple[DatasetClustering, list[dict[int, np.ndarray]], list[np.ndarray]]:
    """Labels per volume (``{k: labels}``) with one clustering; returns (clustering, labels, embeddings).

    ``volumes`` are dask arrays (e.g. :func:`lazy_volume`) or numpy arrays.
    """
    import dask  # noqa: PLC0415
    import dask.array as da  # noqa: PLC0415

    ks = sorted(int(k) for k in ks)
    arrays = [v if isinstance(v, da.Array) else da.from_array(np.asarray(v), chunks=chunks or "auto") for v in volumes]
    from .distributed import model_payload  # noqa: PLC0415

    payload = model_payload(model, client)  # one copy of the weights per worker, shared by all volumes
    lazy_embeddings = [embed_dask(v, model, chunks=chunks, device=device, payload=payload) for v in arrays]
    if clustering is not None:
        # one pass: each volume's blocks are embedded where they are and gathered on the worker that assigns it
        shared = dask.delayed(clustering, pure=True)  # one key: sent to each worker once
        tasks = [dask.delayed(_assign_keep, pure=True)(shared, v, e, ks) for v, e in zip(arrays, lazy_embeddings)]
        results = _compute(tasks, client, progress, "embed+assign")
        return clustering, [r[0] for r in results], [r[1] for r in results]
    embeddings = _gather_blocks(lazy_embeddings, client, progress, "embed")
    values = _compute(arrays, client, None, "read")
    latent_dim = model.config.latent_dim if model.config.hyperbolic else None
    clustering = fit_dataset_clustering(values, embeddings, ks, latent_dim=latent_dim, fusion=fusion,
                                        seed=seed, sample_size=sample_size)
    if progress:
        progress("fit", 1, 1)
    shared = dask.delayed(clustering, pure=True)
    # the fit needed every embedding here; the assignment sends each back with its volume
    tasks = [dask.delayed(_assign, pure=True)(shared, v, e, ks) for v, e in zip(values, embeddings)]
    labels = _compute(tasks, client, progress, "assign")
    return clustering, labels, embeddings
