"""What the package promises about itself: one version, regular packages, no side effects at import."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages

import napari_hypseg

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter on this tree's sources, without OMP_WAIT_POLICY unless given."""
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ["PYTHONPATH"] = os.pathsep.join([str(SRC), environ.get("PYTHONPATH", "")])
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300)


# Records OMP_WAIT_POLICY at the moment torch starts to load (its OpenMP runtime reads it then).
_SPY = """
import os, sys
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
        return None
sys.meta_path.insert(0, Spy())
"""


def test_version_is_written_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    citation = re.search(r"^version:\s*(\S+)\s*$", (ROOT / "CITATION.cff").read_text(), re.MULTILINE)
    assert citation is not None and citation.group(1) == napari_hypseg.__version__


def test_every_source_folder_is_a_regular_package():
    # a folder without __init__.py still lands in the wheel (setuptools finds namespace packages),
    # but its modules cannot be imported by file path, as pytest's doctest collection does
    found = set(find_packages(str(SRC)))
    folders = {
        ".".join(p.parent.relative_to(SRC).parts)
        for p in (SRC / "napari_hypseg").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert folders <= found, f"folders without __init__.py: {sorted(folders - found)}"


def test_importing_the_core_leaves_the_environment_alone():
    # torch first, so only what napari_hypseg itself does to os.environ is compared
    result = _python(
        "import os, torch\n"
        "before = dict(os.environ)\n"
        "import napari_hypseg, napari_hypseg.io, napari_hypseg.training\n"
        "import napari_hypseg.segmentation, napari_hypseg.cli\n"
        "changed = sorted(k for k in before.keys() | os.environ.keys() if before.get(k) != os.environ.get(k))\n"
        "assert not changed, changed\n"
    )
    assert result.returncode == 0, result.stderr


def test_the_command_line_sets_the_thread_policy_before_torch_loads():
    result = _python(
        _SPY + "from napari_hypseg.cli import main\n"
        "assert not seen, 'importing the CLI loaded torch'\n"
        "assert main([]) == 0\n"
        "import torch\n"  # the sub-commands import it lazily, when they run
        "print(seen)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['PASSIVE']"


def test_a_users_own_thread_policy_wins():
    result = _python(
        _SPY + "from napari_hypseg.cli import main\nmain([])\nimport torch\nprint(seen)\n", OMP_WAIT_POLICY="ACTIVE"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['ACTIVE']"


def test_the_napari_widgets_set_the_thread_policy_before_torch_loads():
    # what napari does when the user opens "1. Train and embed": import the widget's module
    result = _python(_SPY + "import napari_hypseg._napari._train_widget\nprint(seen)\n", QT_QPA_PLATFORM="offscreen")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['PASSIVE']"


def test_widget_titles_carry_no_qt_shortcut_marks():
    # Qt reads "&" in a tabbed dock's title as a shortcut mark: "Train & embed" showed as "Train _embed"
    import yaml

    manifest = yaml.safe_load((Path(__file__).parents[1] / "napari.yaml").read_text())
    titles = [w["display_name"] for w in manifest["contributions"]["widgets"]]
    assert len(titles) == 3 and not any("&" in t for t in titles), titles
