"""Naming and writing of segmentation outputs: ``DIR/<stem>_k<K>.<ext>`` with the source geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._errors import UserError
from ..io import write_labels
from ..io.atomic import atomic_path, full_suffix
from ..io.volume import Volume

FORMATS = {"mrc": ".mrc", "nii": ".nii", "nii.gz": ".nii.gz"}


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
    if not ks or min(ks) < 2:
        raise UserError(f"--clusters needs values >= 2, got {text!r}")
    return sorted(ks)


def stem_of(path: Path) -> str:
    suffix = full_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def output_suffix(volume: Volume, fmt: str | None) -> str:
    if fmt:
        return FORMATS[fmt]
    return ".mrc" if volume.format == "mrc" else ".nii.gz" if volume.format == "nifti" else ".mrc"


def write_levels(volume: Volume, segmentation, ks, out_dir: Path, *, fmt: str | None = None, stem: str | None = None) -> list[Path]:
    """Write one label file per k and the embedding; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or (stem_of(volume.source) if volume.source else "volume")
    suffix = output_suffix(volume, fmt)
    written = []
    for k in ks:
        written.append(write_labels(out_dir / f"{stem}_k{k}{suffix}", segmentation.labels(k), like=volume))
    emb_path = out_dir / f"{stem}_embedding.npy"
    with atomic_path(emb_path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, segmentation.embedding)
    written.append(emb_path)
    return written
