"""``hypseg info FILE``: what a volume file holds, as napari-hypseg will see it."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..io import read_volume, value_summary
from ..io.volume import Volume


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print shape, dtype, voxel size, value range and orientation of a volume",
        description=(
            "Print what napari-hypseg reads from an MRC (.mrc .rec .map .st .ali .mrcs) or "
            "NIfTI (.nii .nii.gz) file. Large files are sampled for the value range."
        ),
    )
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = read_volume(args.file)
    for line in describe(volume):
        print(line)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return 0


def describe(volume: Volume) -> list[str]:
    """Lines of ``name: value`` describing `volume` (header geometry and values)."""
    meta = volume.metadata
    path = volume.source
    size = _human_bytes(path.stat().st_size) if path is not None and path.exists() else "?"
    rows: list[tuple[str, str]] = []
    if volume.format == "mrc":
        rows += _mrc_rows(volume, size)
    elif volume.format == "nifti":
        rows += _nifti_rows(volume, size)
    else:
        rows += [("shape", str(volume.shape)), ("dtype", str(volume.data.dtype))]
    summary = value_summary(volume.data)
    value_range = f"min {summary.min:.6g}, max {summary.max:.6g}, mean {summary.mean:.6g}"
    if summary.sampled:
        value_range += (
            f"  (sampled: {summary.slices_read} of {summary.slices_total} slices along axis 0, "
            "evenly spaced, to keep a large file quick)"
        )
    rows.append(("value range", value_range))
    if summary.non_finite:
        where = "in the slices read" if summary.sampled else "in the volume"
        rows.append(("NaN/inf", f"{summary.non_finite} voxels {where}"))
    if meta.get("is_labels"):
        rows.append(("content", "label volume"))
    width = max(len(key) for key, _ in rows)
    return [f"{key + ':':<{width + 1}} {value}" for key, value in rows]


def _mrc_rows(volume: Volume, size: str) -> list[tuple[str, str]]:
    meta = volume.metadata
    vx, vy, vz = meta["voxel_size_xyz"]
    ox, oy, oz = (float(v) for v in volume.affine[:3, 3][::-1])
    order = meta["axis_order"]
    standard = order == [1, 2, 3]
    orientation = f"mapc/mapr/maps = {', '.join(map(str, order))}"
    orientation += (
        " (standard: columns x, rows y, sections z)"
        if standard
        else " (non-standard; transposed to z, y, x on reading)"
    )
    kind = "image stack" if meta.get("space_group") == 0 else "volume"
    rows = [
        ("file", f"{volume.source.name}  (MRC {kind}, mode {meta['mode']}, {size})"),
        ("shape", f"{volume.shape}  (z, y, x)"),
        ("dtype", str(volume.data.dtype)),
        ("voxel size", f"x {vx:g} Å, y {vy:g} Å, z {vz:g} Å"),
        ("origin", f"x {ox:g} Å, y {oy:g} Å, z {oz:g} Å  (position of the first voxel)"),
        ("orientation", orientation),
    ]
    if meta.get("permissive"):
        rows.append(("header", "damaged, read in permissive mode: " + "; ".join(meta["header_problems"])))
    return rows


def _nifti_rows(volume: Volume, size: str) -> list[tuple[str, str]]:
    meta = volume.metadata
    unit = {"mm": "mm", "micron": "µm", "meter": "m"}.get(meta["units"], "(unit not set)")
    zooms = " x ".join(f"{v:g}" for v in meta["voxel_size"])
    ox, oy, oz = (float(v) for v in volume.affine[:3, 3])
    codes = meta["axis_codes"]
    orientation = f"{codes}+ (voxel axes i, j, k point to {', '.join(codes)})"
    if meta["oblique"]:
        orientation += ", oblique"
    orientation += f"; qform code {meta['qform_code']}, sform code {meta['sform_code']}"
    return [
        ("file", f"{volume.source.name}  (NIfTI-{meta['nifti_version']}, {size})"),
        ("shape", f"{volume.shape}  (i, j, k)"),
        ("dtype", str(volume.data.dtype)),
        ("voxel size", f"{zooms} {unit}"),
        ("origin", f"x {ox:g}, y {oy:g}, z {oz:g} {unit}  (world position of the first voxel)"),
        ("orientation", orientation),
    ]


def _human_bytes(n: int) -> str:
    units = ("B", "KB", "MB", "GB", "TB")
    value, step = float(n), 0
    while value >= 1024 and step < len(units) - 1:
        value, step = value / 1024, step + 1
    return f"{n} B" if step == 0 else f"{value:.1f} {units[step]}"
