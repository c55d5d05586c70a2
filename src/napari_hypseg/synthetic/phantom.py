"""The phantom volume: its classes and their nesting, :func:`make_phantom`, and its argument checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._errors import UserError
from .noise import pink_noise
from .scene import draw_scene

__all__ = [
    "CLASS_NAMES",
    "MIN_SIZE",
    "PARENT",
    "Phantom",
    "levels_from_finest",
    "make_phantom",
    "phantom_seeds",
    "phantom_shape",
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

#: The smallest extent (voxels) along any axis; below it organelles cannot hold their aggregates.
MIN_SIZE = 24


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
    class_names: dict[int, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in CLASS_NAMES.items()})
    seed: int = 0
    irregular: bool = False
    noise: float = 0.25


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
    seed = check_seed(seed)
    check_noise(noise)
    rng = np.random.default_rng(seed)

    # A draw may miss a class (an aggregate kind finds no room, mostly near the
    # minimum size): draw again from the same stream, which stays deterministic.
    for _ in range(50):
        labels, clean = draw_scene(rng, shape, bool(irregular))
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


def phantom_seeds(seed: int, n: int) -> list[int]:
    """Per-volume seeds of a dataset, derived from its base seed.

    Volume ``i`` of a dataset is ``make_phantom(size, seed=phantom_seeds(seed, n)[i])``;
    the list for a larger ``n`` extends the one for a smaller ``n``.
    """
    children = np.random.SeedSequence(check_seed(seed)).spawn(int(n))
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


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


def check_seed(seed) -> int:
    """``seed`` as an int, or a :class:`UserError` unless it is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_noise(noise) -> None:
    """Reject a noise level that is not a finite number >= 0."""
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.floating, np.integer)):
        raise UserError(f"noise must be a number >= 0, got {noise!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise UserError(f"noise must be a finite number >= 0, got {noise!r}")
