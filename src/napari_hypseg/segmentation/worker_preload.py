"""What a dask worker imports when it starts, before its first block (``dask worker --preload`` this module).

A block task's first run on a fresh worker paid 1.3 s of imports (scikit-learn's
mixture, scikit-image's TV filter, torch and this package) on top of its own
work: on 8 volumes of 40³ the first task per worker took 4.4–4.7 s against
1.9–2.5 s for the rest (docs/scaling.md). Imported at start-up, they overlap
the cluster's own start and the client's first passes instead.
"""

from __future__ import annotations

import scipy.ndimage  # noqa: F401
import skimage.restoration  # noqa: F401
import sklearn.mixture  # noqa: F401
import torch  # noqa: F401

from . import dataset, dataset_clustering, distributed, mixture  # noqa: F401
