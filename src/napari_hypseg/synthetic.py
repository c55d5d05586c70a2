"""The hierarchical cell phantom: synthetic 3D volumes with three nested levels of ground truth.

A re-creation, from the published description only, of the "biologically
inspired" benchmark of Hsu et al. (NeurIPS 2021, section 4.1) that Tursynbek &
Niethammer (2023) reuse: a cell, organelles inside it (vesicles and
mitochondria) and four kinds of small protein aggregates inside the
organelles, told apart by intensity, texture, size and shape, under 1/f (pink)
noise. The authors' generator is not public; ``docs/phantom.md`` lists every
choice made here and how it relates to the papers.

Levels (label values)::

    level 1: 0 background, 1 cell
    level 2: 0 background, 1 cell, 2 vesicle, 3 mitochondrion
    level 3: 0..3 as level 2, 4/5 aggregates inside vesicles,
             6/7 aggregates inside mitochondria

Coarser levels are derived from level 3 through :data:`PARENT`, so the three
label maps are nested by construction.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft
from scipy import ndimage as ndi

from ._errors import UserError

__all__ = [
    "CLASS_NAMES",
    "PARENT",
    "Phantom",
    "levels_from_finest",
    "make_dataset",
    "make_phantom",
    "phantom_seeds",
    "phantom_shape",
    "pink_noise",
    "split_counts",
]

CLASS_NAMES: dict[int, list[str]] = {
    1: ["background", "cell"],
    2: ["background", "cell", "vesicle", "mitochondrion"],
    3: [
        "background",
        "cell",
        "vesicle",
        "mitochondrion",
        "aggregate-a",  # bright small spheres, in vesicles
        "aggregate-b",  # speckled small cubes, in vesicles
        "aggregate-c",  # dark larger spheres, in mitochondria
        "aggregate-d",  # checkered larger cubes, in mitochondria
    ],
}

#: ``PARENT[l][c]`` is the level-``l`` class that contains level-``l+1`` class ``c``.
PARENT: dict[int, np.ndarray] = {
    1: np.array([0, 1, 1, 1], dtype=np.uint8),
    2: np.array([0, 1, 2, 3, 2, 2, 3, 3], dtype=np.uint8),
}

_WORKERS = os.cpu_count() or 1  # threads for the FFTs

#: The smallest extent (voxels) along any axis; below it organelles cannot hold their aggregates.
MIN_SIZE = 24

# Geometry at the reference size of 50 voxels; everything scales with the volume.
_REF_SIZE = 50.0
_CELL_SEMI_AXIS = (0.38, 0.46)  # fraction of each axis extent
_VESICLE_RADIUS = (5.5, 7.5)
_MITO_HALF = (4.5, 6.0)
_N_ORGANELLES = (2, 4)  # per kind, inclusive, for a cell of the reference size
_MAX_ORGANELLES = 64  # per kind, in a very elongated volume (placement cost grows with the count)
_AGGREGATES_PER_ORGANELLE = (1, 3)  # per aggregate kind hosted, inclusive
# (kind of shape, size range at 50 voxels) for aggregate classes 4..7
_AGGREGATES = {
    4: ("sphere", (1.3, 2.0)),
    5: ("cube", (1.0, 1.5)),
    6: ("sphere", (1.6, 2.4)),
    7: ("cube", (1.3, 1.9)),
}
_HOSTS = {2: (4, 5), 3: (6, 7)}  # organelle class -> aggregate classes it contains
# Floors (voxels) that keep small volumes segmentable: objects stop shrinking
# with the volume here, so an organelle can still hold an aggregate.
_MIN_ORGANELLE = {2: 3.6, 3: 3.0}  # vesicle radius, mitochondrion half-size
_MIN_AGGREGATE = 1.0
_SHRINK, _SHRINK_STEPS = 0.85, 4  # the first object of a kind shrinks by this until it fits (floors * _SHRINK at most)

# Intensity ranges per class before normalisation; one draw per volume, then a
# small jitter per object. The ranges do not overlap for classes that share a
# parent, so randomising them never swaps a child with its surroundings.
_MEANS = {
    0: (0.00, 0.08),
    1: (0.58, 0.66),
    2: (0.70, 0.78),
    3: (0.78, 0.86),
    4: (0.98, 1.06),
    5: (0.86, 0.94),
    6: (0.28, 0.38),
    7: (0.92, 1.00),
}
_OBJECT_JITTER = 0.02

# Irregular variant, per level: radial displacement of the boundary (fraction
# of the radius, one spread of the random bump function) and the angular
# frequencies of the plane waves that make up that function.
_ROUGHNESS = {1: (0.10, 0.18), 2: (0.12, 0.2), 3: (0.15, 0.3)}
_WAVE_FREQ = {1: (2.0, 9.0), 2: (2.0, 7.0), 3: (1.5, 4.0)}


@dataclass
class Phantom:
    """One phantom volume with its ground truth.

    Attributes
    ----------
    image : (Z, Y, X) float32 array
        Clean image scaled to [0, 1] plus pink noise (so values leave [0, 1]).
    levels : dict of int to (Z, Y, X) uint8 array
        Ground truth for levels 1, 2 and 3 (see :data:`CLASS_NAMES`).
    voxel_size : tuple of 3 float
        Voxel size along (z, y, x); the phantom is isotropic, in voxels.
    class_names : dict of int to list of str
        Name of each label value, per level.
    seed, irregular, noise
        The arguments it was made with.
    """

    image: np.ndarray
    levels: dict[int, np.ndarray]
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    class_names: dict[int, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in CLASS_NAMES.items()}
    )
    seed: int = 0
    irregular: bool = False
    noise: float = 0.25


# --------------------------------------------------------------------------- public API


def make_phantom(
    size: int | tuple[int, int, int] = 50,
    *,
    irregular: bool = False,
    seed: int = 0,
    noise: float = 0.25,
) -> Phantom:
    """Make one hierarchical cell phantom.

    Parameters
    ----------
    size : int or tuple of 3 int
        Volume shape (Z, Y, X); an int gives a cube. At least :data:`MIN_SIZE`
        per axis. Objects scale with the volume (their sizes with the smallest
        axis, the number of organelles with the cell's volume).
    irregular : bool
        Randomly oriented, stretched objects whose boundaries are displaced by
        smooth random noise, instead of axis-aligned spheres and cubes.
    seed : int
        Seed of :func:`numpy.random.default_rng`; equal seeds give equal phantoms.
    noise : float
        Standard deviation of the pink noise relative to the clean image's
        dynamic range (the papers' magnitude m = 0.25). 0 gives a clean image.

    Returns
    -------
    Phantom
        ``image`` (Z, Y, X) float32 and ``levels`` {1, 2, 3} -> (Z, Y, X) uint8.

    Examples
    --------
    >>> p = make_phantom(32, seed=1)
    >>> p.image.shape, sorted(p.levels), int(p.levels[3].max())
    ((32, 32, 32), [1, 2, 3], 7)
    """
    shape = phantom_shape(size)
    seed = _check_seed(seed)
    _check_noise(noise)
    rng = np.random.default_rng(seed)

    # A draw may miss a class (an aggregate kind finds no room, mostly near the
    # minimum size): draw again from the same stream, which stays deterministic.
    for _ in range(50):
        labels, clean = _draw_scene(rng, shape, bool(irregular))
        if np.all(np.bincount(labels.ravel(), minlength=8) > 0):
            break
    else:  # pragma: no cover - would need a pathological shape
        raise UserError(f"could not fit every class into a volume of shape {shape}; try a larger size")

    lo, hi = float(clean.min()), float(clean.max())
    clean = (clean - lo) / (hi - lo)
    image = clean
    if noise > 0:
        image = clean + np.float32(noise) * pink_noise(shape, rng=rng)
    return Phantom(
        image=image.astype(np.float32, copy=False),
        levels=levels_from_finest(labels),
        seed=seed,
        irregular=bool(irregular),
        noise=float(noise),
    )


def levels_from_finest(level3: np.ndarray) -> dict[int, np.ndarray]:
    """Derive the level-2 and level-1 maps from a level-3 map through :data:`PARENT`.

    Parameters
    ----------
    level3 : (Z, Y, X) integer array with values 0..7

    Returns
    -------
    dict of int to (Z, Y, X) uint8 array
        Keys 1, 2, 3; level 3 is a uint8 copy of the input.
    """
    level3 = np.asarray(level3)
    if level3.size and (level3.min() < 0 or level3.max() > 7):
        raise ValueError("level-3 labels must lie in 0..7")
    l3 = level3.astype(np.uint8)
    l2 = PARENT[2][l3]
    l1 = PARENT[1][l2]
    return {1: l1, 2: l2, 3: l3}


def pink_noise(shape: tuple[int, ...], *, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Gaussian 1/f noise: power spectrum proportional to 1/|f|.

    White Gaussian noise is shaped in Fourier space by ``|f|**-0.5`` (so the
    power falls as ``1/|f|``, with ``|f|`` in cycles per voxel along every
    axis, hence isotropic in space even for anisotropic shapes), the constant
    term is removed, and the result is scaled to zero mean and unit standard
    deviation.

    Parameters
    ----------
    shape : tuple of int
        Output shape (any number of dimensions, each >= 2).
    rng : numpy Generator, int or None
        Source of randomness (an int seeds a new generator).

    Returns
    -------
    ndarray of float32, shape ``shape``
    """
    rng = np.random.default_rng(rng)
    shape = tuple(int(n) for n in shape)
    white = rng.standard_normal(shape, dtype=np.float32)
    spectrum = scipy.fft.rfftn(white, workers=_WORKERS)
    f2 = _frequency_sq(shape)
    with np.errstate(divide="ignore"):
        gain = f2 ** np.float32(-0.25)  # amplitude ~ |f|^-1/2  <=>  power ~ 1/|f|
    gain.flat[0] = 0.0
    out = scipy.fft.irfftn(spectrum * gain, s=shape, workers=_WORKERS).astype(np.float32, copy=False)
    return _standardise(out)


def phantom_seeds(seed: int, n: int) -> list[int]:
    """Per-volume seeds of a dataset, derived from its base seed.

    Volume ``i`` of a dataset is ``make_phantom(size, seed=phantom_seeds(seed, n)[i])``;
    the list for a larger ``n`` extends the one for a smaller ``n``.
    """
    children = np.random.SeedSequence(_check_seed(seed)).spawn(int(n))
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


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
    from .io import write_image, write_labels  # noqa: PLC0415 - keeps synthetic importable alone

    shape = phantom_shape(size)
    n = _check_count(n)
    _check_noise(noise)
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
        "seed": _check_seed(seed),
        "irregular": bool(irregular),
        "noise": float(noise),
        "split": dict(zip(("train", "val", "test"), counts)),
        "class_names": {str(k): v for k, v in CLASS_NAMES.items()},
        "parent": {str(k): v.tolist() for k, v in PARENT.items()},
        "volumes": volumes,
    }
    tmp = meta_path.with_name(meta_path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(meta_path)
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


# --------------------------------------------------------------------------- validation


def phantom_shape(size) -> tuple[int, int, int]:
    """Validate a phantom size (int or three ints) and return it as (Z, Y, X)."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        shape = (int(size),) * 3
    else:
        try:
            shape = tuple(int(s) for s in size)
        except (TypeError, ValueError):
            raise UserError(f"size must be an int or three ints (z, y, x), got {size!r}") from None
        if len(shape) != 3 or any(float(s) != int(s) for s in size):
            raise UserError(f"size must be an int or three ints (z, y, x), got {size!r}")
    if min(shape) < MIN_SIZE:
        raise UserError(f"the phantom needs at least {MIN_SIZE} voxels along every axis, got size {shape}")
    return shape


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_noise(noise) -> None:
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.floating, np.integer)):
        raise UserError(f"noise must be a number >= 0, got {noise!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise UserError(f"noise must be a finite number >= 0, got {noise!r}")


def _check_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UserError(f"the number of volumes must be a positive integer, got {n!r}")
    return int(n)


# --------------------------------------------------------------------------- noise fields


def _frequency_sq(shape: tuple[int, ...]) -> np.ndarray:
    """|f|^2 (cycles/voxel) on the grid of ``rfftn(shape)``, float32."""
    axes = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    grids = np.ix_(*[a.astype(np.float32) ** 2 for a in axes])
    f2 = grids[0]
    for g in grids[1:]:
        f2 = f2 + g
    return f2


def _standardise(a: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation, float32 (in place when ``a`` is float32)."""
    a = a.astype(np.float32, copy=False)
    a -= a.mean()
    std = float(np.sqrt(np.mean(np.square(a))))
    if std > 0:
        a /= np.float32(std)
    return a


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-correlated noise (white noise blurred by a Gaussian of ``sigma`` voxels), unit std.

    Filtering in Fourier space keeps the cost independent of ``sigma``; the
    periodic wrap only touches the box edges, where the objects are not.
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    gain = np.exp(np.float32(-2.0 * math.pi**2 * sigma**2) * _frequency_sq(shape))
    return _standardise(scipy.fft.irfftn(scipy.fft.rfftn(white, workers=_WORKERS) * gain, s=shape, workers=_WORKERS))


# --------------------------------------------------------------------------- geometry


@dataclass
class _Object:
    """A sphere or cube in local coordinates u = R (x - center), scaled by ``radii``.

    In the irregular variant its boundary radius is multiplied, along each
    direction n of the object frame, by ``1 + roughness * g(n)``, where ``g``
    is a random smooth function on the sphere (a sum of plane waves in n)
    with unit spread: a radial displacement of the surface.
    """

    kind: str  # "sphere" (ellipsoid) or "cube" (box)
    radii: np.ndarray  # (3,) semi-axes / half-extents, voxels
    rotation: np.ndarray  # (3, 3), rows are the object axes
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    roughness: float = 0.0
    waves: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # dirs, freq, phase, weight

    @property
    def corner(self) -> float:
        """Distance from the centre to a corner, relative to the half-size."""
        if self.kind != "cube":
            return 1.0
        # Irregular cubes are rounded (a 4-norm ball): corners at 3**(1/4).
        return 3.0 ** 0.25 if self.waves is not None else math.sqrt(3.0)

    @property
    def reach(self) -> float:
        """Radius of a ball around ``center`` that holds the whole object."""
        return float(self.radii.max()) * self.corner * (1.0 + _BUMP_CLIP * self.roughness) + 1.0


_BUMP_CLIP = 2.0  # |g| is clipped here, so shapes never turn inside out


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _make_object(rng, kind, radius, level, irregular, *, stretch=(1.0, 1.0, 1.0)) -> _Object:
    radii = np.asarray(stretch, dtype=float) * radius
    if not irregular:
        return _Object(kind, radii, np.eye(3))
    # Random orientation and aspect (at constant volume), bumpy boundary.
    aspect = np.exp(rng.normal(0.0, 0.12, 3))
    radii = np.maximum(radii * aspect / np.prod(aspect) ** (1 / 3), min(_MIN_AGGREGATE, radius))
    n_waves = 8
    dirs = rng.normal(size=(n_waves, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    freq = rng.uniform(*_WAVE_FREQ[level], n_waves)
    phase = rng.uniform(0, 2 * math.pi, n_waves)
    weight = rng.uniform(0.5, 1.0, n_waves)
    weight *= math.sqrt(2.0 / np.sum(weight**2))  # a cos of random phase has variance 1/2
    # A bump on an object a few voxels across would shred it rather than roughen it.
    roughness = float(rng.uniform(*_ROUGHNESS[level])) * min(1.0, float(radii.min()) / 2.5)
    return _Object(kind, radii, _random_rotation(rng), roughness=roughness, waves=(dirs, freq, phase, weight))


_SLAB = 1 << 18  # voxels per slab: keeps the temporaries of _rasterise in cache
_EDT_VOXELS = 1 << 17  # host boxes up to this size get an exact depth map (a distance transform)
_ORGANELLE_GAP = 1.0  # voxels of cytoplasm kept between organelles


def _bounds(obj: _Object, shape) -> tuple[slice, ...] | None:
    """The part of the volume that may hold ``obj`` (None if none of it)."""
    lo = np.maximum(np.floor(obj.center - obj.reach).astype(int), 0)
    hi = np.minimum(np.ceil(obj.center + obj.reach).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _local_coords(obj: _Object, box: tuple[slice, ...]) -> list[np.ndarray]:
    """Object-frame coordinates (voxels) over ``box``, as arrays broadcastable to it."""
    axes = [np.arange(s.start, s.stop, dtype=np.float32) - np.float32(c) for s, c in zip(box, obj.center)]
    grids = np.ix_(*axes)
    if np.array_equal(obj.rotation, np.eye(3)):
        return list(grids)  # open grids, nothing built at full size
    rot = obj.rotation.astype(np.float32)
    return [rot[i, 0] * grids[0] + rot[i, 1] * grids[1] + rot[i, 2] * grids[2] for i in range(3)]


def _rasterise(obj: _Object, shape):
    """Normalised distance of ``obj`` over its bounding box.

    Returns
    -------
    box : tuple of slices or None
        The part of the volume that may hold the object (None if it is outside).
    d : (box shape) float32 array
        < 1 inside, 1 on the (perturbed) boundary; grows outwards.
    """
    box = _bounds(obj, shape)
    if box is None:
        return None, None
    dims = tuple(s.stop - s.start for s in box)
    d = np.empty(dims, dtype=np.float32)
    # Scaled object-frame coordinates are linear in the box's open grids.
    axes = [np.arange(s.start, s.stop, dtype=np.float32) - np.float32(c) for s, c in zip(box, obj.center)]
    lin = (obj.rotation / obj.radii[:, None]).astype(np.float32)  # scaled = lin @ (x - center)
    step = max(1, _SLAB // (dims[1] * dims[2]))
    y, x = axes[1][:, None], axes[2][None, :]
    waves = None
    if obj.waves is not None:
        dirs, freq, phase, weight = obj.waves
        waves = list(zip(*(a.astype(np.float32) for a in (dirs, freq, phase, weight))))
    for z0 in range(0, dims[0], step):
        z = axes[0][z0 : z0 + step, None, None]
        s = [lin[i, 0] * z + lin[i, 1] * y + lin[i, 2] * x for i in range(3)]
        r2 = s[0] * s[0] + s[1] * s[1] + s[2] * s[2]
        if obj.kind == "sphere":
            slab = np.sqrt(r2)
        elif waves is None:
            slab = np.maximum(np.maximum(np.abs(s[0]), np.abs(s[1])), np.abs(s[2]))
        else:
            slab = np.sqrt(np.sqrt(s[0] ** 4 + s[1] ** 4 + s[2] ** 4))
        if waves is not None:
            inv = 1 / (np.sqrt(r2) + np.float32(1e-6))
            n = [si * inv for si in s]
            g = np.zeros(slab.shape, dtype=np.float32)
            for v, f, p, w in waves:
                t = v[0] * n[0]
                t += v[1] * n[1]
                t += v[2] * n[2]
                t *= f
                t += p
                np.cos(t, out=t)
                t *= w
                g += t
            np.clip(g, -_BUMP_CLIP, _BUMP_CLIP, out=g)
            g *= np.float32(obj.roughness)
            g += 1
            slab /= g
        d[z0 : z0 + step] = slab
    return box, d


def _core(host_d, host_box, shape, obj: _Object, host: _Object, allowed, gap: float, depth=None) -> np.ndarray:
    """Flat indices of the voxels deep enough in the host for ``obj``'s centre.

    ``allowed`` (host box shape) marks the voxels ``obj`` may take. In a small
    box, a distance transform of ``allowed`` gives the depth: the ball
    inscribed in ``obj``, grown by ``gap``, must fit (siblings already placed
    count as taken). A ``depth`` map computed earlier may be passed instead;
    of it, only voxels still ``allowed`` are kept. A large box (a big cell)
    reads the depth off the host's normalised distance ``host_d``, with
    ``obj``'s corners included. :func:`_place` keeps siblings apart in any case.
    """
    if depth is not None or allowed.size <= _EDT_VOXELS:
        if depth is None:
            depth = ndi.distance_transform_edt(allowed)
        local = np.flatnonzero((depth >= float(obj.radii.min()) + gap) & allowed)
    else:
        margin = _ball(obj, aligned_with=host) / float(host.radii.min())
        local = np.flatnonzero((host_d < 1 - margin) & allowed)
    coords = np.unravel_index(local, host_d.shape)
    return np.ravel_multi_index(tuple(c + s.start for c, s in zip(coords, host_box)), shape)


def _ball(obj: _Object, aligned_with: _Object | None = None) -> float:
    """Radius that ``obj`` needs around its centre (no bumps).

    A cube inside an unrotated cube host only needs its half-size; anywhere
    else its corners count.
    """
    corner = obj.corner
    if (
        aligned_with is not None
        and obj.kind == aligned_with.kind == "cube"
        and obj.waves is None
        and np.array_equal(obj.rotation, aligned_with.rotation)
    ):
        corner = 1.0
    return float(obj.radii.max()) * corner


def _place(rng, obj: _Object, shape, candidates, free, siblings=(), *, gap: float, fit: float = 0.98, tries: int = 20):
    """Move ``obj`` to a random candidate voxel where it sits in free space, or return None.

    Candidates too close to a placed sibling are dropped first (a cheap test
    on centres); then random ones are tried until the object, grown by
    ``gap`` voxels, lies in ``free(box)`` (the voxels it may take) up to a
    fraction ``fit``. The few voxels that still spill out are clipped when
    painting.
    """
    if siblings and candidates.size:
        coords = np.unravel_index(candidates, shape)
        keep = np.ones(candidates.size, dtype=bool)
        for o in siblings:
            dist2 = sum((c.astype(np.float32) - np.float32(oc)) ** 2 for c, oc in zip(coords, o.center))
            keep &= dist2 >= np.float32((0.8 * (_ball(o) + _ball(obj))) ** 2)
        candidates = candidates[keep]
    if candidates.size == 0:
        return None
    grow = gap / float(obj.radii.min())
    for _ in range(tries):
        idx = candidates[rng.integers(candidates.size)]
        obj.center = np.array(np.unravel_index(idx, shape), dtype=float) + rng.uniform(-0.5, 0.5, 3)
        box, d = _rasterise(obj, shape)
        if box is None:
            continue
        body = d < 1 + grow
        if body.any() and np.mean(free(box)[body]) >= fit:
            return box, d
    return None


# --------------------------------------------------------------------------- scene


def _draw_scene(rng: np.random.Generator, shape: tuple[int, int, int], irregular: bool):
    """Draw one scene: level-3 labels (uint8) and the clean image (float32, unnormalised)."""
    shape_arr = np.asarray(shape, dtype=float)
    scale = min(shape) / _REF_SIZE
    means = {c: rng.uniform(lo, hi) for c, (lo, hi) in _MEANS.items()}
    labels = np.zeros(shape, dtype=np.uint8)
    instance = np.zeros(shape, dtype=np.int32)  # organelle id, so aggregates stay in their host
    image = np.full(shape, means[0], dtype=np.float32)

    # Level 1: the cell, an ellipsoid filling a good part of the box.
    semi = shape_arr * rng.uniform(*_CELL_SEMI_AXIS, size=3)
    cell = _make_object(rng, "sphere", 1.0, 1, irregular, stretch=semi)
    cell.rotation = np.eye(3)  # the cell follows the box, which may be far from cubic
    cell.radii = cell.radii / (1 + 0.5 * cell.roughness)  # most bumps stay inside the box
    outer = cell.radii * (1 + cell.roughness)
    cell.center = shape_arr / 2 - 0.5 + rng.uniform(-1, 1, 3) * np.maximum(shape_arr / 2 - outer - 2, 0) * 0.5
    box, d = _rasterise(cell, shape)
    mask = d < 1
    # Cytoplasm texture: soft blobs a few voxels across.
    texture = means[1] + 0.05 * _smooth_noise(rng, d.shape, 2.5 * scale)
    labels[box][mask] = 1
    image[box][mask] = texture[mask]
    # Children only take voxels whose six neighbours belong to the parent, so
    # no child ever touches its parent's outside (strict nesting).
    cell_inner = ndi.binary_erosion(labels == 1)
    host_inner = np.zeros(shape, dtype=bool)

    # Level 2: vesicles (spheres) and mitochondria (cubes) in the cytoplasm,
    # more of them in a larger cell.
    cell_box, cell_d = box, d
    ref_cell_volume = 4 / 3 * math.pi * (np.mean(_CELL_SEMI_AXIS) * _REF_SIZE * scale) ** 3
    n_cell = np.count_nonzero(mask)
    drawn = rng.integers(_N_ORGANELLES[0], _N_ORGANELLES[1] + 1, size=2)
    per_kind = [min(_MAX_ORGANELLES, max(1, round(int(k) * n_cell / ref_cell_volume))) for k in drawn]
    # Alternate kinds, cubes (the harder to fit) first, so that a crowded cell
    # still gets one of each; the first of a kind also shrinks until it fits.
    order = [c for i in range(max(per_kind)) for c, k in ((3, per_kind[1]), (2, per_kind[0])) if i < k]
    organelles: list[tuple[int, _Object, tuple[slice, ...], np.ndarray]] = []

    def cytoplasm(b):
        return cell_inner[b] & (labels[b] == 1)

    # Depth in the empty cytoplasm, computed once (organelles placed later
    # are kept apart by _place); too costly for a very large cell.
    cell_depth = ndi.distance_transform_edt(cytoplasm(cell_box)) if cell_d.size <= _EDT_VOXELS else None
    for cls in order:
        size = max(_MIN_ORGANELLE[cls], rng.uniform(*(_VESICLE_RADIUS if cls == 2 else _MITO_HALF)) * scale)
        first = all(c != cls for c, *_ in organelles)
        for attempt in range(_SHRINK_STEPS if first else 1):
            obj = _organelle(rng, cls, max(_MIN_ORGANELLE[cls] * _SHRINK, size * _SHRINK**attempt), irregular)
            candidates = _core(cell_d, cell_box, shape, obj, cell, cytoplasm(cell_box), _ORGANELLE_GAP, cell_depth)
            spot = _place(rng, obj, shape, candidates, cytoplasm, [o[1] for o in organelles], gap=_ORGANELLE_GAP)
            if spot is not None:
                break
        if spot is None:
            continue
        box, d = spot
        ident = len(organelles) + 1
        mask = (d < 1) & cytoplasm(box)
        value = means[cls] + rng.normal(0, _OBJECT_JITTER)
        if cls == 2:
            # Vesicle: a bright membrane around a lumen.
            rim = max(1.0, 1.2 * scale) / float(obj.radii.min())
            texture = value + 0.12 * (d > 1 - rim)
        else:
            # Mitochondrion: cristae as stripes across one axis (the long one if irregular).
            period = 3.5 * scale
            axis = 0 if irregular else int(rng.integers(3))
            u = _local_coords(obj, box)
            texture = value + 0.1 * np.sin(2 * math.pi * u[axis] / period + rng.uniform(0, 2 * math.pi))
        texture = np.broadcast_to(texture, d.shape)
        labels[box][mask] = cls
        instance[box][mask] = ident
        image[box][mask] = texture[mask]
        host_inner[box] |= ndi.binary_erosion(instance[box] == ident)
        organelles.append((cls, obj, box, d))

    # Level 3: small aggregates inside their host organelles.
    for ident, (host_cls, host, host_box, host_d) in enumerate(organelles, start=1):
        inside: list[_Object] = []

        def free(b, ident=ident, host_cls=host_cls):
            return host_inner[b] & (instance[b] == ident) & (labels[b] == host_cls)

        lo_n, hi_n = _AGGREGATES_PER_ORGANELLE
        counts = {c: int(rng.integers(lo_n, hi_n + 1)) for c in _HOSTS[host_cls]}
        # Interleave the two kinds, cubes (the harder to fit) first, so that
        # a small host still gets one of each.
        order = [c for i in range(max(counts.values())) for c in _HOSTS[host_cls][::-1] if i < counts[c]]
        for cls in order:
            kind, (lo, hi) = _AGGREGATES[cls]
            size = max(_MIN_AGGREGATE, rng.uniform(lo, hi) * scale)
            first = all(o.kind != kind for o in inside)  # the two kinds hosted differ in shape
            for attempt in range(_SHRINK_STEPS if first else 1):
                obj = _make_object(rng, kind, max(_MIN_AGGREGATE * _SHRINK, size * _SHRINK**attempt), 3, irregular)
                candidates = _core(host_d, host_box, shape, obj, host, free(host_box), 0.0)
                # Aggregates are a few voxels across: one voxel more or less decides.
                spot = _place(rng, obj, shape, candidates, free, inside, gap=0.0, fit=0.9)
                if spot is not None:
                    break
            if spot is None:
                continue
            inside.append(obj)
            box, d = spot
            mask = (d < 1) & free(box)
            value = means[cls] + rng.normal(0, _OBJECT_JITTER)
            texture = _aggregate_texture(rng, cls, value, _local_coords(obj, box), d)
            labels[box][mask] = cls
            image[box][mask] = texture[mask]
    return labels, image


def _organelle(rng, cls: int, size: float, irregular: bool) -> _Object:
    if cls == 2:
        return _make_object(rng, "sphere", size, 2, irregular)
    stretch = (1.0, 1.0, 1.0) if not irregular else (1.25, 0.9, 0.9)  # irregular: elongated
    return _make_object(rng, "cube", size, 2, irregular, stretch=stretch)


def _aggregate_texture(rng, cls, value, u, d) -> np.ndarray:
    if cls == 5:  # speckled: independent voxel noise
        return value + 0.1 * rng.standard_normal(d.shape, dtype=np.float32)
    if cls == 6:  # brighter core fading to a dark rim
        return value + 0.12 * np.clip(1 - d, 0, 1)
    if cls == 7:  # checkerboard in the object's frame
        parity = sum(np.floor(ui) for ui in u) % 2
        return np.broadcast_to(value + 0.08 * (2 * parity - 1), d.shape)
    return np.full(d.shape, value, dtype=np.float32)  # class 4: uniform
