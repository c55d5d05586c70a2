"""Naming of ``hypseg segment``'s outputs, planned before any work; the writing is :mod:`napari_hypseg.io.levels`."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path

from .._errors import UserError
from ..io import NIFTI_SUFFIXES
from ..io.atomic import full_suffix, stem_of
from ..io.levels import (
    EMBEDDING_SUFFIX,
    FORMATS,
    MANIFEST_FORMAT,
    MANIFEST_SUFFIX,
    STATS_SUFFIX,
    label_suffix,
    level_name,
    write_levels,
)
from ..segment_modes import MAX_CLUSTERS

# the CLI's commands take these from here, with the planning helpers below
__all__ = [
    "EMBEDDING_SUFFIX",
    "FORMATS",
    "MANIFEST_FORMAT",
    "MANIFEST_SUFFIX",
    "STATS_SUFFIX",
    "output_names",
    "output_suffix_for",
    "parse_clusters",
    "stem_of",
    "unique_stems",
    "write_levels",
]


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


def output_suffix_for(path: Path, fmt: str | None) -> str:
    """The label files' suffix for input `path`, from its file name, before it is read."""
    return label_suffix(fmt, "nifti" if full_suffix(path) in NIFTI_SUFFIXES else "mrc")


def output_names(stem: str, ks, suffix: str) -> list[str]:
    """The names :func:`write_levels` gives one volume's outputs."""
    return (
        [f"{level_name(stem, k)}{suffix}" for k in ks]
        + [f"{level_name(stem, k)}{STATS_SUFFIX}" for k in ks]
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
