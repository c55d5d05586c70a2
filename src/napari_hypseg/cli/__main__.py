"""``python -m napari_hypseg.cli`` = ``hypseg`` (for environments where the script is not on PATH)."""

import sys

from . import main

sys.exit(main())
