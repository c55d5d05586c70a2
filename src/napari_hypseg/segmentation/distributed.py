"""Blockwise embedding with dask: the same numbers as :func:`.embed.embed`, on any number of workers.

The encoder has no padding, so an output block needs only its input block
plus ``m // 2`` voxels on every side (its reach). ``dask.array.map_overlap``
supplies those halos from the neighbouring chunks; on the volume's faces it
supplies none (``boundary="none"``) and :func:`~napari_hypseg.model.dense.encode_block` mirrors
the block itself there, which is the volume's own mirror as long as the
block is at least ``m // 2 + 1`` voxels deep — guaranteed because a chunk is
never thinner than the halo (dask rechunks it otherwise). Result: equal to the
single-process embedding to float rounding, whatever the chunking.

The model travels once per worker as a single ``dask.delayed`` key every
block task depends on (recomputable if a worker dies, unlike scattered data),
computed once and replicated to every worker when a client is given.
Each worker process rebuilds the network once (cached by the weights'
token), not per block.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._device import resolve_device
from .._errors import UserError
from ..model.config import ModelConfig
from ..model.dense import encode_block
from ..model.vae import HyperbolicVAE
from .embed import default_chunk

# one rebuilt model per worker process: token of the weights -> model
_WORKER_MODELS: dict[str, HyperbolicVAE] = {}


def model_state(model: HyperbolicVAE) -> tuple:
    """(token, config, weights) of the model: what a worker needs to rebuild it."""
    import dask  # noqa: PLC0415 - optional at import time of the core

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    token = dask.base.tokenize(config, {k: v.numpy() for k, v in state.items()})
    return token, config, state


def model_payload(model: HyperbolicVAE):
    """The model for block tasks: one ``dask.delayed`` key that every block task depends on.

    The scheduler sends it to each worker once, with the first task there. It
    is a graph key rather than data scattered up front because a graph key can
    be recomputed: when a worker dies mid-run, scattered data on it is lost for
    good and the whole run failed (tested: a worker killed mid-run), while a
    key is rebuilt wherever the lost tasks rerun. With a client, use
    :func:`model_on_workers`, which also copies it to every worker first.
    """
    import dask  # noqa: PLC0415

    token, config, state = model_state(model)
    return dask.delayed((token, config, state), pure=True, name=f"hypseg-model-{token}")


def model_on_workers(model: HyperbolicVAE, client=None):
    """:func:`model_payload`, and with a distributed ``client`` already computed and copied to every worker.

    A graph key alone lives on the worker that first computed it, and the
    scheduler then prefers that worker for every block task that depends on
    it. Computing it once and replicating the result puts a copy on each
    worker before the blocks are sent; the result keeps its recipe, so a copy
    lost with a dead worker is fetched from another or recomputed.
    """
    payload = model_payload(model)
    if client is None:
        return payload
    with warnings.catch_warnings():
        # the weights are the graph on purpose (the recipe a lost copy is rebuilt from), sent once
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        future = client.compute(payload)
    client.replicate([future])
    return future


def worker_model(payload, device: torch.device) -> HyperbolicVAE:
    """The model of ``payload`` (from :func:`model_payload`), rebuilt once per worker process."""
    token, config, state = payload
    model = _WORKER_MODELS.get(token)
    if model is None:
        model = HyperbolicVAE(ModelConfig.from_dict(config))
        model.load_state_dict(state)
        model.to(device).eval()
        _WORKER_MODELS.clear()  # a worker serves one model at a time; do not keep old ones in RAM
        _WORKER_MODELS[token] = model
    return model


def _embed_block(block: np.ndarray, *, payload, half: int, device: str, block_info=None) -> np.ndarray:
    # "auto" is resolved on the worker: a GPU worker uses its GPU, a CPU worker its cores
    device = resolve_device(device)
    model = worker_model(payload, device)
    info = block_info[0]
    index, count = info["chunk-location"], info["num-chunks"]
    # map_overlap with boundary="none" gives no halo on the volume's faces
    before = [0 if i == 0 else half for i in index]
    after = [0 if i == n - 1 else half for i, n in zip(index, count)]
    lo = before
    hi = [s - a for s, a in zip(block.shape, after)]
    loc = encode_block(model, block, lo, hi, device=device)
    return np.ascontiguousarray(loc.permute(1, 2, 3, 0).float().cpu().numpy())


def embed_dask(volume, model: HyperbolicVAE, *, chunks: int | None = None, device: str = "cpu", payload=None):
    """Lazy ``(Z, Y, X, d)`` float32 dask array of the encoder mean at every voxel (window = the model's m).

    ``volume`` is a dask array (its chunks are kept, raised to at least the
    halo where thinner) or anything array-like (chunked by ``chunks``,
    default :func:`.embed.default_chunk`). Nothing runs until it is computed,
    with whatever scheduler is active (a ``distributed.Client`` if one is).
    Windows other than m resample the whole volume and are not blockwise;
    use :func:`.embed.embed` for them. ``payload`` (from :func:`model_payload`)
    shares one sent copy of the model among several volumes.
    """
    import dask.array as da  # noqa: PLC0415

    m = model.patch_size
    half = m // 2
    if not isinstance(volume, da.Array):
        volume = da.from_array(np.asarray(volume), chunks=chunks or default_chunk(resolve_device(device)))
    elif chunks is not None:
        volume = volume.rechunk(chunks)
    if volume.ndim != 3:
        raise UserError(f"expected a 3D volume, got shape {volume.shape}")
    if min(volume.shape) < m:
        raise UserError(
            f"the volume of shape {volume.shape} is smaller than the model's {m}-voxel patch along some axis"
        )
    volume = volume.astype(np.float32)
    # a chunk thinner than the halo cannot supply it, and a face block must hold half + 1 voxels to mirror
    volume = volume.rechunk(tuple(merge_thin_chunks(c, half + 1) for c in volume.chunks))
    d = model.config.latent_dim
    return da.map_overlap(
        _embed_block,
        volume,
        depth=half,
        boundary="none",
        trim=False,
        align_arrays=False,
        allow_rechunk=False,
        new_axis=3,
        chunks=(*volume.chunks, (d,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), np.float32),
        payload=model_payload(model) if payload is None else payload,
        half=half,
        device=str(device),
    )


class Regions:
    """A lazy volume as one object (one graph key per worker), read region by region inside a block task.

    A block task reads its own block and halo, so it depends on no other
    block: nothing waits in a worker's memory for a neighbour (with
    ``map_overlap`` the halo slices of a whole plane of blocks did, and killed
    640 MiB workers on a 2.5 GiB volume).
    """

    def __init__(self, array):
        self.array = array

    def read(self, lo, hi) -> np.ndarray:
        region = self.array[tuple(slice(a, b) for a, b in zip(lo, hi))]
        return np.asarray(region.compute(scheduler="sync") if hasattr(region, "dask") else region, np.float32)


def as_they_come(tasks, tags, client):
    """(tag, result) of each task as it finishes (in-process: in order), nothing kept here once yielded."""
    import dask  # noqa: PLC0415

    if client is None:
        for tag, task in zip(tags, tasks):
            yield tag, dask.compute(task, scheduler="sync")[0]
        return
    from distributed import as_completed  # noqa: PLC0415

    futures = client.compute(tasks)
    tag_of = {f.key: t for f, t in zip(futures, tags)}
    for future in as_completed(futures):
        result = future.result()
        future.release()
        yield tag_of[future.key], result


def merge_thin_chunks(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """Merge chunks thinner than ``minimum`` into their neighbour (the last one backwards)."""
    out: list[int] = []
    for c in chunks:
        if out and out[-1] < minimum:
            out[-1] += c
        else:
            out.append(c)
    if len(out) > 1 and out[-1] < minimum:
        last = out.pop()  # not `out[-2] += out.pop()`: that adds into the first of the remaining two
        out[-1] += last
    return tuple(out)
