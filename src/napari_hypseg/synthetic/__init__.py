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

Modules: :mod:`.phantom` (:func:`make_phantom`, the classes and their
nesting), :mod:`.dataset` (:func:`make_dataset`, a benchmark set on disk),
:mod:`.scene` (what one volume holds: the cell, organelles, aggregates and
their intensities), :mod:`.shapes` (spheres and cubes, regular or bumpy,
rasterised and placed) and :mod:`.noise` (pink and smooth noise fields).
"""

from .dataset import make_dataset, split_counts
from .noise import pink_noise
from .phantom import (
    CLASS_NAMES,
    MIN_SIZE,
    PARENT,
    Phantom,
    levels_from_finest,
    make_phantom,
    phantom_seeds,
    phantom_shape,
)

__all__ = [
    "CLASS_NAMES",
    "MIN_SIZE",
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
