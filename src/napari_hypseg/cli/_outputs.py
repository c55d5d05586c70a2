"""Naming and writing of segmentation outputs: ``DIR/<stem>_k<K>.<ext>`` with the source geometry."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._errors import UserError
from ..io import NIFTI_SUFFIXES, write_labels
from ..io.atomic import atomic_path, full_suffix
from ..io.volume import Volume
from ..segment_modes import MAX_CLUSTERS

FORMATS = {"mrc": ".mrc", "nii": ".nii", "nii.gz": ".nii.gz"}
EMBEDDING_SUFFIX = "_embedding.npy"
STATS_SUFFIX = "_stats.csv"
#: Unit of the voxel size per file format, for the statistics' volume column.
UNITS = {"mrc": "Å", "nifti": "mm"}
MANIFEST_SUFFIX = "_manifest.json"
MANIFEST_FORMAT = "napari-hypseg-segmentation"


def parse_clusters(text: str) -> list[int]:
    """``"2,4,8"`` or ``"2-16"`` → sorted unique ks (each >= 2)."""
    ks: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                ks.update(range(a, b + 1))
            elif part:
                ks.add(int(part))
    except ValueError:
        raise UserError(f"--clusters expects numbers like 2,4,8 or 2-16, got {text!r}") from None
    if not ks or min(ks) < 2 or max(ks) > MAX_CLUSTERS:
        raise UserError(f"--clusters values must be between 2 and {MAX_CLUSTERS}, got {text!r}")
    return sorted(ks)


def stem_of(path: Path) -> str:
    if path.name.lower().endswith(".ome.zarr"):  # a folder format: tomo.ome.zarr -> tomo
        return path.name[: -len(".ome.zarr")]
    suffix = full_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def output_suffix(volume: Volume, fmt: str | None) -> str:
    if fmt:
        return FORMATS[fmt]
    return ".nii.gz" if volume.format == "nifti" else ".mrc"


def output_suffix_for(path: Path, fmt: str | None) -> str:
    """:func:`output_suffix` from the input's file name, before it is read."""
    if fmt:
        return FORMATS[fmt]
    return ".nii.gz" if full_suffix(path) in NIFTI_SUFFIXES else ".mrc"


def output_names(stem: str, ks, suffix: str) -> list[str]:
    return (
        [f"{stem}_k{k}{suffix}" for k in ks] + [f"{stem}_k{k}{STATS_SUFFIX}" for k in ks]
        + [f"{stem}{EMBEDDING_SUFFIX}", f"{stem}{MANIFEST_SUFFIX}"]
    )


def unique_stems(paths: list[Path]) -> dict[Path, str]:
    """Output stem per input: its file stem, made unique across the batch.

    ``d1/tomo.mrc`` and ``d2/tomo.mrc`` become ``d1_tomo`` and ``d2_tomo`` (the
    folders below their common ancestor); two formats of one name in one folder
    get the format appended (``tomo_mrc``, ``tomo_nii_gz``). Compared without
    case, as on macOS and Windows file systems. A clash that remains is refused,
    naming both inputs, before any work.
    """
    names = {p: stem_of(p) for p in paths}
    groups: dict[str, list[Path]] = defaultdict(list)
    for p in paths:
        groups[names[p].lower()].append(p)
    for group in groups.values():
        if len(group) == 1:
            continue
        folders = [p.resolve().parent.parts for p in group]
        common = len(os.path.commonprefix(folders))
        for p, parts in zip(group, folders):
            prefix = "_".join(parts[common:])
            names[p] = f"{prefix}_{names[p]}" if prefix else names[p]
        counts = Counter(names[p].lower() for p in group)
        for p in group:
            if counts[names[p].lower()] > 1:
                names[p] += "_" + full_suffix(p).lstrip(".").replace(".", "_")
    owner: dict[str, Path] = {}
    for p in paths:
        key = names[p].lower()
        if key in owner:
            raise UserError(
                f"{owner[key]} and {p} would both write {names[p]}_k*: rename one, or segment them "
                "into separate --out-dir folders"
            )
        owner[key] = p
    return names


def write_levels(
    volume: Volume, segmentation, ks, out_dir: Path, *, fmt: str | None = None, stem: str | None = None,
    manifest: dict[str, Any] | None = None,
) -> list[Path]:
    """Write one label file and one statistics CSV per k, the embedding, then the manifest; return the paths written.

    ``<stem>_k<K>_stats.csv`` holds one row per cluster of that level (voxels,
    physical volume, mean and sd of the source intensity, bounding box:
    :func:`napari_hypseg.segmentation.stats.cluster_statistics`).

    The manifest (``<stem>_manifest.json``) is removed first and written last,
    so its presence means the files it lists are one complete result; a run
    killed half way leaves no manifest, whatever older files remain.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out_dir}: {exc.strerror}") from None
    stem = stem or (stem_of(volume.source) if volume.source else "volume")
    suffix = output_suffix(volume, fmt)
    manifest_path = out_dir / f"{stem}{MANIFEST_SUFFIX}"
    try:
        manifest_path.unlink(missing_ok=True)
    except OSError as exc:
        raise UserError(f"cannot replace {manifest_path}: {exc.strerror}") from None
    from ..segmentation.stats import cluster_statistics, write_statistics_csv

    written, stats = [], []
    unit = volume.metadata.get("units")
    if not isinstance(unit, str) or unit in ("", "unknown"):
        unit = UNITS.get(volume.format)
    for k in ks:
        labels = segmentation.labels(k)
        written.append(write_labels(out_dir / f"{stem}_k{k}{suffix}", labels, like=volume))
        rows = cluster_statistics(labels, volume.data, volume.spacing)
        stats.append(write_statistics_csv(out_dir / f"{stem}_k{k}{STATS_SUFFIX}", rows, unit=unit))
    emb_path = out_dir / f"{stem}{EMBEDDING_SUFFIX}"
    with atomic_path(emb_path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, segmentation.embedding)
    written.append(emb_path)
    written[len(ks):len(ks)] = stats  # label files, their statistics, the embedding, the manifest
    record = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "hypseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": str(volume.source) if volume.source else None,
        "levels": [int(k) for k in ks],
        "files": {
            **{str(k): written[i].name for i, k in enumerate(ks)},
            **{f"{k}_stats": stats[i].name for i, k in enumerate(ks)},
            "embedding": emb_path.name,
        },
        **(manifest or {}),
    }
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    written.append(manifest_path)
    return written
