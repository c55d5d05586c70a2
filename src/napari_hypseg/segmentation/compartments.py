"""Compartments: what a thin wall (a membrane, a protein shell) encloses, as a cluster of its own.

Intensity cannot tell the lumen of a vesicle or a virus-like particle from the
medium outside it: both are the same solvent. What tells them apart is that
the lumen is enclosed by the wall. When the thinner cluster of the coarsest
level of the mixture is a wall (thin: a sheet at most about six voxels thick,
of which less than :data:`WALL_SURVIVAL` survives one erosion), every voxel
outside it is asked in how many of the 26 directions a
ray meets the wall within half the wall's extent (the width of its typical
connected piece: a closed piece of diameter D is D/2 from its middle); a
voxel enclosed in at least :data:`ENCLOSED_FROM` of them, in a piece that
survives an opening of radius :data:`COMPARTMENT_OPENING`, is in a
compartment. The next level then adds the compartments as one new cluster
(docs/method.md, round fourteen: the real tomogram's lumen).

A compartment is bounded by its wall: at least :data:`MIN_WALL_BOUNDED` of the
voxels just outside the compartments must be wall, or nothing counts as
enclosed (the slivers between crowded particles border mostly medium). Where
the wall is missing around a compartment — a cryo-ET missing wedge erases the
caps of a shell, a faint wall breaks up — the wall is closed: the compartment
grows into the medium, blocked by the wall that is there, for the wall's own
thickness, and what it reaches joins the wall (round fifteen).

A thick coarse cluster (a cell, a brain, nuclei) is not a wall, and nothing
changes: the gate is the wall's thinness, measured on the level itself. A
cloud of small particles is thin too: its rays are as short as its
particles are wide, the gaps between them are slivers the opening removes,
and when the enclosed voxels are still a large share of the medium (a dense
crowd), nothing stands apart and nothing changes either.
The dataset path (one clustering for many volumes, scored block by block)
does not add compartments: a ray needs the whole volume.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

#: a cluster of which less than this fraction survives one erosion is a wall: a sheet T voxels thick keeps
#: 1 − 2/T, so walls up to about 6 voxels thick (the tomogram's shell: 0.38; 0.52-0.61 resampled 1.5-2× finer;
#: 3-4-voxel shells seen through a missing wedge 0.58-0.64); every thick coarse cluster measured (cells, brains,
#: nuclei and their media, 53 volumes): 0.82 or more (docs/method.md, round twenty-six)
WALL_SURVIVAL = 0.7
#: a voxel is enclosed when rays in at least this fraction of the 26 directions meet the wall
ENCLOSED_FROM = 0.5
#: rays reach this fraction of the wall's extent (the voxel-weighted median of its pieces' longest sides): from
#: the middle of a closed piece of diameter D, the wall is D/2 away in every direction
RAY_FRACTION = 0.5
#: fewer enclosed voxels than this fraction of the volume make no compartment cluster
MIN_COMPARTMENT_FRACTION = 0.001
#: ... and more than this share of the voxels outside the wall neither: the medium itself is then enclosed
#: (a crowd of particles), and nothing stands apart from it
MAX_COMPARTMENT_SHARE = 0.1
#: compartments are compact: what survives an opening of this radius (thicker than the wall, which does not
#: survive one erosion); the slivers between crowded particles do not
COMPARTMENT_OPENING = 2

#: at least this fraction of the voxels bordering the compartments must be wall: half-way between the real
#: tomogram's lumens (0.42-0.43) and what survives the opening in dense crowds of small particles (0.24-0.31);
#: synthetic shells 0.87-0.96 closed, 0.61-0.70 open at the poles
MIN_WALL_BOUNDED = 0.37

#: the level whose clusters are tested for walls: the coarsest split
WALL_LEVEL = 2
#: the compartments' cluster id (1-based), from the level above :data:`WALL_LEVEL` on
COMPARTMENT_ID = WALL_LEVEL + 1

_DIRECTIONS = [d for d in itertools.product((-1, 0, 1), repeat=3) if any(d)]
#: the 26-connected neighbourhood: the pieces of a wall, and what borders a compartment
_NEIGHBOURHOOD = np.ones((3, 3, 3), bool)


def survival(mask: np.ndarray) -> float:
    """The fraction of ``mask`` that survives one (6-connected) erosion; 0 for an empty mask. The volume's faces
    are not the mask's edges (a medium that fills a box is not thin along the box: 0.76-0.80 of the phantoms'
    backgrounds survived an erosion that ate into the faces, 0.93-0.95 survive one that does not)."""
    n = int(mask.sum())
    return float(ndimage.binary_erosion(mask, border_value=1).sum() / n) if n else 0.0


def is_thin(mask: np.ndarray) -> bool:
    """Whether less than :data:`WALL_SURVIVAL` of ``mask`` survives one erosion."""
    return bool(mask.any()) and survival(mask) < WALL_SURVIVAL


def thinnest_cluster(labels: np.ndarray) -> int:
    """The id of the cluster of ``labels`` of which the least survives one erosion: the one asked whether it is a
    wall. The medium around a crowd of small particles is thin too (0.68 of it survives an erosion where radius-2
    particles fill a quarter of the volume), and it would enclose their cores."""
    return int(min(np.unique(labels), key=lambda cluster: survival(labels == cluster)))


def wall_thickness(wall: np.ndarray) -> int:
    """The typical thickness of ``wall`` in voxels: a sheet T voxels thick loses 2 of its T layers to one erosion,
    so T = 2 / (1 − survival), rounded (at least 1)."""
    return max(1, round(2.0 / max(1.0 - survival(wall), 1e-6)))


def wall_bounded(inside: np.ndarray, wall: np.ndarray) -> float:
    """The fraction of the voxels bordering ``inside`` (26-connected) that are ``wall``; 0 when nothing borders it."""
    border = ndimage.binary_dilation(inside, structure=_NEIGHBOURHOOD) & ~inside
    n = int(border.sum())
    return float((border & wall).sum() / n) if n else 0.0


def wall_closure(inside: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """Voxels where the wall around ``inside`` is missing: what ``inside`` reaches by growing
    :func:`wall_thickness` steps through voxels that are not ``wall`` (the wall that is there stops it)."""
    grown = ndimage.binary_dilation(inside, iterations=wall_thickness(wall), mask=~wall)
    return grown & ~inside


def piece_extent(mask: np.ndarray) -> int:
    """The voxel-weighted median, over the connected pieces of ``mask``, of each piece's longest bounding-box side."""
    pieces, n = ndimage.label(mask, structure=_NEIGHBOURHOOD)
    if n == 0:
        return 0
    sizes = np.bincount(pieces.ravel())[1:]
    extents = np.array([max(s.stop - s.start for s in box) for box in ndimage.find_objects(pieces)])
    order = np.argsort(extents, kind="stable")
    half = np.searchsorted(np.cumsum(sizes[order]), sizes.sum() / 2)
    return int(extents[order][half])


def _shifted(mask: np.ndarray, step: tuple[int, ...]) -> np.ndarray:
    """``mask`` moved by ``step`` voxels, False where it moved in from outside."""
    out = np.zeros_like(mask)
    src = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(step, mask.shape))
    dst = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(step, mask.shape))
    out[dst] = mask[src]
    return out


def _hit_within(wall: np.ndarray, direction: tuple[int, ...], reach: int) -> np.ndarray:
    """Voxels from which a ray along ``-direction`` meets ``wall`` within ``reach`` steps (doubling: log₂ shifts)."""
    hit, span = _shifted(wall, direction), 1
    while span < reach:
        step = min(span, reach - span)
        hit |= _shifted(hit, tuple(step * c for c in direction))
        span += step
    return hit


def enclosure(wall: np.ndarray, reach: int) -> np.ndarray:
    """(shape) float32: the fraction of the 26 directions in which a ray meets ``wall`` within ``reach`` voxels."""
    count = np.zeros(wall.shape, np.uint8)
    for direction in _DIRECTIONS:
        count += _hit_within(wall, direction, reach)
    return count.astype(np.float32) / len(_DIRECTIONS)


def ray_reach(wall: np.ndarray) -> int:
    """Ray length, in voxels, for ``wall``: :data:`RAY_FRACTION` of its extent (:func:`piece_extent`)."""
    return max(2, int(RAY_FRACTION * piece_extent(wall)))


def enclosed_by(wall: np.ndarray) -> np.ndarray:
    """Voxels outside ``wall`` that rays of :func:`ray_reach` meet it from in at least :data:`ENCLOSED_FROM` of the
    directions (before the opening that keeps only compact compartments)."""
    return (enclosure(wall, ray_reach(wall)) >= ENCLOSED_FROM) & ~wall


@dataclass(frozen=True)
class Compartments:
    """What a wall cluster of the coarsest level encloses, in numbers (the masks are in :class:`CompartmentMasks`)."""

    wall: int  # the wall's cluster id (1-based) at :data:`WALL_LEVEL`
    fraction: float  # of the voxels, enclosed
    closed: float = 0.0  # of the voxels, added to the wall where it was missing around the compartments

    def describe(self) -> str:
        text = (
            f"from k = {COMPARTMENT_ID} on, cluster {COMPARTMENT_ID} is what the thin cluster {self.wall} of "
            f"k = {WALL_LEVEL} encloses ({self.fraction:.1%} of the voxels)"
        )
        return text + (f", its wall closed around it ({self.closed:.1%})" if self.closed else "")


class CompartmentMasks(NamedTuple):
    """(all bool, the volume's shape) the enclosed voxels, the voxels that close the wall around them, the wall."""

    inside: np.ndarray
    closure: np.ndarray
    wall: np.ndarray


def find_compartments(labels: np.ndarray) -> tuple[Compartments, CompartmentMasks] | None:
    """What the wall cluster of ``labels`` (ids 1…) encloses, and its masks, or None when its
    :func:`thinnest_cluster` is not thin, when the wall encloses almost nothing or mostly the medium, or when the
    enclosed voxels are not bounded by it."""
    cluster = thinnest_cluster(labels)
    wall = labels == cluster
    if not is_thin(wall):
        return None
    inside = ndimage.binary_opening(enclosed_by(wall), iterations=COMPARTMENT_OPENING)
    count = int(inside.sum())
    if (
        count < MIN_COMPARTMENT_FRACTION * labels.size
        or count > MAX_COMPARTMENT_SHARE * (wall.size - wall.sum())
        or wall_bounded(inside, wall) < MIN_WALL_BOUNDED
    ):
        return None
    closure = wall_closure(inside, wall)
    return Compartments(cluster, float(inside.mean()), float(closure.mean())), CompartmentMasks(inside, closure, wall)


def mixture_level(k: int, found: bool) -> int:
    """The mixture level behind level ``k``: with compartments ``found``, a level above :data:`WALL_LEVEL` is
    the mixture's level k − 1 plus the enclosed voxels (:func:`with_compartments`)."""
    return k - 1 if found and k > WALL_LEVEL else k


def with_compartments(coarser: np.ndarray, masks: CompartmentMasks) -> np.ndarray:
    """Level k from level k − 1 (ids 1…k−1): the enclosed voxels become :data:`COMPARTMENT_ID` (the ids from it on
    move up by one, so every cluster keeps its colour from level to level) and the closure takes the id most of
    the wall has at this level."""
    labels = np.where(coarser >= COMPARTMENT_ID, coarser + 1, coarser).astype(coarser.dtype)
    if masks.closure.any():
        labels[masks.closure] = np.bincount(labels[masks.wall]).argmax()
    labels[masks.inside] = COMPARTMENT_ID
    return labels
