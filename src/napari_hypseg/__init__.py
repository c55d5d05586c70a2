"""napari-hypseg: unsupervised hierarchical segmentation of 3D volumes with hyperbolic VAEs.

The core (``io``, ``synthetic``, ``hyperbolic``, ``model``, ``training``,
``segmentation``) never imports Qt or napari; ``_napari`` holds the plugin
contributions and widgets on top of it.
"""

import os

# OpenMP threads that spin while waiting make small-tensor loops (k-means,
# Fréchet means) 30-240x slower when the cores are shared — with napari's GUI
# thread, with other processes. Set before torch is imported; a user's own
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
