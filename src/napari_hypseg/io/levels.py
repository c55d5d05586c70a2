"""The files a segmentation's levels become: ``<stem>_k<K>[_<mode>].<ext>`` on the grid of the source volume.

One output path for every caller. ``hypseg segment`` writes each level's
labels with its statistics table, the embedding and a manifest; the
Clusters widget's export writes the labels alone; both, and napari's
File › Save Layers, end in :func:`napari_hypseg.io.write_labels` with the
source's :class:`~napari_hypseg.io.volume.Geometry`. The format names, file
suffixes and the default format of each kind of source are declared here once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._errors import UserError
from ..segment_config import DEFAULT_INTENSITY
from ..segment_modes import DEFAULT_MODE, MIXTURE_MODE
from . import write_labels
from .atomic import atomic_path, stem_of
from .volume import Geometry


@dataclass(frozen=True)
class LabelFormat:
    """A file format label files can be written in."""

    suffix: str
    title: str
    #: suffixes a file dialog lists for this format, the written one first
    patterns: tuple[str, ...]

    @property
    def dialog_filter(self) -> str:
        """A Qt file-dialog filter, e.g. ``"MRC (*.mrc *.rec *.map)"``."""
        return f"{self.title} ({' '.join('*' + p for p in self.patterns)})"


#: Label file formats by name: the choices of ``hypseg segment --format``.
FORMATS = {
    "mrc": LabelFormat(".mrc", "MRC", (".mrc", ".rec", ".map")),
    "nii": LabelFormat(".nii", "NIfTI", (".nii", ".nii.gz")),
    "nii.gz": LabelFormat(".nii.gz", "NIfTI", (".nii.gz", ".nii")),
}
#: The format a source's labels get unless another is asked for, by the kind of source file
#: (also the export panel's choices); volumes from arrays or OME-Zarr get MRC.
DEFAULT_FORMAT = {"mrc": "mrc", "nifti": "nii.gz"}
#: Unit of the voxel size per kind of source file when the file does not name one (statistics tables).
UNITS = {"mrc": "Å", "nifti": "mm"}

EMBEDDING_SUFFIX = "_embedding.npy"
STATS_SUFFIX = "_stats.csv"
MANIFEST_SUFFIX = "_manifest.json"
MANIFEST_FORMAT = "napari-hypseg-segmentation"


def default_format(source_format: str) -> str:
    """The format name label files of a ``"mrc"``, ``"nifti"`` or other source get by default."""
    return DEFAULT_FORMAT.get(source_format, DEFAULT_FORMAT["mrc"])


def label_suffix(fmt: str | None, source_format: str) -> str:
    """File suffix of label files in format `fmt`, or in the source's default format when `fmt` is None."""
    return FORMATS[fmt or default_format(source_format)].suffix


def mode_tag(mode: str, intensity: str = DEFAULT_INTENSITY) -> str:
    """``""`` for the default mode, else ``"_<mode>"``, and ``"_<intensity>"`` after it for the mixture on a
    chosen intensity: files of other clusterings never replace the default's files."""
    tag = "" if mode == DEFAULT_MODE else f"_{mode}"
    if mode == MIXTURE_MODE and intensity != DEFAULT_INTENSITY:
        tag += f"_{intensity}"
    return tag


def level_name(stem: str, k: int, tag: str = "") -> str:
    """``<stem>_k<k><tag>``: the name, without suffix, of level `k`'s files."""
    return f"{stem}_k{k}{tag}"


def store_npy(path: Path, array) -> None:
    """Write a dask or zarr array as a ``.npy`` file, chunk by chunk through a memory map."""
    import dask.array as da  # noqa: PLC0415 - only for arrays too large for memory

    memmap = np.lib.format.open_memmap(path, mode="w+", dtype=array.dtype, shape=tuple(array.shape))
    source = array if isinstance(array, da.Array) else da.from_zarr(array)
    da.store(source, memmap, lock=False, scheduler="sync")  # this process alone writes the file
    memmap.flush()
    del memmap


def write_levels(
    geometry: Geometry,
    labels_of: Callable[[int], np.ndarray],
    ks: Sequence[int],
    out_dir: str | os.PathLike,
    *,
    fmt: str | None = None,
    stem: str | None = None,
    tag: str = "",
    image: np.ndarray | None = None,
    unit: str | None = None,
    embedding: np.ndarray | None = None,
    manifest: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Path]:
    """Write one label file per level on the source grid, and what else is given; return the paths written.

    Parameters
    ----------
    geometry : Geometry
        The source's grid; every label file copies it.
    labels_of : callable
        ``labels_of(k)`` is the (Z, Y, X) label volume of level ``k``: a numpy
        array, or a dask / zarr array streamed slab by slab (MRC; see
        :func:`napari_hypseg.io.write_labels`).
    ks : sequence of int
        The levels to write, as ``<out_dir>/<stem>_k<k><tag><suffix>``.
    out_dir : path-like
        Created if missing.
    fmt : str, optional
        A :data:`FORMATS` name; None: the source's format (:data:`DEFAULT_FORMAT`).
    stem : str, optional
        Default: the source file's name without suffix, else ``"volume"``.
    tag : str
        Appended to each level's name (:func:`mode_tag`).
    image : array, optional
        The source voxels: given, a ``<stem>_k<k><tag>_stats.csv`` per level
        (one row per cluster: voxels, physical volume, mean and sd of these
        intensities, bounding box; see
        :func:`napari_hypseg.segmentation.stats.cluster_statistics`).
    unit : str, optional
        Unit of the voxel size, for the tables; None or "unknown": :data:`UNITS` of the source's format.
    embedding : array, optional
        Given, written as ``<stem>_embedding.npy`` (a dask / zarr array chunk by chunk).
    manifest : dict, optional
        Given (even empty), ``<stem>_manifest.json`` lists every file written
        plus these fields. It is removed first and written last, so its
        presence means the files it lists are one complete result; a run
        killed half way, or stopped, leaves no manifest, whatever older files remain.
    should_stop : callable, optional
        Checked before each level; True stops there and returns what was written.

    Returns
    -------
    list of Path
        Label files, then statistics tables, then the embedding and the manifest (those written).
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out_dir}: {exc.strerror}") from None
    stem = stem or (stem_of(geometry.source) if geometry.source else "volume")
    suffix = label_suffix(fmt, geometry.format)
    manifest_path = out_dir / f"{stem}{MANIFEST_SUFFIX}"
    if manifest is not None:
        try:
            manifest_path.unlink(missing_ok=True)
        except OSError as exc:
            raise UserError(f"cannot replace {manifest_path}: {exc.strerror}") from None
    if image is not None:
        from ..segmentation.stats import cluster_statistics, write_statistics_csv  # noqa: PLC0415 - only for tables

        if not isinstance(unit, str) or unit in ("", "unknown"):
            unit = UNITS.get(geometry.format)

    labels_written: list[Path] = []
    stats_written: list[Path] = []
    for k in ks:
        if should_stop is not None and should_stop():
            return labels_written + stats_written
        labels = labels_of(k)
        name = level_name(stem, k, tag)
        labels_written.append(write_labels(out_dir / f"{name}{suffix}", labels, like=geometry))
        if image is not None:
            rows = cluster_statistics(labels, image, geometry.spacing)
            stats_written.append(write_statistics_csv(out_dir / f"{name}{STATS_SUFFIX}", rows, unit=unit))
    written = labels_written + stats_written
    files: dict[str, str] = {str(k): path.name for k, path in zip(ks, labels_written)}
    files.update({f"{k}_stats": path.name for k, path in zip(ks, stats_written)})
    if embedding is not None:
        embedding_path = out_dir / f"{stem}{EMBEDDING_SUFFIX}"
        with atomic_path(embedding_path) as tmp:
            if isinstance(embedding, np.ndarray):
                with open(tmp, "wb") as handle:
                    np.save(handle, embedding)
            else:  # dask or zarr: chunk by chunk into a memory-mapped .npy
                store_npy(tmp, embedding)
        written.append(embedding_path)
        files["embedding"] = embedding_path.name
    if manifest is not None:
        record = {
            "format": MANIFEST_FORMAT,
            "version": 1,
            "hypseg_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": str(geometry.source) if geometry.source else None,
            "levels": [int(k) for k in ks],
            "files": files,
            **manifest,
        }
        with atomic_path(manifest_path) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")
        written.append(manifest_path)
    return written
