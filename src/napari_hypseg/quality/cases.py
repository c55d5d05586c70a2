"""The volumes the quality suite scores: recreated phantoms and real data with ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..benchmark import LEVEL_K as PHANTOM_LEVEL_K  # phantom level -> number of clusters (the papers' protocol)
from ..datasets import DatasetUnavailable, load_confocal_nuclei, load_hiv_tomogram, load_mni_t1
from ..synthetic import CLASS_NAMES as PHANTOM_CLASSES
from ..synthetic import make_phantom, phantom_seeds

#: a class holding less than this fraction of the voxels counts as small
SMALL_CLASS_FRACTION = 0.05


@dataclass
class CaseVolume:
    """One scored volume: image and, per level, (k, ground truth, class names)."""

    image: np.ndarray
    levels: dict[int, tuple[int, np.ndarray, tuple[str, ...]]]


@dataclass
class Case:
    """A family of volumes scored together.

    ``train`` holds the volumes the model is trained on (the phantom protocol:
    separate training phantoms); ``None`` means transductive — the model is
    trained on each scored volume itself, as a user does with the volume open.
    """

    name: str
    kind: str
    volumes: list[CaseVolume]
    train: list[np.ndarray] | None = None
    source: str = ""


def phantom_case(
    *, irregular: bool, n_train: int, n_test: int, size: int = 50, seed: int = 0, noise: float | None = None
) -> Case:
    """Test phantoms (levels 1/2/3 at k = 2/4/8) and training phantoms, from the ``hypseg sample`` seeds.

    ``noise`` (None: the generator's default) names the case after it, for the generality sweep.
    """
    seeds = phantom_seeds(seed, 120)
    extra = {} if noise is None else {"noise": noise}
    train = [make_phantom(size, irregular=irregular, seed=s, **extra).image for s in seeds[:n_train]]
    volumes = []
    for s in seeds[100 : 100 + n_test]:
        p = make_phantom(size, irregular=irregular, seed=s, **extra)
        volumes.append(
            CaseVolume(
                p.image,
                {level: (k, p.levels[level], tuple(PHANTOM_CLASSES[level])) for level, k in PHANTOM_LEVEL_K.items()},
            )
        )
    variant = "irregular" if irregular else "regular"
    return Case(
        f"phantom ({variant})" if noise is None else f"phantom ({variant}, noise {noise:g})",
        "synthetic",
        volumes,
        train or None,  # no training phantoms: trained on each test phantom, if at all
        source=f"recreated {variant} phantoms {size}³, {n_train} train / {n_test} test",
    )


def real_case(loader, kind: str) -> Case:
    """A real volume with one level of ground truth (k = its number of classes)."""
    lv = loader()
    return Case(
        lv.name,
        kind,
        [CaseVolume(lv.image, {1: (lv.n_classes, lv.labels, tuple(lv.class_names))})],
        None,
        source=lv.source,
    )


#: Rician noise level of the suite's single-acquisition MRI case (BrainWeb's middle level is 5 %)
MRI_NOISE = 0.06


def noisy_mri():
    """The MRI template with the noise of one acquisition: the template is far cleaner than any one scan."""
    return load_mni_t1(noise=MRI_NOISE)


def suite_cases(*, quick: bool, log=print) -> list[Case]:
    """Every case; a real one whose package is missing is skipped with its install hint.

    The confocal nuclei stack (3.9 M voxels, a third of the full run's time) is left out of the quick suite.
    """
    n_train, n_test = (2, 2) if quick else (8, 6)
    cases = [
        phantom_case(irregular=False, n_train=n_train, n_test=n_test),
        phantom_case(irregular=True, n_train=n_train, n_test=n_test),
    ]
    real = [(load_hiv_tomogram, "cryo-ET"), (load_mni_t1, "MRI"), (noisy_mri, "MRI")]
    if not quick:
        real.append((load_confocal_nuclei, "confocal"))
    for loader, kind in real:
        try:
            cases.append(real_case(loader, kind))
        except DatasetUnavailable as exc:
            log(f"skipping a real case: {exc}")
    return cases


#: the generality sweep (``hypseg bench --suite --sweep``): volumes away from the suite's, where a rule
#: tuned on the suite's cases is tested on volumes it was not chosen on
SWEEP_MRI_NOISE = (0.03, 0.09, 0.12, 0.18)
#: intensity non-uniformity (±, multiplicative) on the MRI template, as a single uncorrected scan has
SWEEP_MRI_BIAS = (0.1, 0.2)
SWEEP_PHANTOM_NOISE = (0.05, 0.1, 0.5)
#: phantoms under another image model than the generator's pink noise: the clean phantom blurred by a
#: Gaussian point-spread function of this σ (voxels), plus white Gaussian noise of these levels (in units of
#: the clean image's range, as the generator's ``noise``)
SWEEP_BLUR_SIGMA = 1.0
SWEEP_WHITE_NOISE = (0.15, 0.3)
#: gold fiducial beads added to the real tomogram's background (``load_hiv_tomogram(fiducials=…)``)
SWEEP_TOMOGRAM_FIDUCIALS = (4, 12)
#: additive Gaussian noise on the nuclei stack, in units of its 1st..99th percentile range
SWEEP_NUCLEI_NOISE = (0.1, 0.2)
#: additive Gaussian noise on the real tomogram (same units): a thicker sample or a lower dose than its own
SWEEP_TOMOGRAM_NOISE = (0.2, 0.4)
#: the real tomogram low-pass filtered (Gaussian σ, voxels) and resampled finer (factor): noise correlated
#: between neighbouring voxels, which the face-residual noise estimate reads far too low (round twenty-five)
SWEEP_TOMOGRAM_LOW_PASS = (0.7,)
SWEEP_TOMOGRAM_FINER = (1.5,)
#: the real tomogram as a less-binned one shows it: resampled finer (factor) with white noise added (units as
#: above): binning by b divides white noise by b^1.5, so 1.5× finer carries ~1.8× the noise per voxel, and its
#: shell is 4-5 voxels thick (round twenty-six)
SWEEP_TOMOGRAM_LESS_BINNED = ((1.5, 0.3),)


def with_gaussian_noise(case: Case, level: float, *, seed: int = 0) -> Case:
    """``case`` with white Gaussian noise of ``level`` × each volume's 1st..99th percentile range added."""
    rng = np.random.default_rng(seed)
    volumes = []
    for vol in case.volumes:
        lo, hi = np.percentile(vol.image, (1, 99))
        noise = rng.normal(0.0, level * float(hi - lo), vol.image.shape).astype(np.float32)
        volumes.append(CaseVolume(vol.image + noise, vol.levels))
    source = f"{case.source} + Gaussian noise {level:g} of the 1st..99th percentile range"
    return Case(f"{case.name} + noise {level:g}", case.kind, volumes, case.train, source=source)


def low_passed(case: Case, sigma: float) -> Case:
    """``case`` with each volume filtered by a Gaussian of ``sigma`` voxels (labels untouched): a reconstruction
    filter's or a light denoiser's correlated noise."""
    volumes = [CaseVolume(ndimage.gaussian_filter(v.image.astype(np.float32), sigma), v.levels) for v in case.volumes]
    source = f"{case.source}, low-pass filtered (Gaussian σ {sigma:g} voxel)"
    return Case(f"{case.name}, low-pass {sigma:g}", case.kind, volumes, case.train, source=source)


def resampled_finer(case: Case, factor: float) -> Case:
    """``case`` resampled ``factor`` times finer along each axis, the image trilinearly and the labels by nearest
    neighbour: a volume brought to a finer voxel size, its noise shared between neighbouring voxels."""
    volumes = []
    for vol in case.volumes:
        image = ndimage.zoom(vol.image.astype(np.float32), factor, order=1)
        levels = {level: (k, ndimage.zoom(gt, factor, order=0), names) for level, (k, gt, names) in vol.levels.items()}
        volumes.append(CaseVolume(image, levels))
    source = f"{case.source}, resampled {factor:g}× finer (trilinear)"
    return Case(f"{case.name}, {factor:g}× finer", case.kind, volumes, case.train, source=source)


def padded_to_cube(case: Case) -> Case:
    """``case`` padded to a cube (its longest side) with each volume's mean, centred, the padding labelled class 0
    (the background): what tools that want a cubic or FFT-friendly box do to a tomogram, IMOD's fill value."""
    volumes = []
    for vol in case.volumes:
        side = max(vol.image.shape)
        pad = [((side - n) // 2, side - n - (side - n) // 2) for n in vol.image.shape]
        image = np.pad(vol.image.astype(np.float32), pad, constant_values=np.float32(vol.image.mean()))
        levels = {level: (k, np.pad(gt, pad), names) for level, (k, gt, names) in vol.levels.items()}
        volumes.append(CaseVolume(image, levels))
    source = f"{case.source}, padded to a cube with its mean"
    return Case(f"{case.name} padded to a cube (mean fill)", case.kind, volumes, case.train, source=source)


def blurred_white_noise_case(*, irregular: bool, n_test: int, level: float, size: int = 50, seed: int = 0) -> Case:
    """Clean test phantoms blurred by :data:`SWEEP_BLUR_SIGMA` with white Gaussian noise of ``level`` added: the
    image model of a microscope's point-spread function and shot-like noise, not the generator's."""

    clean = phantom_case(irregular=irregular, n_train=0, n_test=n_test, size=size, seed=seed, noise=0.0)
    rng = np.random.default_rng(seed)
    volumes = [
        CaseVolume(
            ndimage.gaussian_filter(vol.image, SWEEP_BLUR_SIGMA)
            + np.float32(level) * rng.standard_normal(vol.image.shape, dtype=np.float32),
            vol.levels,
        )
        for vol in clean.volumes
    ]
    variant = "irregular" if irregular else "regular"
    source = f"{clean.source}, blurred (Gaussian σ {SWEEP_BLUR_SIGMA:g}) + white noise {level:g}"
    return Case(f"phantom ({variant}, blur + white noise {level:g})", "synthetic", volumes, None, source=source)


def sweep_cases(*, quick: bool, log=print) -> list[Case]:
    """Cases beside the suite's: the real MRI at other noise levels, with an intensity non-uniformity and at
    1 mm; the real tomogram with gold fiducials, padded to a cube, with added noise, low-pass filtered,
    resampled finer, and resampled finer with noise added (as a less-binned tomogram); phantoms at other noise
    levels and under blur + white noise; the nuclei stack with added noise. ``quick``: one level of each kind,
    one phantom each, and no finer tomogram (6 M voxels)."""
    n = 1 if quick else 2
    mri_noise = SWEEP_MRI_NOISE[1:2] if quick else SWEEP_MRI_NOISE
    phantom_noise = SWEEP_PHANTOM_NOISE[:1] if quick else SWEEP_PHANTOM_NOISE
    nuclei_noise = SWEEP_NUCLEI_NOISE[:1] if quick else SWEEP_NUCLEI_NOISE
    mri_bias = SWEEP_MRI_BIAS[-1:] if quick else SWEEP_MRI_BIAS
    fiducials = SWEEP_TOMOGRAM_FIDUCIALS[-1:] if quick else SWEEP_TOMOGRAM_FIDUCIALS
    white_noise = SWEEP_WHITE_NOISE[-1:] if quick else SWEEP_WHITE_NOISE
    tomogram_noise = SWEEP_TOMOGRAM_NOISE[:1] if quick else SWEEP_TOMOGRAM_NOISE
    finer = () if quick else SWEEP_TOMOGRAM_FINER
    less_binned = () if quick else SWEEP_TOMOGRAM_LESS_BINNED
    cases = [
        phantom_case(irregular=irregular, n_train=0, n_test=n, noise=level)
        for level in phantom_noise
        for irregular in (False, True)
    ]
    cases += [
        blurred_white_noise_case(irregular=irregular, n_test=n, level=level)
        for level in white_noise
        for irregular in (False, True)
    ]
    loaders = [(lambda level=level: load_mni_t1(noise=level), "MRI") for level in mri_noise]
    loaders += [(lambda level=level: load_mni_t1(bias=level), "MRI") for level in mri_bias]
    if not quick:
        loaders += [(lambda: load_mni_t1(1), "MRI"), (lambda: load_mni_t1(1, noise=MRI_NOISE), "MRI")]
    loaders += [(lambda n=n: load_hiv_tomogram(fiducials=n), "cryo-ET") for n in fiducials]
    for loader, kind in loaders:
        try:
            cases.append(real_case(loader, kind))
        except DatasetUnavailable as exc:
            log(f"skipping a real case: {exc}")
    try:
        tomogram = real_case(load_hiv_tomogram, "cryo-ET")
    except DatasetUnavailable as exc:
        log(f"skipping a real case: {exc}")
    else:
        cases.append(padded_to_cube(tomogram))
        cases += [with_gaussian_noise(tomogram, level) for level in tomogram_noise]
        cases += [low_passed(tomogram, sigma) for sigma in SWEEP_TOMOGRAM_LOW_PASS]
        cases += [resampled_finer(tomogram, factor) for factor in finer]
        cases += [with_gaussian_noise(resampled_finer(tomogram, factor), level) for factor, level in less_binned]
    try:
        nuclei = real_case(load_confocal_nuclei, "confocal")
    except DatasetUnavailable as exc:
        log(f"skipping a real case: {exc}")
    else:
        cases += [with_gaussian_noise(nuclei, level) for level in nuclei_noise]
    return cases
