"""napari-hypseg: unsupervised hierarchical segmentation of 3D volumes with hyperbolic VAEs.

The core (``io``, ``synthetic``, ``hyperbolic``, ``model``, ``training``,
``segmentation``) never imports Qt or napari; ``_napari`` holds the plugin
contributions and widgets on top of it.
"""

__version__ = "0.1.0"
