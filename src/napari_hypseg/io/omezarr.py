"""OME-Zarr (NGFF 0.4) in and out: chunked volumes read lazily, label levels written as multiscale pyramids.

Written with zarr directly (format 2, NGFF 0.4 metadata), the layout napari-ome-zarr,
ome-zarr-py and Fiji's N5/OME-Zarr readers all open; ome-zarr-py is not needed to
write 20 lines of JSON, and its writer API has changed across releases.

Layout of what :func:`write_label_levels` makes, per level ``k``::

    <image>.ome.zarr/labels/.zattrs         {"labels": [..., "hypseg_k4", ...]}
    <image>.ome.zarr/labels/hypseg_k4/      multiscale label image, scale of the source
        .zattrs  {"multiscales": [...], "image-label": {"version": "0.4", "colors": [...]}}
        0/ 1/ 2/ ...                         pyramid: nearest-neighbour (every 2nd voxel)

or, for a non-OME-Zarr input, the same ``labels`` group in a new
``<stem>_labels.ome.zarr`` beside the other outputs. Each level is written under a
temporary name and renamed when complete, so a reader never sees half a pyramid.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._errors import UserError
from .volume import Volume

NGFF_VERSION = "0.4"
SUFFIX = ".ome.zarr"
# pyramid levels stop when the smallest axis would drop below this many voxels
_MIN_PYRAMID_EDGE = 16
_MAX_PYRAMID_LEVELS = 5
CHUNK = 64
AXES = [{"name": n, "type": "space"} for n in ("z", "y", "x")]


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """A folder holding an NGFF multiscale image (its ``.zattrs`` or ``zarr.json`` names one)."""
    path = Path(path)
    return path.is_dir() and _multiscales(path) is not None


def _attrs(path: Path) -> dict:
    for name in (".zattrs", "zarr.json"):
        f = path / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                return {}
            return data.get("attributes", {}).get("ome", data.get("attributes", data)) if name == "zarr.json" else data
    return {}


def _multiscales(path: Path):
    ms = _attrs(path).get("multiscales")
    return ms[0] if isinstance(ms, list) and ms else None


def read_ome_zarr(path: str | os.PathLike) -> Volume:
    """The full-resolution level as a lazy dask array (Z, Y, X) with its scale as a diagonal affine."""
    import dask.array as da  # noqa: PLC0415

    path = Path(path)
    ms = _multiscales(path)
    if ms is None:
        raise UserError(f"{path} is not an OME-Zarr image (no multiscales metadata)")
    dataset = ms["datasets"][0]
    data = da.from_zarr(str(path / dataset["path"]))
    while data.ndim > 3 and data.shape[0] == 1:  # t, c axes of size 1
        data = data[0]
    if data.ndim != 3:
        raise UserError(f"{path} holds a {data.ndim}D image; expected one 3D volume")
    scale, translate = [1.0] * 3, [0.0] * 3
    for t in dataset.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"][-3:]]
        elif t.get("type") == "translation":
            translate = [float(v) for v in t["translation"][-3:]]
    affine = np.eye(4)
    affine[:3, :3] = np.diag(scale)
    affine[:3, 3] = translate
    return Volume(data=data, affine=affine, format="ome-zarr", metadata={"ome_zarr": str(path)}, source=path)


def _pyramid(labels: np.ndarray) -> list[np.ndarray]:
    levels = [labels]
    while len(levels) < _MAX_PYRAMID_LEVELS and min(levels[-1].shape) // 2 >= _MIN_PYRAMID_EDGE:
        levels.append(levels[-1][::2, ::2, ::2])  # nearest neighbour: a label is never averaged
    return levels


def _write_multiscale_labels(target: Path, labels: np.ndarray, scale: Sequence[float], name: str, colors) -> None:
    import zarr  # noqa: PLC0415

    root = zarr.open_group(str(target), mode="w", zarr_format=2)
    datasets = []
    lazy = hasattr(labels, "dask")  # a dask array is stored block by block, never whole in memory
    for i, level in enumerate(_pyramid(labels if lazy else np.asarray(labels))):
        arr = root.create_array(
            str(i), shape=level.shape, dtype=level.dtype, chunks=tuple(min(CHUNK, n) for n in level.shape), fill_value=0
        )
        if lazy:
            level.rechunk(arr.chunks).store(arr, lock=False)  # one task per zarr chunk: no two write one chunk
        else:
            arr[...] = level
        datasets.append(
            {
                "path": str(i),
                "coordinateTransformations": [{"type": "scale", "scale": [float(s) * 2**i for s in scale]}],
            }
        )
    root.attrs.update(
        {
            "multiscales": [{"version": NGFF_VERSION, "name": name, "axes": AXES, "datasets": datasets}],
            "image-label": {"version": NGFF_VERSION, "colors": colors, "source": {"image": "../../"}},
        }
    )


def label_colors(k: int) -> list[dict]:
    """Stable RGBA per id (tab20), the same for a given id in every volume and level."""
    from matplotlib import colormaps  # noqa: PLC0415

    cmap = colormaps["tab20"]
    return [{"label-value": i, "rgba": [int(round(255 * c)) for c in cmap((i - 1) % 20)]} for i in range(1, k + 1)]


def labels_root(volume: Volume, out_dir: Path, stem: str) -> Path:
    """Where label levels go: inside the input's OME-Zarr, or a new ``<stem>_labels.ome.zarr`` in ``out_dir``."""
    if volume.format == "ome-zarr" and volume.source is not None:
        return Path(volume.source)
    return out_dir / f"{stem}_labels{SUFFIX}"


def write_label_levels(
    root: Path, levels: dict[int, np.ndarray], scale: Sequence[float], *, prefix: str = "hypseg"
) -> list[Path]:
    """Write ``root/labels/<prefix>_k<k>`` for each level (each renamed into place when complete); return their paths.

    A level may be a dask array: it is then stored chunk by chunk by the active scheduler.
    """
    import zarr  # noqa: PLC0415

    root = Path(root)
    if not root.exists():
        zarr.open_group(str(root), mode="w", zarr_format=2)
    labels_dir = root / "labels"
    if not labels_dir.exists():
        zarr.open_group(str(labels_dir), mode="w", zarr_format=2)
    written = []
    for k, labels in sorted(levels.items()):
        name = f"{prefix}_k{k}"
        final = labels_dir / name
        tmp = labels_dir / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _write_multiscale_labels(tmp, labels, scale, name, label_colors(int(labels.max()) if labels.size else 0))
        if final.exists():
            old = labels_dir / f".{name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        written.append(final)
    group = zarr.open_group(str(labels_dir), mode="a", zarr_format=2)
    names = list(group.attrs.get("labels", []))
    group.attrs["labels"] = names + [p.name for p in written if p.name not in names]
    return written


def write_image(path: Path, data: np.ndarray, scale: Sequence[float]) -> Path:
    """A single-scale OME-Zarr image (tests, conversion of an MRC/NIfTI for a cluster run)."""
    import zarr  # noqa: PLC0415

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = root.create_array("0", shape=data.shape, dtype=data.dtype, chunks=tuple(min(CHUNK, n) for n in data.shape))
    arr[...] = data
    root.attrs["multiscales"] = [
        {
            "version": NGFF_VERSION,
            "axes": AXES,
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [float(s) for s in scale]}]}
            ],
        }
    ]
    return Path(path)


def is_ome_zarr_labels(path: str | os.PathLike) -> bool:
    """A folder whose ``labels`` group lists label images (an image with labels, or a ``*_labels.ome.zarr``)."""
    return bool(label_paths(Path(path)))


def label_paths(root: Path) -> list[Path]:
    """The label images listed in ``root/labels`` (empty if none)."""
    names = _attrs(Path(root) / "labels").get("labels", [])
    return [Path(root) / "labels" / n for n in names if isinstance(n, str) and (Path(root) / "labels" / n).is_dir()]


def read_multiscale(path: Path) -> tuple[list, dict]:
    """Every pyramid level of a multiscale image (lazy dask arrays, leading size-1 axes dropped) and its scale."""
    import dask.array as da  # noqa: PLC0415

    ms = _multiscales(Path(path))
    if ms is None:
        raise UserError(f"{path} is not an OME-Zarr multiscale image")
    data = [da.from_zarr(str(Path(path) / d["path"])) for d in ms["datasets"]]
    data = [d.reshape(d.shape[-3:]) if d.ndim > 3 and all(n == 1 for n in d.shape[:-3]) else d for d in data]
    scale = next(
        (t["scale"] for t in ms["datasets"][0].get("coordinateTransformations", []) if t["type"] == "scale"),
        [1.0, 1.0, 1.0],
    )
    return data, {"scale": [float(v) for v in scale[-3:]]}


#: label images are multiscale images too; the name says what the caller expects
read_labels_multiscale = read_multiscale
