"""``hypseg segment``: label volumes at several granularities with a trained model."""

from __future__ import annotations

import argparse
import glob
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .._errors import SettingError, UserError
from ..io import NIFTI_SUFFIXES, read_volume
from ..io.atomic import check_writable, full_suffix
from ..segment_config import INTENSITY_CHOICES, SegmentConfig
from ..segment_modes import MODES
from ._options import add_device_and_seed, as_option_error
from ._outputs import (
    FORMATS,
    MANIFEST_SUFFIX,
    output_names,
    output_suffix_for,
    parse_clusters,
    unique_stems,
    write_levels,
)
from ._progress import ProgressLine

# volumes up to this size are read into RAM in a background thread while the
# previous one is segmented; larger ones stay memory-mapped
_PREFETCH_BYTES = 2 * 1024**3
#: the levels written when --clusters is not given
DEFAULT_CLUSTERS = "2,4,8"


def add_segment_args(parser: argparse.ArgumentParser) -> None:
    """The segmentation options, with :class:`SegmentConfig`'s defaults.

    ``--device`` and ``--seed`` are added apart.
    """
    defaults = SegmentConfig()
    parser.add_argument(
        "--clusters", default=DEFAULT_CLUSTERS, help="cluster counts to write, e.g. 2,4,8 or 2-16 (default %(default)s)"
    )
    parser.add_argument("--out-dir", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--format",
        choices=[*sorted(FORMATS), "ome-zarr"],
        default=None,
        help="output format (default: the input's; OME-Zarr input gets labels/ inside it)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=defaults.mode,
        help="mixture (default): Gaussian mixture with a spatial prior on the intensity (TV-denoised on a noisy "
        "volume); "
        "nested / flat: Poincaré k-means on the embedding alone (the paper's protocol)",
    )
    parser.add_argument(
        "--no-compartments",
        dest="compartments",
        action="store_false",
        default=defaults.compartments,
        help="mixture: do not make what a thin wall of the k = 2 level encloses (a lumen) a cluster of its own",
    )
    parser.add_argument(
        "--window",
        default=_window_text(defaults.window),
        help="embedding window edge(s) in voxels, e.g. 17 or 17,9 to fuse (default: the model's patch)",
    )
    parser.add_argument(
        "--stride", type=int, default=defaults.stride, help="embed every Nth voxel and interpolate (fast preview)"
    )
    parser.add_argument(
        "--bin",
        type=int,
        default=defaults.binning,
        dest="binning",
        help="mean-pool the volume by N before embedding (big tomograms on CPU); labels are written at full resolution",
    )
    parser.add_argument(
        "--resample-to-model",
        action="store_true",
        help="when the volume's voxel size differs from the model's by more than 20%%, resample it to the "
        "model's (linear) before embedding; labels are written on the source grid",
    )


def parse_window(text: str | None):
    if text is None:
        return None
    from ..segmentation.embed import MIN_WINDOW  # imports torch: not at CLI start-up

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--window expects integers like 17 or 17,9, got {text!r}") from None
    if not values:
        raise UserError(f"--window expects integers like 17 or 17,9, got {text!r}")
    if min(values) < MIN_WINDOW:
        raise UserError(
            f"--window values must be at least {MIN_WINDOW} voxels, got {text!r}: a smaller window "
            "holds no structure and multiplies the work"
        )
    return values[0] if len(values) == 1 else values


def _window_text(window) -> str | None:
    """A config's window as --window spells it: None, "17" or "17,9"."""
    if window is None:
        return None
    return ",".join(str(w) for w in ((window,) if isinstance(window, int) else window))


def segment_config_from_args(args: argparse.Namespace) -> SegmentConfig:
    """The :class:`SegmentConfig` the options describe, every value checked and reported with its option's name.

    Levels 2 … the largest of ``--clusters`` are computed; ``--clusters`` says which are written.
    """
    ks = parse_clusters(args.clusters)
    try:
        return SegmentConfig(
            k_max=max(ks),
            mode=args.mode,
            window=parse_window(args.window),
            stride=args.stride,
            binning=args.binning,
            device=args.device,
            seed=args.seed,
            compartments=args.compartments,
        )
    except SettingError as exc:
        raise as_option_error(exc) from None


def check_segment_args(args: argparse.Namespace) -> SegmentConfig:
    """Every option checked before any file is read, so a typo costs no embedding time; returns the config."""
    from .._device import resolve_device

    resolve_device(args.device)  # an unknown device, or CUDA asked for on a machine without it
    config = segment_config_from_args(args)
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise UserError(f"--out-dir {args.out_dir} is a file, not a folder")
    return config


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment volumes with a trained model",
        description="Embed every voxel with a trained model and write labels for each cluster count. "
        "Accepts many files or quoted glob patterns.",
    )
    parser.add_argument("volumes", nargs="+", metavar="VOLUME", help="files or glob patterns")
    parser.add_argument("--model", type=Path, required=True, metavar="MODEL.pt")
    add_device_and_seed(parser, SegmentConfig())
    add_segment_args(parser)
    scale = parser.add_argument_group("one clustering for a dataset, dask (docs/scaling.md)")
    scale.add_argument(
        "--clusters-from",
        type=Path,
        default=None,
        metavar="FILE",
        help="assign every volume with this saved clustering (same id = same cluster everywhere)",
    )
    scale.add_argument(
        "--save-clusters",
        type=Path,
        default=None,
        metavar="FILE",
        help="fit one clustering on a sample of all volumes and save it (.npz)",
    )
    scale.add_argument(
        "--workers", type=int, default=None, metavar="N", help="run on a local dask cluster of N worker processes"
    )
    scale.add_argument(
        "--scheduler", default=None, metavar="ADDRESS", help="run on an existing dask scheduler, e.g. tcp://host:8786"
    )
    scale.add_argument(
        "--chunk", type=int, default=None, metavar="N", help="blockwise embedding chunk edge (default 48)"
    )
    scale.add_argument(
        "--intensity",
        default=None,
        choices=INTENSITY_CHOICES,
        help="intensity channel of the clustering fitted here (default auto: by the volumes' noise; "
        "denoised: TV in proportion to it)",
    )
    parser.set_defaults(func=run)


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files named or matched, each once (a file given twice would be segmented twice into the same names)."""
    paths: list[Path] = []
    seen: dict[Path, Path] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise UserError(f"no file matches {pattern!r}")
        for match in matches:
            path = Path(match)
            key = path.resolve()
            if key in seen:
                warnings.warn(
                    f"{path} is given more than once (also as {seen[key]}); segmenting it once",
                    UserWarning,
                    stacklevel=2,
                )
                continue
            seen[key] = path
            paths.append(path)
    return paths


def _load(path: Path):
    volume = read_volume(path)
    if volume.data.nbytes <= _PREFETCH_BYTES:
        volume.data = np.asarray(volume.data)  # pull into RAM off the compute thread
    return volume


def segment_volume(
    volume,
    model,
    config: SegmentConfig,
    ks: list[int],
    out_dir: Path,
    *,
    fmt: str | None = None,
    resample_to_model: bool = False,
    label: str,
    stem: str | None = None,
    model_path: Path | None = None,
):
    """Segment one volume and write its levels ``ks`` to ``out_dir``; returns (paths written, Segmentation)."""
    from ..segmentation.pipeline import segment
    from ..segmentation.resample import segment_at_voxel_size, voxel_size_differs, voxel_size_warning

    model_size = getattr(model, "voxel_size", None)
    resample = voxel_size_differs(volume.spacing, model_size)
    if resample and not resample_to_model:
        warnings.warn(
            f"{label}: {voxel_size_warning(volume.spacing, model_size)}; pass --resample-to-model to "
            "resample it to the model's voxel size",
            UserWarning,
            stacklevel=2,
        )
        resample = False
    bar = ProgressLine(label)
    t0 = time.perf_counter()

    def progress(stage, done, total):
        bar.update(done, total, stage)

    if resample:
        result = segment_at_voxel_size(
            volume.data, model, config, voxel_size=volume.spacing, target=model_size, progress=progress
        )
    else:
        result = segment(volume.data, model, config, progress=progress)
    bar.close()
    settings = {
        "mode": config.mode,
        "window": _window_text(config.window),
        "stride": config.stride,
        "bin": config.binning,
        "seed": config.seed,
        "resampled_to": list(model_size) if resample else None,
    }
    written = write_levels(
        volume.geometry,
        result.labels,
        ks,
        out_dir,
        fmt=fmt,
        stem=stem,
        image=volume.data,
        unit=volume.metadata.get("units"),
        embedding=result.embedding,
        manifest={"model": str(model_path) if model_path else None, "settings": settings},
    )
    print(f"{label}: {result.clustering_summary}", file=sys.stderr)
    for k in ks:
        held = result.occupied(k)
        if held < k:
            print(
                f"{label}: k = {k} has {held} clusters with voxels (the mixture left {k - held} empty)", file=sys.stderr
            )
        refit = result.refit_note(k)
        if refit is not None:
            print(f"{label}: k = {k} was refitted: {refit}", file=sys.stderr)
    print(f"{label}: {len(ks)} label files in {time.perf_counter() - t0:.1f} s -> {out_dir}", file=sys.stderr)
    return written, result


def run(args: argparse.Namespace) -> int:
    from ..model.checkpoint import load_model

    config = check_segment_args(args)
    ks = parse_clusters(args.clusters)
    paths = expand_inputs(args.volumes)
    stems = unique_stems(paths)
    model = load_model(args.model)
    from ._dataset import run_dataset, wants_dataset_path

    if wants_dataset_path(args, paths):
        return run_dataset(args, paths, stems, model)
    plan_outputs(paths, stems, model.config, config, ks, args.out_dir, args.format)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(_load, paths[0])
        for i, path in enumerate(paths):
            volume = upcoming.result()
            if i + 1 < len(paths):
                upcoming = pool.submit(_load, paths[i + 1])
            written, _ = segment_volume(
                volume,
                model,
                config,
                ks,
                args.out_dir,
                fmt=args.format,
                resample_to_model=args.resample_to_model,
                label=path.name,
                stem=stems[path],
                model_path=args.model,
            )
            for p in written:
                print(p)
    hours = (time.perf_counter() - t0) / 3600
    if len(paths) > 1:
        print(f"{len(paths)} volumes, {len(paths) / hours:.0f} volumes/hour", file=sys.stderr)
    return 0


def plan_outputs(
    paths: list[Path],
    stems: dict[Path, str],
    model_config,
    config: SegmentConfig,
    ks: list[int],
    out_dir: Path,
    fmt: str | None,
) -> None:
    """Before any embedding: every volume fits the model and the bin, no output overwrites an input,
    the folder has room."""
    from ..segmentation.binning import binned_shape, check_binning

    n_windows = len(config.window) if isinstance(config.window, tuple) else 1
    inputs = {p.resolve() for p in paths}
    need = replaced = largest = 0
    for path in paths:
        shape = peek_shape(path)
        if shape is not None:
            where = f"{path.name}: "
            try:
                if min(shape) < model_config.patch_size:
                    raise UserError(
                        f"the volume of shape {shape} is smaller than the model's "
                        f"{model_config.patch_size}-voxel patch along some axis"
                    )
                check_binning(shape, config.binning, min_size=model_config.patch_size if config.binning != 1 else 1)
            except UserError as exc:
                raise UserError(where + str(exc).replace("the bin factor", "--bin")) from None
            voxels = int(np.prod(shape))
            binned = int(np.prod(binned_shape(shape, config.binning)))
            suffix = output_suffix_for(path, fmt)
            labels_bytes = 0 if suffix == ".nii.gz" else voxels  # per level; a compressed size is unknown
            embedding_bytes = binned * 4 * model_config.latent_dim * n_windows
            need += labels_bytes * len(ks) + embedding_bytes
            largest = max(largest, labels_bytes, embedding_bytes)
        for name in output_names(stems[path], ks, output_suffix_for(path, fmt)):
            target = (out_dir / name).resolve()
            if target.is_dir():
                raise UserError(f"cannot write {out_dir / name}: a folder has that name")
            if target in inputs:
                raise UserError(
                    f"segmenting {path} would overwrite the input {out_dir / name}; choose another --out-dir"
                )
            if target.is_file():
                replaced += target.stat().st_size
    # files replaced one at a time free their old space as they go;
    # only the largest new one needs room beside its old self
    need = max(0, need - replaced) + (largest if replaced else 0)
    check_writable(
        out_dir / f"{stems[paths[0]]}{MANIFEST_SUFFIX}", need_bytes=need, what="output folder", shown=out_dir
    )


def peek_shape(path: Path) -> tuple[int, ...] | None:
    """Voxel counts along the three axes, from the header alone (any axis order); None if unreadable here.

    Unreadable files are left to :func:`read_volume`, which says what is wrong with them.
    """
    try:
        if full_suffix(path) in NIFTI_SUFFIXES:
            import nibabel as nib

            shape = tuple(int(n) for n in nib.load(path).shape)
            while len(shape) > 3 and shape[-1] == 1:
                shape = shape[:-1]
        else:
            import mrcfile

            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                shape = (int(mrc.header.nz), int(mrc.header.ny), int(mrc.header.nx))
    except Exception:
        return None
    return shape if len(shape) == 3 and min(shape) > 0 else None
