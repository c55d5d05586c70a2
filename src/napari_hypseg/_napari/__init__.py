"""napari contributions: reader, writers, sample data and dock widgets.

The only sub-package that imports napari or Qt. Everything here is a thin
adapter over the core, registered in ``napari.yaml``.
"""
