"""How levels are clustered — declared here, free of torch, so the CLI can offer the choices cheaply.

``"mixture"`` (default): a Gaussian mixture with a spatial (Potts) prior per
level, on an intensity channel chosen from the volume's noise — the embedding
is fused in only on request (:mod:`napari_hypseg.segmentation.fusion`,
:mod:`napari_hypseg.segmentation.mixture`).
``"nested"`` / ``"flat"``: Poincaré k-means on the embedding alone, nested by
bisection or independent per level (the paper's protocol; kept for comparison).
"""

#: the one mode that reads the intensities (and so has an intensity choice)
MIXTURE_MODE = "mixture"
MODES = (MIXTURE_MODE, "nested", "flat")
DEFAULT_MODE = MIXTURE_MODE

#: the most clusters a level may have, in the CLI and the widgets alike (a label
#: volume per level is kept in memory for the slider; beyond this it stops being a
#: segmentation a person can read)
MAX_CLUSTERS = 64
#: the fewest: one cluster is no segmentation
MIN_CLUSTERS = 2
