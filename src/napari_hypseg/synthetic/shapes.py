"""The phantom's objects: spheres and cubes, axis-aligned or rotated with bumpy boundaries.

A :class:`Shape` is rasterised as a normalised distance over its bounding box
(< 1 inside), and :func:`place` moves it to a random spot where it fits in
the free voxels of its host; :func:`centre_candidates` lists the spots deep
enough in the host for its centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "EDT_VOXELS",
    "MIN_AGGREGATE",
    "Shape",
    "centre_candidates",
    "local_coords",
    "make_shape",
    "place",
    "rasterise",
]

# No axis of an irregular shape is squeezed by its random aspect below this
# many voxels: the smallest aggregate, also the scene's floor for aggregates.
MIN_AGGREGATE = 1.0

# Irregular variant, per level: radial displacement of the boundary (fraction
# of the radius, one spread of the random bump function) and the angular
# frequencies of the plane waves that make up that function.
_ROUGHNESS = {1: (0.10, 0.18), 2: (0.12, 0.2), 3: (0.15, 0.3)}
_WAVE_FREQ = {1: (2.0, 9.0), 2: (2.0, 7.0), 3: (1.5, 4.0)}


@dataclass
class Shape:
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
        return 3.0**0.25 if self.waves is not None else math.sqrt(3.0)

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


def make_shape(rng, kind, radius, level, irregular, *, stretch=(1.0, 1.0, 1.0)) -> Shape:
    """A ``kind`` shape of size ``radius * stretch``; irregular: rotated, reshaped, bumpy at ``level``."""
    radii = np.asarray(stretch, dtype=float) * radius
    if not irregular:
        return Shape(kind, radii, np.eye(3))
    # Random orientation and aspect (at constant volume), bumpy boundary.
    aspect = np.exp(rng.normal(0.0, 0.12, 3))
    radii = np.maximum(radii * aspect / np.prod(aspect) ** (1 / 3), min(MIN_AGGREGATE, radius))
    n_waves = 8
    dirs = rng.normal(size=(n_waves, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    freq = rng.uniform(*_WAVE_FREQ[level], n_waves)
    phase = rng.uniform(0, 2 * math.pi, n_waves)
    weight = rng.uniform(0.5, 1.0, n_waves)
    weight *= math.sqrt(2.0 / np.sum(weight**2))  # a cos of random phase has variance 1/2
    # A bump on an object a few voxels across would shred it rather than roughen it.
    roughness = float(rng.uniform(*_ROUGHNESS[level])) * min(1.0, float(radii.min()) / 2.5)
    return Shape(kind, radii, _random_rotation(rng), roughness=roughness, waves=(dirs, freq, phase, weight))


_SLAB = 1 << 18  # voxels per slab: keeps the temporaries of rasterise in cache
EDT_VOXELS = 1 << 17  # host boxes up to this size get an exact depth map (a distance transform)


def _bounds(obj: Shape, shape) -> tuple[slice, ...] | None:
    """The part of the volume that may hold ``obj`` (None if none of it)."""
    lo = np.maximum(np.floor(obj.center - obj.reach).astype(int), 0)
    hi = np.minimum(np.ceil(obj.center + obj.reach).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def local_coords(obj: Shape, box: tuple[slice, ...]) -> list[np.ndarray]:
    """Object-frame coordinates (voxels) over ``box``, as arrays broadcastable to it."""
    axes = [np.arange(s.start, s.stop, dtype=np.float32) - np.float32(c) for s, c in zip(box, obj.center)]
    grids = np.ix_(*axes)
    if np.array_equal(obj.rotation, np.eye(3)):
        return list(grids)  # open grids, nothing built at full size
    rot = obj.rotation.astype(np.float32)
    return [rot[i, 0] * grids[0] + rot[i, 1] * grids[1] + rot[i, 2] * grids[2] for i in range(3)]


def rasterise(obj: Shape, shape):
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


def centre_candidates(host_d, host_box, shape, obj: Shape, host: Shape, allowed, gap: float, depth=None) -> np.ndarray:
    """Flat indices of the voxels deep enough in the host for ``obj``'s centre.

    ``allowed`` (host box shape) marks the voxels ``obj`` may take. In a small
    box, a distance transform of ``allowed`` gives the depth: the ball
    inscribed in ``obj``, grown by ``gap``, must fit (siblings already placed
    count as taken). A ``depth`` map computed earlier may be passed instead;
    of it, only voxels still ``allowed`` are kept. A large box (a big cell)
    reads the depth off the host's normalised distance ``host_d``, with
    ``obj``'s corners included. :func:`place` keeps siblings apart in any case.
    """
    if depth is not None or allowed.size <= EDT_VOXELS:
        if depth is None:
            depth = ndi.distance_transform_edt(allowed)
        local = np.flatnonzero((depth >= float(obj.radii.min()) + gap) & allowed)
    else:
        margin = _ball(obj, aligned_with=host) / float(host.radii.min())
        local = np.flatnonzero((host_d < 1 - margin) & allowed)
    coords = np.unravel_index(local, host_d.shape)
    return np.ravel_multi_index(tuple(c + s.start for c, s in zip(coords, host_box)), shape)


def _ball(obj: Shape, aligned_with: Shape | None = None) -> float:
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


def place(rng, obj: Shape, shape, candidates, free, siblings=(), *, gap: float, fit: float = 0.98, tries: int = 20):
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
        box, d = rasterise(obj, shape)
        if box is None:
            continue
        body = d < 1 + grow
        if body.any() and np.mean(free(box)[body]) >= fit:
            return box, d
    return None
