"""Re-take the user guide's screenshots on the bundled phantom.

Run from the repository root, under a virtual display::

    xvfb-run -a -s "-screen 0 1600x1200x24" python docs/make_screenshots.py

It opens napari, loads File › Open Sample › napari-hypseg › Hierarchical cell
phantom, docks the three widgets from the Plugins menu, trains for a few
minutes (``--minutes``), segments, and writes PNGs to ``docs/screenshots/``
(``overview.png`` is the README's picture). ``--tomogram`` takes only the
picture of the real HIV-1 tomogram at k = 3, where the default's third
cluster is what the particles' shells enclose (docs/method.md, round fourteen).
Look at every picture before committing it.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "screenshots"
PLUGIN = "napari-hypseg"


def wait(app, condition, timeout_s: float, what: str) -> None:
    """Run the Qt event loop until ``condition()`` holds."""
    deadline = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def settle(app, seconds: float = 0.5) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def shoot(viewer, app, name: str) -> Path:
    settle(app)
    viewer.reset_view()  # docks opened since the last picture changed the canvas size
    settle(app)
    path = OUT / name
    viewer.screenshot(path=str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")
    return path


def lasso_around_a_pure_region(disk, session) -> np.ndarray:
    """A polygon (V, 2) around the core of the cluster whose core on the disk holds the fewest other clusters.

    The mixture clusters fuse the embedding with the intensity, so a cluster's
    points need not form one compact region of the disk: a hull around all of
    them can cover most of the disk. The core (the quarter of a cluster's
    points nearest its median point) is compact; the cluster whose core's
    hull is purest makes a lasso that marks one structure in the viewer.
    """
    from matplotlib.path import Path as PolygonPath
    from scipy.spatial import ConvexHull

    points = disk.points
    labels = session.current_labels()[np.unravel_index(points.index, points.shape)]
    best = None
    for cluster in np.unique(labels):
        xy = points.xy[labels == cluster].astype(float)
        if len(xy) < 120:
            continue
        distance = np.linalg.norm(xy - np.median(xy, axis=0), axis=1)
        core = xy[distance <= np.quantile(distance, 0.25)]
        hull = core[ConvexHull(core).vertices]
        centre = hull.mean(0)
        hull = centre + 1.1 * (hull - centre)
        inside = PolygonPath(hull).contains_points(points.xy)
        purity = float(np.mean(labels[inside] == cluster)) if inside.any() else 0.0
        if best is None or purity > best[0]:
            best = (purity, hull)
    if best is None:
        raise RuntimeError("no cluster has enough drawn points for a lasso")
    return best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget (default %(default)s)")
    parser.add_argument("--steps", type=int, default=600, help="training steps (default %(default)s)")
    parser.add_argument("--tomogram", action="store_true", help="only the tomogram picture (06_tomogram_k3.png)")
    args = parser.parse_args()
    if args.tomogram:
        tomogram_picture(args.steps)
        return

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_hypseg._napari._session import CLUSTERS_WIDGET, DISK_WIDGET, TRAIN_WIDGET, get_session

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-hypseg")
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1150)  # docs script: the window size is not a public setting
    viewer.open_sample(PLUGIN, "phantom")
    for layer in viewer.layers:
        if layer.name.startswith("ground truth"):
            layer.visible = False  # show the raw volume, as a user's own tomogram would look
    viewer.layers.selection.active = viewer.layers["phantom"]
    viewer.dims.set_point(0, viewer.layers[0].data_to_world((25, 0, 0))[0])
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, TRAIN_WIDGET)
    train.settings.steps.setValue(args.steps)
    train.settings.minutes.setValue(args.minutes)
    shoot(viewer, app, "01_train_widget.png")

    session = get_session(viewer)
    assert train.start_training(), train.status.text()
    started = time.perf_counter()
    wait(
        app,
        lambda: session.preview is not None and time.perf_counter() - started > 0.4 * args.minutes * 60,
        args.minutes * 60 + 120,
        "live previews",
    )
    shoot(viewer, app, "02_training_live_disk.png")

    wait(app, lambda: session.result is not None and not train.busy, args.minutes * 60 + 900, "segmentation")
    print(f"model: {session.model_info}")  # the step count the user guide quotes
    _, clusters = viewer.window.add_plugin_dock_widget(PLUGIN, CLUSTERS_WIDGET)
    _, disk = viewer.window.add_plugin_dock_widget(PLUGIN, DISK_WIDGET)
    clusters.set_k(4)
    wait(app, lambda: disk.points is not None and not disk.points.live, 120, "dense disk view")
    shoot(viewer, app, "03_clusters_k4.png")
    clusters.set_k(8)
    shoot(viewer, app, "04_clusters_k8.png")
    shutil.copyfile(OUT / "04_clusters_k8.png", OUT / "overview.png")  # the README's picture

    # lasso around one compact, mostly single-cluster region of the disk, as a user would
    disk.select_polygon(lasso_around_a_pure_region(disk, session))
    wait(app, lambda: "hypseg selection" in viewer.layers, 120, "selection layer")
    selection = viewer.layers["hypseg selection"]
    best_z = int(np.argmax(selection.data.sum(axis=(1, 2))))  # scroll to where the selection is, as a user would
    viewer.dims.set_point(0, selection.data_to_world((best_z, 0, 0))[0])
    shoot(viewer, app, "05_disk_selection.png")
    viewer.close()


def tomogram_picture(steps: int) -> None:
    """The real tomogram segmented at k = 3: background, the particles' shells, and what the shells enclose."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_hypseg._napari._session import CLUSTERS_WIDGET, TRAIN_WIDGET, get_session

    viewer = napari.Viewer(title="napari-hypseg")
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1150)
    viewer.open_sample(PLUGIN, "hiv_tomogram")
    truth = next(layer for layer in viewer.layers if layer.name.endswith("ground truth"))
    truth.visible = False
    image = next(layer for layer in viewer.layers if layer.name != truth.name)
    viewer.layers.selection.active = image
    lumen_z = int(np.argmax((np.asarray(truth.data) == truth.data.max()).sum(axis=(1, 2))))
    viewer.dims.set_point(0, image.data_to_world((lumen_z, 0, 0))[0])  # the slice with the most lumen
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, TRAIN_WIDGET)
    train.settings.steps.setValue(steps)
    train.settings.k_max.setValue(4)
    session = get_session(viewer)
    assert train.start_training(), train.status.text()
    wait(app, lambda: session.result is not None and not train.busy, 1800, "segmentation")
    _, clusters = viewer.window.add_plugin_dock_widget(PLUGIN, CLUSTERS_WIDGET)
    clusters.set_k(3)
    print(clusters.status.text())
    shoot(viewer, app, "06_tomogram_k3.png")
    viewer.close()


if __name__ == "__main__":
    main()
