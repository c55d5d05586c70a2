"""Sample data: the hierarchical cell phantom with its three levels of ground truth."""

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


def _phantom_layers(*, irregular: bool) -> list[LayerData]:
    from ..synthetic import make_phantom  # noqa: PLC0415 - generated only when asked for

    sample = make_phantom(50, irregular=irregular, seed=0)
    affine = np.diag([*map(float, sample.voxel_size), 1.0])
    title = "phantom (irregular)" if irregular else "phantom"
    volume = Volume(data=sample.image, affine=affine, format="array", metadata={"name": title})
    image_kwargs = volume_layer_kwargs(volume)
    layers: list[LayerData] = [(sample.image, image_kwargs, "image")]
    for level in sorted(sample.levels):
        names = list(sample.class_names[level])
        kwargs = {
            **image_kwargs,
            "name": f"ground truth level {level}",
            "metadata": {**image_kwargs["metadata"], "level": level, "class_names": names},
            # Shown in the status bar when hovering a voxel.
            "features": {"index": list(range(len(names))), "class": names},
            "visible": level == _VISIBLE_LEVEL,
        }
        layers.append((sample.levels[level], kwargs, "labels"))
    return layers
