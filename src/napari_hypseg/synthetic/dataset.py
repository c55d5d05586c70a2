"""A benchmark set of phantoms on disk: MRC volumes, their ground truth and ``dataset.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._errors import UserError
from .phantom import CLASS_NAMES, PARENT, check_noise, check_seed, make_phantom, phantom_seeds, phantom_shape

__all__ = ["make_dataset", "split_counts"]


def split_counts(n: int, split: tuple[float, ...] = (80, 20, 20)) -> tuple[int, ...]:
    """Share ``n`` volumes between the parts of ``split`` in proportion to its weights.

    Largest-remainder rounding; a part with a positive weight gets at least one
    volume whenever ``n`` allows it. ``split_counts(120)`` is ``(80, 20, 20)``
    and ``split_counts(3)`` is ``(1, 1, 1)``.
    """
    weights = np.asarray(split, dtype=float)
    valid = weights.ndim == 1 and weights.size > 0 and np.all(np.isfinite(weights)) and np.all(weights >= 0)
    if not valid or weights.sum() <= 0:
        raise UserError(f"split must be non-negative weights with a positive sum, got {split!r}")
    if n < 1:
        raise UserError(f"the number of volumes must be at least 1, got {n}")
    exact = n * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    positive = weights > 0
    if n >= positive.sum():
        for i in np.flatnonzero(positive & (counts == 0)):
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    return tuple(int(c) for c in counts)


def make_dataset(
    out_dir: str | Path,
    *,
    n: int = 120,
    size: int | tuple[int, int, int] = 50,
    irregular: bool = False,
    seed: int = 0,
    split: tuple[float, float, float] = (80, 20, 20),
    noise: float = 0.25,
    progress=None,
) -> list[Path]:
    """Write a benchmark dataset of phantoms as MRC volumes with their ground truth.

    Layout::

        out_dir/dataset.json
        out_dir/{train,val,test}/phantom_000.mrc            image (float32)
        out_dir/{train,val,test}/phantom_000_level{1,2,3}.mrc   labels (uint8)

    Volumes are numbered across the whole dataset (train first), and volume
    ``i`` uses ``phantom_seeds(seed, n)[i]``; ``dataset.json`` records the
    seeds, shape, variant, split, noise and class names.

    Parameters
    ----------
    out_dir : path
        Folder to write into: new, empty, or made by an earlier call (it has
        a ``dataset.json``), whose files are then replaced; files listed by
        the earlier ``dataset.json`` and not rewritten are removed.
    n : int
        Number of volumes (the papers use 120).
    size, irregular, noise
        As in :func:`make_phantom`.
    seed : int
        Base seed of the dataset.
    split : tuple of 3 weights
        Train/val/test proportions, applied with :func:`split_counts`.
    progress : callable, optional
        Called as ``progress(i, n, path)`` after each volume.

    Returns
    -------
    list of Path
        Every file written, ``dataset.json`` last.
    """
    # imported here, not at the top, so that the phantom itself needs no file-format libraries
    from ..io import write_image, write_labels  # noqa: PLC0415
    from ..io.atomic import atomic_path  # noqa: PLC0415

    shape = phantom_shape(size)
    n = _check_count(n)
    check_noise(noise)
    if len(split) != 3:
        raise UserError(f"split must have three parts (train, val, test), got {split!r}")
    counts = split_counts(n, split)
    seeds = phantom_seeds(seed, n)
    out = Path(out_dir)
    meta_path = out / "dataset.json"
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not meta_path.is_file():
        raise UserError(
            f"{out} already holds other files; write the dataset into a new or empty folder "
            "(a folder made by an earlier run, with its dataset.json, may be reused)"
        )
    previous = _listed_files(meta_path)

    written: list[Path] = []
    volumes = []
    index = 0
    for part, count in zip(("train", "val", "test"), counts):
        folder = out / part
        if count:
            folder.mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            phantom = make_phantom(shape, irregular=irregular, seed=seeds[index], noise=noise)
            stem = f"phantom_{index:03d}"
            image_path = folder / f"{stem}.mrc"
            write_image(image_path, phantom.image)
            written.append(image_path)
            label_paths = {}
            for level, labels in phantom.levels.items():
                path = folder / f"{stem}_level{level}.mrc"
                write_labels(path, labels)
                written.append(path)
                label_paths[str(level)] = str(path.relative_to(out))
            volumes.append(
                {
                    "split": part,
                    "image": str(image_path.relative_to(out)),
                    "labels": label_paths,
                    "seed": seeds[index],
                }
            )
            index += 1
            if progress is not None:
                progress(index, n, image_path)

    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "generator": "napari_hypseg.synthetic.make_phantom",
        "description": "hierarchical cell phantom after Hsu et al. 2021, section 4.1 (see docs/phantom.md)",
        "n": n,
        "size": list(shape),
        "seed": check_seed(seed),
        "irregular": bool(irregular),
        "noise": float(noise),
        "split": dict(zip(("train", "val", "test"), counts)),
        "class_names": {str(k): v for k, v in CLASS_NAMES.items()},
        "parent": {str(k): v.tolist() for k, v in PARENT.items()},
        "volumes": volumes,
    }
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    written.append(meta_path)
    for stale in previous - {p.resolve() for p in written}:
        stale.unlink(missing_ok=True)
    for part, count in zip(("train", "val", "test"), counts):
        if count == 0 and (out / part).is_dir() and not any((out / part).iterdir()):
            (out / part).rmdir()  # left by an earlier, larger run: would look like missing data
    return written


def _listed_files(meta_path: Path) -> set[Path]:
    """Volume files listed by an earlier ``dataset.json`` (only those inside its folder)."""
    try:
        volumes = json.loads(meta_path.read_text())["volumes"]
        names = [v["image"] for v in volumes] + [p for v in volumes for p in v["labels"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
    root = meta_path.parent.resolve()
    files = {(root / str(name)).resolve() for name in names}
    return {f for f in files if f.is_relative_to(root) and f.suffix == ".mrc"}


def _check_count(n) -> int:
    """``n`` as an int, or a :class:`UserError` unless it is a positive integer."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UserError(f"the number of volumes must be a positive integer, got {n!r}")
    return int(n)
