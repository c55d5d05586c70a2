"""How levels are clustered — declared here, free of torch, so the CLI can offer the choices cheaply.

``"mixture"`` (default): a Gaussian mixture with a spatial (Potts) prior per
level, on the hyperbolic embedding fused with an intensity channel
(:mod:`napari_hypseg.segmentation.fusion`, :mod:`napari_hypseg.segmentation.mixture`).
``"nested"`` / ``"flat"``: Poincaré k-means on the embedding alone, nested by
bisection or independent per level (the paper's protocol; kept for comparison).
"""

MODES = ("mixture", "nested", "flat")
DEFAULT_MODE = "mixture"
