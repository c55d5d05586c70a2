"""The volumes the quality suite scores: recreated phantoms and real data with ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def phantom_case(*, irregular: bool, n_train: int, n_test: int, size: int = 50, seed: int = 0) -> Case:
    """Test phantoms (levels 1/2/3 at k = 2/4/8) and training phantoms, from the ``hypseg sample`` seeds."""
    seeds = phantom_seeds(seed, 120)
    train = [make_phantom(size, irregular=irregular, seed=s).image for s in seeds[:n_train]]
    volumes = []
    for s in seeds[100 : 100 + n_test]:
        p = make_phantom(size, irregular=irregular, seed=s)
        volumes.append(
            CaseVolume(
                p.image,
                {level: (k, p.levels[level], tuple(PHANTOM_CLASSES[level])) for level, k in PHANTOM_LEVEL_K.items()},
            )
        )
    variant = "irregular" if irregular else "regular"
    return Case(
        f"phantom ({variant})",
        "synthetic",
        volumes,
        train,
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
