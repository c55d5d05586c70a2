"""``hypseg segment``: label volumes at several granularities with a trained model."""

from __future__ import annotations

import argparse
import glob
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .._errors import UserError
from ..io import read_volume
from ..segment_modes import DEFAULT_MODE, MODES
from ._outputs import FORMATS, parse_clusters, write_levels
from ._progress import ProgressLine

# volumes up to this size are read into RAM in a background thread while the
# previous one is segmented; larger ones stay memory-mapped
_PREFETCH_BYTES = 2 * 1024**3


def add_segment_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clusters", default="2,4,8", help="cluster counts to write, e.g. 2,4,8 or 2-16 (default %(default)s)")
    parser.add_argument("--out-dir", type=Path, required=True, metavar="DIR")
    parser.add_argument("--format", choices=sorted(FORMATS), default=None, help="output format (default: the input's)")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                        help="mixture (default): Gaussian mixture with a spatial prior on the embedding fused with intensity; "
                             "nested / flat: Poincaré k-means on the embedding alone (the paper's protocol)")
    parser.add_argument("--window", default=None, help="embedding window edge(s) in voxels, e.g. 17 or 17,9 to fuse (default: the model's patch)")
    parser.add_argument("--stride", type=int, default=1, help="embed every Nth voxel and interpolate (fast preview)")
    parser.add_argument("--bin", type=int, default=1, dest="binning",
                        help="mean-pool the volume by N before embedding (big tomograms on CPU); labels are written at full resolution")


def parse_window(text: str | None):
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--window expects integers like 17 or 17,9, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment volumes with a trained model",
        description="Embed every voxel with a trained model and write labels for each cluster count. "
        "Accepts many files or quoted glob patterns.",
    )
    parser.add_argument("volumes", nargs="+", metavar="VOLUME", help="files or glob patterns")
    parser.add_argument("--model", type=Path, required=True, metavar="MODEL.pt")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    add_segment_args(parser)
    parser.set_defaults(func=run)


def expand_inputs(patterns: list[str]) -> list[Path]:
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise UserError(f"no file matches {pattern!r}")
        paths.extend(Path(m) for m in matches)
    return paths


def _load(path: Path):
    volume = read_volume(path)
    if volume.data.nbytes <= _PREFETCH_BYTES:
        volume.data = np.asarray(volume.data)  # pull into RAM off the compute thread
    return volume


def segment_volume(volume, model, args, *, label: str):
    """Segment one volume and write its outputs; returns (paths written, Segmentation)."""
    from ..segmentation.pipeline import segment

    ks = parse_clusters(args.clusters)
    bar = ProgressLine(label)
    t0 = time.perf_counter()
    result = segment(
        volume.data, model, k_min=2, k_max=max(ks), mode=args.mode, window=parse_window(args.window),
        stride=args.stride, device=args.device, seed=args.seed, binning=args.binning,
        progress=lambda stage, done, total: bar.update(done, total, stage),
    )
    bar.close()
    written = write_levels(volume, result, ks, args.out_dir, fmt=args.format)
    print(f"{label}: {len(ks)} label files in {time.perf_counter() - t0:.1f} s -> {args.out_dir}", file=sys.stderr)
    return written, result


def run(args: argparse.Namespace) -> int:
    from ..model.checkpoint import load_model

    paths = expand_inputs(args.volumes)
    model = load_model(args.model)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(_load, paths[0])
        for i, path in enumerate(paths):
            volume = upcoming.result()
            if i + 1 < len(paths):
                upcoming = pool.submit(_load, paths[i + 1])
            written, _ = segment_volume(volume, model, args, label=path.name)
            for p in written:
                print(p)
    hours = (time.perf_counter() - t0) / 3600
    if len(paths) > 1:
        print(f"{len(paths)} volumes, {len(paths) / hours:.0f} volumes/hour", file=sys.stderr)
    return 0
