"""napari contributions: reader, writers, sample data and dock widgets.

The only sub-package that imports napari or Qt. Everything here is a thin
adapter over the core, registered in ``napari.yaml``.
"""

from .._threads import configure_threads

# napari imports this package only when the user calls on one of the plugin's contributions
# (discovery reads napari.yaml without importing it), and the dock widgets import torch next:
# the last moment the thread policy still takes effect. A job's start is too late, torch has
# loaded the OpenMP runtime by then.
configure_threads()
