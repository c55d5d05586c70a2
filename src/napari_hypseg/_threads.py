"""The OpenMP thread policy, set where work starts (the ``hypseg`` command, napari's use of the plugin).

OpenMP worker threads spin between parallel regions unless told otherwise. When
the cores are shared (with napari's GUI thread, with other processes), a loop of
many small tensor operations (k-means, Fréchet means) then runs several to tens
of times slower. The OpenMP runtime reads ``OMP_WAIT_POLICY`` once, when torch
loads it: set afterwards, the variable changes nothing in this process (child
processes, such as dask workers, still inherit it). Importing ``napari_hypseg``
leaves the environment alone; the entry points call :func:`configure_threads`
before anything imports torch.
"""

from __future__ import annotations

import os

WAIT_POLICY = "PASSIVE"


def configure_threads() -> None:
    """Let idle OpenMP threads sleep instead of spinning, unless ``OMP_WAIT_POLICY`` is set already.

    Call it before ``import torch``; a user's own setting wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
