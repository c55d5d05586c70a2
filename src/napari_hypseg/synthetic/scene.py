"""One phantom scene: a cell, vesicles and mitochondria in it, protein aggregates in those.

:func:`draw_scene` returns the level-3 labels and the clean image; the
sizes below are at the reference size of 50 voxels and scale with the
volume, and the intensity ranges are drawn once per volume.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from .noise import smooth_noise
from .shapes import (
    EDT_VOXELS,
    MIN_AGGREGATE,
    Shape,
    centre_candidates,
    local_coords,
    make_shape,
    place,
    rasterise,
)

__all__ = ["draw_scene"]

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
# (the floor of aggregates, MIN_AGGREGATE, is in shapes.py)
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
_ORGANELLE_GAP = 1.0  # voxels of cytoplasm kept between organelles


def draw_scene(rng: np.random.Generator, shape: tuple[int, int, int], irregular: bool):
    """Draw one scene: level-3 labels (uint8) and the clean image (float32, unnormalised)."""
    shape_arr = np.asarray(shape, dtype=float)
    scale = min(shape) / _REF_SIZE
    means = {c: rng.uniform(lo, hi) for c, (lo, hi) in _MEANS.items()}
    labels = np.zeros(shape, dtype=np.uint8)
    instance = np.zeros(shape, dtype=np.int32)  # organelle id, so aggregates stay in their host
    image = np.full(shape, means[0], dtype=np.float32)

    # Level 1: the cell, an ellipsoid filling a good part of the box.
    semi = shape_arr * rng.uniform(*_CELL_SEMI_AXIS, size=3)
    cell = make_shape(rng, "sphere", 1.0, 1, irregular, stretch=semi)
    cell.rotation = np.eye(3)  # the cell follows the box, which may be far from cubic
    cell.radii = cell.radii / (1 + 0.5 * cell.roughness)  # most bumps stay inside the box
    outer = cell.radii * (1 + cell.roughness)
    cell.center = shape_arr / 2 - 0.5 + rng.uniform(-1, 1, 3) * np.maximum(shape_arr / 2 - outer - 2, 0) * 0.5
    box, d = rasterise(cell, shape)
    mask = d < 1
    # Cytoplasm texture: soft blobs a few voxels across.
    texture = means[1] + 0.05 * smooth_noise(rng, d.shape, 2.5 * scale)
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
    organelles: list[tuple[int, Shape, tuple[slice, ...], np.ndarray]] = []

    def cytoplasm(b):
        return cell_inner[b] & (labels[b] == 1)

    # Depth in the empty cytoplasm, computed once (organelles placed later
    # are kept apart by place); too costly for a very large cell.
    cell_depth = ndi.distance_transform_edt(cytoplasm(cell_box)) if cell_d.size <= EDT_VOXELS else None
    for cls in order:
        size = max(_MIN_ORGANELLE[cls], rng.uniform(*(_VESICLE_RADIUS if cls == 2 else _MITO_HALF)) * scale)
        first = all(c != cls for c, *_ in organelles)
        for attempt in range(_SHRINK_STEPS if first else 1):
            obj = _organelle(rng, cls, max(_MIN_ORGANELLE[cls] * _SHRINK, size * _SHRINK**attempt), irregular)
            candidates = centre_candidates(
                cell_d, cell_box, shape, obj, cell, cytoplasm(cell_box), _ORGANELLE_GAP, cell_depth
            )
            spot = place(rng, obj, shape, candidates, cytoplasm, [o[1] for o in organelles], gap=_ORGANELLE_GAP)
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
            u = local_coords(obj, box)
            texture = value + 0.1 * np.sin(2 * math.pi * u[axis] / period + rng.uniform(0, 2 * math.pi))
        texture = np.broadcast_to(texture, d.shape)
        labels[box][mask] = cls
        instance[box][mask] = ident
        image[box][mask] = texture[mask]
        host_inner[box] |= ndi.binary_erosion(instance[box] == ident)
        organelles.append((cls, obj, box, d))

    # Level 3: small aggregates inside their host organelles.
    for ident, (host_cls, host, host_box, host_d) in enumerate(organelles, start=1):
        inside: list[Shape] = []

        def free(b, ident=ident, host_cls=host_cls):
            return host_inner[b] & (instance[b] == ident) & (labels[b] == host_cls)

        lo_n, hi_n = _AGGREGATES_PER_ORGANELLE
        counts = {c: int(rng.integers(lo_n, hi_n + 1)) for c in _HOSTS[host_cls]}
        # Interleave the two kinds, cubes (the harder to fit) first, so that
        # a small host still gets one of each.
        order = [c for i in range(max(counts.values())) for c in _HOSTS[host_cls][::-1] if i < counts[c]]
        for cls in order:
            kind, (lo, hi) = _AGGREGATES[cls]
            size = max(MIN_AGGREGATE, rng.uniform(lo, hi) * scale)
            first = all(o.kind != kind for o in inside)  # the two kinds hosted differ in shape
            for attempt in range(_SHRINK_STEPS if first else 1):
                obj = make_shape(rng, kind, max(MIN_AGGREGATE * _SHRINK, size * _SHRINK**attempt), 3, irregular)
                candidates = centre_candidates(host_d, host_box, shape, obj, host, free(host_box), 0.0)
                # Aggregates are a few voxels across: one voxel more or less decides.
                spot = place(rng, obj, shape, candidates, free, inside, gap=0.0, fit=0.9)
                if spot is not None:
                    break
            if spot is None:
                continue
            inside.append(obj)
            box, d = spot
            mask = (d < 1) & free(box)
            value = means[cls] + rng.normal(0, _OBJECT_JITTER)
            texture = _aggregate_texture(rng, cls, value, local_coords(obj, box), d)
            labels[box][mask] = cls
            image[box][mask] = texture[mask]
    return labels, image


def _organelle(rng, cls: int, size: float, irregular: bool) -> Shape:
    if cls == 2:
        return make_shape(rng, "sphere", size, 2, irregular)
    stretch = (1.0, 1.0, 1.0) if not irregular else (1.25, 0.9, 0.9)  # irregular: elongated
    return make_shape(rng, "cube", size, 2, irregular, stretch=stretch)


def _aggregate_texture(rng, cls, value, u, d) -> np.ndarray:
    if cls == 5:  # speckled: independent voxel noise
        return value + 0.1 * rng.standard_normal(d.shape, dtype=np.float32)
    if cls == 6:  # brighter core fading to a dark rim
        return value + 0.12 * np.clip(1 - d, 0, 1)
    if cls == 7:  # checkerboard in the object's frame
        parity = sum(np.floor(ui) for ui in u) % 2
        return np.broadcast_to(value + 0.08 * (2 * parity - 1), d.shape)
    return np.full(d.shape, value, dtype=np.float32)  # class 4: uniform
