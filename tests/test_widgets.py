"""The napari widgets, in a real viewer: train, watch the disk, segment, slide, select, export, cancel.

All tests open a real viewer (``make_napari_viewer`` + ``qtbot``); run them
under ``xvfb-run -a``. The model is tiny (5³ patches) and the volume a 24³
phantom, so a full train → segment → export flow takes a few seconds on 2
CPU cores.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, replace
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_hypseg._napari import _disk_data
from napari_hypseg._napari._disk_view import MIN_CANVAS, DiskView
from napari_hypseg._napari._export import default_folder, default_path, dialog_filter
from napari_hypseg._napari._layers import SourceInfo
from napari_hypseg._napari._session import (
    CLUSTERS_WIDGET,
    DISK_WIDGET,
    PLUGIN,
    TRAIN_WIDGET,
    get_session,
)
from napari_hypseg._napari._train_widget import limit_text, run_limit
from napari_hypseg.io import read_volume
from napari_hypseg.model import HyperbolicVAE, ModelConfig, load_model, save_checkpoint
from napari_hypseg.segmentation.pipeline import cluster_embedding
from napari_hypseg.segmentation.resample import format_voxel_size
from napari_hypseg.synthetic import make_phantom
from napari_hypseg.training import TrainEvent

pytestmark = pytest.mark.gui

TINY_MODEL = {"channels": (4, 8), "kernel_size": 3, "hidden": 16}  # 5³ patches
VOXEL_SIZE = (7.5, 6.0, 5.0)  # x, y, z in Å: anisotropic, so a lost voxel size shows
ORIGIN = (30.0, -12.0, 4.5)
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def phantom_image() -> np.ndarray:
    return make_phantom(24, seed=1).image


@pytest.fixture
def phantom_mrc(tmp_path, phantom_image):
    path = tmp_path / "cell.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(phantom_image.astype(np.float32))
        mrc.voxel_size = VOXEL_SIZE
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = ORIGIN
    return path


def dock(viewer, name):
    """Open one of our widgets the way the Plugins menu does; return the widget."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def tiny_training(widget, *, steps: int, k_max: int = 4) -> None:
    settings = widget.settings
    settings.model_overrides = dict(TINY_MODEL)
    settings.steps.setValue(steps)
    settings.batch_size.setValue(8)
    settings.device.setCurrentText("cpu")
    settings.k_max.setValue(k_max)


def wait_idle(qtbot, widget, timeout=WAIT_MS):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def wait_for_mode(qtbot, session, clusters, mode, timeout=WAIT_MS):
    """Wait until the session shows ``mode``; a timeout says what the widget showed instead (for a rare CI failure)."""
    try:
        qtbot.waitUntil(lambda: session.mode == mode, timeout=timeout)
    except qtbot.TimeoutError:
        raise AssertionError(
            f"session still in {session.mode!r} after asking for {mode!r}: box {clusters.mode.currentText()!r}, "
            f"re-clustering {'running' if clusters.busy else 'idle'}, status {clusters.status.text()!r}"
        ) from None


def wait_for_export(qtbot, panel, worker, timeout=WAIT_MS):
    # waits on the panel's own finished handler (connected before the worker started): a tiny export
    # can end before a waitSignal here would connect, and a signal emitted before then is missed
    assert worker is not None
    qtbot.waitUntil(lambda: not panel.busy, timeout=timeout)


def test_widgets_are_plugin_menu_contributions_in_workflow_order():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN)
    names = [w.display_name for w in manifest.contributions.widgets]
    assert names == [TRAIN_WIDGET, DISK_WIDGET, CLUSTERS_WIDGET]


@dataclass
class Click:
    """The fields napari's viewer mouse callbacks read from a vispy mouse event."""

    type: str
    position: tuple[float, ...]
    button: int = 1
    modifiers: tuple = ()
    dims_displayed: tuple[int, ...] = (1, 2)
    view_direction: tuple[float, ...] | None = None
    pos: tuple[int, int] = (0, 0)
    is_dragging: bool = False
    handled: bool = False


def test_train_segment_slide_select_export(make_napari_viewer, qtbot, phantom_mrc, tmp_path):
    viewer = make_napari_viewer()
    [image] = viewer.open(phantom_mrc, plugin=PLUGIN)
    clusters = dock(viewer, CLUSTERS_WIDGET)
    assert clusters.pages.currentIndex() == 0  # empty state with instructions before training
    assert "No clusters yet" in clusters.empty_label.text()
    clusters.open_train.click()  # the empty state's button docks the first widget
    docked = list(viewer.window.dock_widgets.values())
    train = dock(viewer, TRAIN_WIDGET)
    assert train in docked
    assert train.selected_layer() is image
    tiny_training(train, steps=6)

    assert train.start_training()
    assert not train.start_button.isEnabled()
    assert not train.start_training()  # a second start is refused while running
    disk = dock(viewer, DISK_WIDGET)  # opened by Start; this returns the same widget
    qtbot.waitUntil(lambda: disk.drawn_points > 0, timeout=WAIT_MS)  # live preview
    assert disk.points.live and np.count_nonzero(disk.raster()[..., 3]) > 0

    # training ends, segmentation starts by itself and fills the Clusters widget
    session = get_session(viewer)
    qtbot.waitUntil(lambda: session.result is not None and not train.busy, timeout=WAIT_MS)
    assert train.start_button.isEnabled() and train.segment_button.isEnabled()
    assert clusters.pages.currentIndex() == 1
    layer = viewer.layers["hypseg clusters"]
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)

    # the slider swaps the one live layer's data
    assert session.k_values == [2, 3, 4]
    clusters.set_k(2)
    assert len(np.unique(layer.data)) == 2
    start = time.perf_counter()
    clusters.set_k(4)
    latency_ms = 1000 * (time.perf_counter() - start)
    print(f"\nslider update 2 -> 4 on {layer.data.shape}: {latency_ms:.1f} ms")
    assert viewer.layers["hypseg clusters"] is layer
    held = len(np.unique(layer.data))  # the mixture may leave a component empty; the status then says so
    assert 2 <= held <= 4 and held == session.result.segmentation.occupied(4)
    assert (held < 4) == (f"{held} of the 4 clusters hold voxels" in clusters.status.text())
    refitted = session.result.segmentation.refitted
    assert (4 in refitted) == ("Refitted: its" in clusters.status.text())
    assert clusters.k_label.text() == "4"

    # the default is the mixture; nested and flat are computed once, in a worker, from the same
    # embedding and the real voxels, then switching is instant both ways
    assert session.mode == "mixture" == clusters.mode.currentText()
    assert session.result.segmentation.hierarchy.mode == "mixture"
    assert [clusters.mode.itemText(i) for i in range(clusters.mode.count())] == ["mixture", "nested", "flat"]
    assert "(default)" in clusters.mode.itemData(0, Qt.ItemDataRole.ToolTipRole)
    # how the levels were made is one hover away: channel, covariance, prior
    assert clusters.status.toolTip() == session.result.segmentation.clustering_summary
    assert clusters.status.toolTip().startswith("Gaussian mixture on the")
    assert session.result.data is image.data  # a reference to the source voxels, kept for re-clustering
    mixture_k4 = layer.data.copy()
    results = {}
    for mode in ("nested", "flat"):
        clusters.mode.setCurrentText(mode)
        wait_for_mode(qtbot, session, clusters, mode)
        assert session.k == 4 and len(np.unique(layer.data)) == 4
        assert session.result.segmentation.hierarchy.mode == mode
        results[mode] = session.result
    clusters.mode.setCurrentText("mixture")
    assert session.mode == "mixture"
    np.testing.assert_array_equal(layer.data, mixture_k4)
    # a mixture computed lazily from the embedding (after a nested segmentation) is the one of a full run:
    # the real voxels reach it, not a stand-in volume
    session.set_result(results["nested"], k=4)
    assert not session.has_mode("mixture")
    clusters.mode.setCurrentText("mixture")
    wait_idle(qtbot, clusters)
    assert session.mode == "mixture"
    np.testing.assert_array_equal(layer.data, mixture_k4)

    # the mixture's intensity: "auto" chose one channel from the noise; the other is computed once, in a
    # worker, and equals the core's clustering of the same embedding on that channel
    auto = session.result
    resolved = auto.segmentation.intensity.kind
    other = "raw" if resolved == "denoised" else "denoised"
    assert clusters.intensity.isEnabled() and clusters.intensity.currentText() == "auto"
    clusters.intensity.setCurrentText(resolved)  # what auto chose: the same levels, nothing to compute
    assert session.intensity == resolved and session.result.segmentation is auto.segmentation
    clusters.intensity.setCurrentText(other)
    wait_idle(qtbot, clusters)
    assert session.intensity == other
    chosen = auto.config.with_(fusion=replace(auto.config.fusion, intensity=other))
    expected = cluster_embedding(auto.segmentation.embedding, auto.model, chosen, volume=image.data)
    np.testing.assert_array_equal(layer.data, expected.labels(4))
    assert ("raw intensity" if other == "raw" else "TV-denoised") in clusters.status.toolTip()
    assert f"mixture, {other} intensity" in clusters.status.text()
    assert clusters.add_current_as_layer().name == f"cell k=4 {other}"  # its files and layers never replace auto's
    clusters.mode.setCurrentText("nested")  # the intensity is the mixture's alone
    assert session.mode == "nested" and not clusters.intensity.isEnabled()
    clusters.mode.setCurrentText("mixture")
    assert session.intensity == other and clusters.intensity.currentText() == other
    clusters.intensity.setCurrentText("auto")  # computed already: instant
    assert session.result is auto
    np.testing.assert_array_equal(layer.data, mixture_k4)

    # the disk shows the dense embedding, coloured like the labels layer
    qtbot.waitUntil(lambda: disk.points is not None and not disk.points.live, timeout=WAIT_MS)
    assert disk.drawn_points == 24**3
    ids = layer.data[np.unravel_index(disk.points.index, disk.points.shape)]
    expected = np.asarray(layer.colormap.map(ids[:50]))[:, :3]
    np.testing.assert_allclose(disk._colors[:50, :3], expected, atol=1e-6)

    # lasso on the left half of the disk -> exactly the voxels with x < 0 in the viewer
    embedding = session.result.segmentation.embedding
    disk.select_polygon(np.array([(-1.0, -1.0), (0.0, -1.0), (0.0, 1.0), (-1.0, 1.0)]))
    qtbot.waitUntil(lambda: "hypseg selection" in viewer.layers, timeout=WAIT_MS)
    selection = viewer.layers["hypseg selection"]
    np.testing.assert_array_equal(selection.data.astype(bool), embedding[..., 0] < 0)
    kept = disk.selection_to_layer()
    assert kept.name == "cell selection" and kept is not selection and kept.editable

    # clicking a voxel in the viewer rings its point on the disk
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    voxel = (12, 5, 17)
    world = tuple(image.data_to_world(voxel))
    for kind, run in (("mouse_press", mouse_press_callbacks), ("mouse_release", mouse_release_callbacks)):
        run(viewer, ReadOnlyWrapper(Click(type=kind, position=world)))
    np.testing.assert_allclose(disk._marked, embedding[voxel], atol=1e-6)

    # "Add as layer" keeps the current level as an editable copy named with k
    added = clusters.add_current_as_layer()
    assert added.name == "cell k=4" and added.editable
    np.testing.assert_array_equal(added.data, layer.data)

    # export: the file reads back on the source grid
    assert clusters.export.fmt == "mrc"  # the source's format
    assert default_path(session.result.source, 4, "mrc") == phantom_mrc.parent / "cell_k4.mrc"
    out = tmp_path / "out" / "cell_k4.mrc"
    out.parent.mkdir()
    worker = clusters.export.export_current(out)
    wait_for_export(qtbot, clusters.export, worker)
    written = read_volume(out)
    source = read_volume(phantom_mrc)
    np.testing.assert_allclose(written.affine, source.affine)
    np.testing.assert_array_equal(written.data, layer.data)

    # NIfTI from an MRC source: same grid, same world coordinates
    clusters.export.format.setCurrentIndex(1)
    assert clusters.export.fmt == "nifti"
    worker = clusters.export.export_current(tmp_path / "cell_k4.nii.gz")
    wait_for_export(qtbot, clusters.export, worker)
    nifti = read_volume(tmp_path / "cell_k4.nii.gz")
    np.testing.assert_allclose(nifti.affine, source.affine, atol=1e-5)
    np.testing.assert_array_equal(nifti.data, layer.data)

    clusters.export.format.setCurrentIndex(0)
    worker = clusters.export.export_all(tmp_path / "out")
    wait_for_export(qtbot, clusters.export, worker)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted({f"cell_k{k}.mrc" for k in range(2, 5)})
    assert clusters.export.status.text().startswith("Saved 3 files")

    # the statistics table follows the level; its CSV holds the same rows
    stats = clusters.stats
    qtbot.waitUntil(lambda: stats.rows is not None and stats.k == 4, timeout=WAIT_MS)
    assert stats.table.rowCount() == held  # one row per cluster with voxels
    assert sum(row.voxels for row in stats.rows) == 24**3
    voxel_volume = float(np.prod(VOXEL_SIZE))
    assert stats.rows[0].volume == pytest.approx(stats.rows[0].voxels * voxel_volume)
    first = layer.data == stats.rows[0].cluster
    assert stats.rows[0].mean == pytest.approx(float(image.data[first].mean()), rel=1e-5)
    assert stats.table.item(0, 1).text() == f"{stats.rows[0].voxels:,}"
    assert "Å³" in stats.table.horizontalHeaderItem(2).text()
    assert stats.default_csv_path() == phantom_mrc.parent / "cell_k4_stats.csv"
    saved = stats.save_csv(tmp_path / "cell_k4_stats.csv")
    with open(saved, newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0][:3] == ["cluster", "voxels", "volume (Å³)"] and len(table) == 1 + held
    assert [int(r[1]) for r in table[1:]] == [row.voxels for row in stats.rows]
    clusters.set_k(2)
    qtbot.waitUntil(lambda: stats.k == 2, timeout=WAIT_MS)
    assert stats.table.rowCount() == 2

    # segmenting another volume starts from a clean slate: no old selection, ring or "Saved" message
    disk._on_picked(voxel)
    other = viewer.add_image(image.data[4:20].copy(), name="other")
    train.layer_combo.setCurrentText("other")
    assert train.start_segment()
    wait_idle(qtbot, train)
    assert session.result.source.name == "other"
    assert "hypseg selection" not in viewer.layers
    assert disk._marked is None and disk.hint.text().startswith("Draw on the disk")
    assert clusters.export.status.text() == "" and clusters.export.last_written == []
    assert viewer.layers["hypseg clusters"].data.shape == other.data.shape


def test_cancel_keeps_the_partial_model(make_napari_viewer, qtbot, phantom_image, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(phantom_image, name="cell")
    train = dock(viewer, TRAIN_WIDGET)
    tiny_training(train, steps=100_000)
    train.settings.minutes.setValue(0)  # no time limit: only Cancel can stop it
    train.auto_segment.setChecked(False)
    session = get_session(viewer)

    assert train.start_training()
    qtbot.waitUntil(lambda: train.running is not None and train._last_event is not None, timeout=WAIT_MS)
    assert train.cancel_button.isEnabled()
    # progress inside the dock: a bar and the limit that ends the run
    qtbot.waitUntil(lambda: "steps end the run" in train.readout.text(), timeout=WAIT_MS)
    assert not train.progress_bar.isHidden()
    assert train.progress_bar.format().startswith("step ")
    asked = time.perf_counter()
    train.cancel()
    wait_idle(qtbot, train, timeout=10_000)
    print(f"\ncancel took {time.perf_counter() - asked:.2f} s")
    assert time.perf_counter() - asked < 5.0  # within a step (< 1 s) plus CI slack
    assert session.model is not None and not session.training
    assert "Cancelled at step" in train.status.text()
    assert train.progress_bar.isHidden()
    assert train.start_button.isEnabled() and train.segment_button.isEnabled()
    assert not train.cancel_button.isEnabled()

    saved = train.save_model(tmp_path / "partial.pt")
    assert saved.is_file()
    assert load_model(saved).voxel_size == (1.0, 1.0, 1.0)  # the layer's scale is recorded with the model
    # a saved model segments another volume without training (here binned 2×: labels come back full size)
    other = viewer.add_image(phantom_image[4:14].copy(), name="other")
    assert train.load_model(saved)
    assert "loaded from partial.pt" in train.model_label.text()
    train.layer_combo.setCurrentText("other")
    train.settings.binning.setValue(2)
    assert train.start_segment()
    wait_idle(qtbot, train)
    assert session.result is not None and session.result.source.name == "other"
    assert viewer.layers["hypseg clusters"].data.shape == other.data.shape

    # widgets meet through the session: a disk view docked late draws the current result
    late = DiskView(viewer)
    qtbot.addWidget(late)
    qtbot.waitUntil(lambda: late.points is not None and not late.points.live, timeout=WAIT_MS)
    assert late.drawn_points == 5 * 12 * 12  # one point per binned voxel
    late.select_polygon(np.array([(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]))
    qtbot.waitUntil(lambda: "hypseg selection" in viewer.layers, timeout=WAIT_MS)
    selection = viewer.layers["hypseg selection"].data
    assert selection.shape == other.data.shape and selection.all()


def start_endless_training(viewer, qtbot, image):
    """Dock the Train widget on ``image`` and start a run with no budget; return it once steps arrive."""
    viewer.add_image(image, name="cell")
    train = dock(viewer, TRAIN_WIDGET)
    tiny_training(train, steps=100_000)
    train.settings.minutes.setValue(0)
    assert train.start_training()
    qtbot.waitUntil(lambda: train._last_event is not None, timeout=WAIT_MS)
    return train


def test_closing_the_source_layer_stops_training(make_napari_viewer, qtbot, phantom_image):
    viewer = make_napari_viewer()
    train = start_endless_training(viewer, qtbot, phantom_image)
    worker = train.running.worker

    viewer.layers.remove("cell")
    wait_idle(qtbot, train, timeout=10_000)
    assert not worker.is_running
    assert train.start_button.isEnabled()
    assert "was closed" in train.status.text()


def test_opening_the_train_widget_leaves_layers_and_selection_alone(make_napari_viewer, qtbot, phantom_image):
    # the widget builds napari's first labels visual up front (a layer added and removed at once)
    viewer = make_napari_viewer()
    first = viewer.add_image(phantom_image, name="cell")
    second = viewer.add_image(phantom_image[::2], name="other")
    viewer.layers.selection.active = first
    removed = []
    viewer.layers.events.removed.connect(lambda event: removed.append(event.value.name))

    dock(viewer, TRAIN_WIDGET)

    assert [layer.name for layer in viewer.layers] == ["cell", "other"]
    assert viewer.layers.selection.active is first and second not in viewer.layers.selection
    assert removed == ["hypseg warm-up"]
    dock(viewer, CLUSTERS_WIDGET)
    assert removed == ["hypseg warm-up"]  # once per viewer


@pytest.mark.parametrize("case", ["2d", "none"])
def test_bad_input_gives_a_clear_message(make_napari_viewer, qtbot, case):
    viewer = make_napari_viewer()
    if case == "2d":
        viewer.add_image(np.random.default_rng(0).random((64, 64), dtype=np.float32), name="slice")
    train = dock(viewer, TRAIN_WIDGET)

    assert not train.start_training()
    assert not train.busy and train.start_button.isEnabled()
    text = train.status.text()
    if case == "2d":
        assert "“slice” is 2D (shape (64, 64))" in text and "3D volume" in text
    else:
        assert "No image layer" in text and "File › Open" in text
    assert not train.start_segment()  # no model yet: explained, nothing starts
    assert "No model yet" in train.status.text()


def test_closing_the_viewer_stops_training(make_napari_viewer, qtbot, phantom_image):
    viewer = make_napari_viewer()
    train = start_endless_training(viewer, qtbot, phantom_image)
    worker, job = train.running.worker, train.running.job

    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    assert job.cancelled


def test_closing_the_train_dock_cancels_training(make_napari_viewer, qtbot, phantom_image):
    from qtpy.QtWidgets import QDockWidget, QPushButton

    viewer = make_napari_viewer()
    train = start_endless_training(viewer, qtbot, phantom_image)
    worker, job = train.running.worker, train.running.job
    session = get_session(viewer)
    assert session.training and session.model is None
    dock_widget = train.parent()
    while not isinstance(dock_widget, QDockWidget):
        dock_widget = dock_widget.parent()

    dock_widget.findChild(QPushButton, "QTitleBarCloseButton").click()  # the dock's ×

    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    qtbot.waitUntil(lambda: not session.training, timeout=10_000)
    assert job.cancelled
    assert session.model is None  # the partial model of a closed panel is not installed
    assert TRAIN_WIDGET not in viewer.window.dock_widgets


def test_closing_the_train_dock_mid_segmentation_stops_it(make_napari_viewer, qtbot, tmp_path):
    import threading

    from qtpy.QtWidgets import QDockWidget, QPushButton

    from napari_hypseg.segment_modes import MAX_CLUSTERS

    viewer = make_napari_viewer()
    # big enough, and with every level up to the cap, that clustering outlasts the clicks below
    viewer.add_image(make_phantom(40, seed=2).image, name="cell")
    train = dock(viewer, TRAIN_WIDGET)
    assert train.load_model(save_checkpoint(tmp_path / "tiny.pt", HyperbolicVAE(ModelConfig(**TINY_MODEL))))
    train.settings.device.setCurrentText("cpu")
    train.settings.k_max.setValue(MAX_CLUSTERS)
    session = get_session(viewer)
    assert train.start_segment()
    worker, job = train.running.worker, train.running.job
    # progress arrives as the worker's events and reaches the dock's readout
    qtbot.waitUntil(lambda: "clustering:" in train.readout.text(), timeout=WAIT_MS)
    assert train.busy
    dock_widget = train.parent()
    while not isinstance(dock_widget, QDockWidget):
        dock_widget = dock_widget.parent()

    dock_widget.findChild(QPushButton, "QTitleBarCloseButton").click()  # the dock's ×

    # the widget is free again once the worker's finished signal is delivered, which follows is_running by an event
    qtbot.waitUntil(lambda: not worker.is_running and not train.busy, timeout=10_000)
    assert job.cancelled
    # the computation itself stops, not just the worker relaying its progress
    qtbot.waitUntil(lambda: not any(t.name == "hypseg segmentation" for t in threading.enumerate()), timeout=30_000)
    assert session.result is None and "hypseg clusters" not in viewer.layers


def test_a_clustering_chosen_while_another_is_computed_is_never_dropped(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    image = viewer.add_image(make_phantom(24, seed=3).image, name="cell")
    train = dock(viewer, TRAIN_WIDGET)
    assert train.load_model(save_checkpoint(tmp_path / "tiny.pt", HyperbolicVAE(ModelConfig(**TINY_MODEL))))
    train.settings.device.setCurrentText("cpu")
    train.settings.k_max.setValue(4)
    session = get_session(viewer)
    assert train.start_segment()
    wait_idle(qtbot, train)
    clusters = dock(viewer, CLUSTERS_WIDGET)
    assert session.mode == "mixture"

    # the user changes their mind before the first computation ends: the latest choice wins
    clusters.mode.setCurrentText("nested")
    assert clusters.busy
    clusters.mode.setCurrentText("flat")
    wait_for_mode(qtbot, session, clusters, "flat")
    wait_idle(qtbot, clusters)
    assert session.mode == "flat" == clusters.mode.currentText()
    flat = session.result
    expected = cluster_embedding(flat.segmentation.embedding, flat.model, flat.config, volume=image.data)
    np.testing.assert_array_equal(viewer.layers["hypseg clusters"].data, expected.labels(session.k))

    # ... and going back to a clustering already shown stops the computation and keeps that one
    clusters.mode.setCurrentText("nested")
    clusters.mode.setCurrentText("flat")
    wait_idle(qtbot, clusters)
    assert session.mode == "flat" == clusters.mode.currentText()
    assert session.result is flat


def test_the_status_line_names_the_compartments_cluster(make_napari_viewer, qtbot, tmp_path):
    from test_compartments import _spheres

    image, truth = _spheres(hollow=True)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="vesicles")
    train = dock(viewer, TRAIN_WIDGET)
    assert train.load_model(save_checkpoint(tmp_path / "tiny.pt", HyperbolicVAE(ModelConfig(**TINY_MODEL))))
    train.settings.device.setCurrentText("cpu")
    train.settings.k_max.setValue(4)
    assert train.start_segment()
    wait_idle(qtbot, train)
    clusters = dock(viewer, CLUSTERS_WIDGET)
    clusters.set_k(3)
    assert "Cluster 3: what the thin cluster" in clusters.status.text()
    assert "encloses" in clusters.status.toolTip()
    layer = viewer.layers["hypseg clusters"]
    assert np.mean(layer.data[truth == 2] == 3) > 0.9  # the lumens, one cluster
    clusters.set_k(2)
    assert "Cluster 3" not in clusters.status.text()

    # turned off in the settings, the same volume gets the plain mixture
    train.settings.compartments.setChecked(False)
    assert train.start_segment()
    wait_idle(qtbot, train)
    clusters.set_k(3)
    assert "Cluster 3" not in clusters.status.text() and "encloses" not in clusters.status.toolTip()


def test_settings_form_defaults_and_ranges_are_the_configs(qtbot):
    from napari_hypseg._napari._train_settings import TrainSettings
    from napari_hypseg.segment_config import SegmentConfig
    from napari_hypseg.segment_modes import MAX_CLUSTERS
    from napari_hypseg.training import TrainConfig

    settings = TrainSettings()
    qtbot.addWidget(settings)
    segment, train = SegmentConfig(), TrainConfig()
    assert (settings.k_max.minimum(), settings.k_max.maximum()) == (segment.k_min, MAX_CLUSTERS)
    assert settings.segment_config() == segment
    model_config, train_config = settings.configs()
    assert model_config == ModelConfig()
    # the form's own choices: a time budget, and a preview cadence for the device in use
    assert train_config.with_(max_minutes=None, log_every=train.log_every, preview_every=train.preview_every) == train
    settings.k_max.setValue(MAX_CLUSTERS)
    assert settings.segment_config().k_max == MAX_CLUSTERS  # the form's largest k is one the config accepts
    settings.compartments.setChecked(False)
    assert settings.segment_config() == segment.with_(k_max=MAX_CLUSTERS, compartments=False)


def step_event(step, *, elapsed, rate, total=400):
    return TrainEvent("step", step, total, elapsed_s=elapsed, steps_per_s=rate)


def test_readout_says_which_limit_ends_the_run():
    # 376 steps left at 0.4 steps/s = 940 s; a 10 min budget has 540 s left: the budget ends it
    event = step_event(24, elapsed=60.0, rate=0.4)
    assert limit_text(event, 10.0) == "the 10 min budget ends the run in 9:00 (≈ step 240 of 400)"
    limit, left, fraction = run_limit(event, 10.0)
    assert (limit, left) == ("time", 540.0) and fraction == pytest.approx(0.1)
    # with an hour, or no budget, the step count ends it first
    assert limit_text(event, 60.0) == "400 steps end the run in 15:40"
    assert limit_text(event, None) == "400 steps end the run in 15:40"
    assert run_limit(event, None)[2] == pytest.approx(24 / 400)
    # speed not known yet: a budget is the only known limit
    assert run_limit(step_event(0, elapsed=0.0, rate=0.0), 5.0)[:2] == ("time", 300.0)
    assert limit_text(step_event(0, elapsed=0.0, rate=0.0), None) == "400 steps end the run in –"


def test_zoom_to_points_keeps_the_whole_rim_in_view():
    rng = np.random.default_rng(0)
    near_rim = np.column_stack([0.96 + 0.01 * rng.standard_normal(500), 0.05 * rng.standard_normal(500)])
    central = np.column_stack([rng.uniform(0.25, 0.35, 500), rng.uniform(-0.25, -0.15, 500)])

    assert _disk_data.fit_bounds(near_rim) == _disk_data.FULL_DISK
    x0, x1, y0, y1 = _disk_data.fit_bounds(central)
    assert x1 - x0 < 0.5  # zoomed in...
    assert x0 < central[:, 0].min() and central[:, 0].max() < x1  # ...on all the points
    assert y0 < central[:, 1].min() and central[:, 1].max() < y1


def test_disk_view_is_square_enough_and_shows_its_scale(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    disk = dock(viewer, DISK_WIDGET)

    size = disk.canvas.minimumSize()
    assert (size.width(), size.height()) == (MIN_CANVAS, MIN_CANVAS) and MIN_CANVAS >= 300
    assert disk._circle.get_radius() == 1.0 and disk._circle.get_visible()
    radii = [ring.get_radius() for ring, _ in disk._rings]
    np.testing.assert_allclose(radii, np.tanh(np.array([1.0, 2.0, 3.0]) / 2))
    assert "hyperbolic distance" in disk.scale_hint.get_text()


def test_loading_a_file_that_is_not_a_model_says_what_it_is(make_napari_viewer, qtbot, phantom_mrc, tmp_path):
    viewer = make_napari_viewer()
    train = dock(viewer, TRAIN_WIDGET)
    notes = tmp_path / "notes.pt"
    notes.write_text("not a model", encoding="utf-8")

    for path, kind in ((phantom_mrc, "an MRC volume"), (notes, "a text file")):
        assert not train.load_model(path)
        text = train.status.text()
        assert f"“{path.name}” is not a napari-hypseg model" in text and kind in text
        assert "Save model…" in text and "hypseg train" in text  # what a model file is
        assert "Error" not in text  # no exception class names (UnpicklingError...)
    assert get_session(viewer).model is None


def test_file_dialogs_start_in_the_source_folder(make_napari_viewer, qtbot, phantom_mrc, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    viewer = make_napari_viewer()
    [from_file] = viewer.open(phantom_mrc, plugin=PLUGIN)
    viewer.open_sample(PLUGIN, "phantom")
    sample = viewer.layers["phantom"]
    train = dock(viewer, TRAIN_WIDGET)

    assert default_folder(SourceInfo.from_layer(from_file)) == phantom_mrc.parent
    assert default_folder(SourceInfo.from_layer(sample)) == Path.cwd() == work  # no file: not the home folder
    train.layer_combo.setCurrentText("cell")
    assert Path(train._default_model_path()) == phantom_mrc.parent / "cell_hypseg.pt"
    train.layer_combo.setCurrentText("phantom")
    assert Path(train._default_model_path()) == work / "phantom_hypseg.pt"
    # each format once, the current one first
    assert dialog_filter("mrc") == "MRC (*.mrc *.rec *.map);;NIfTI (*.nii.gz *.nii)"
    assert dialog_filter("nifti") == "NIfTI (*.nii.gz *.nii);;MRC (*.mrc *.rec *.map)"


def test_layers_segment_menu_segments_the_selected_image(
    make_napari_viewer, qtbot, phantom_image, tmp_path, menu_action
):
    viewer = make_napari_viewer()
    viewer.add_image(phantom_image, name="cell")
    other = viewer.add_image(phantom_image[:, ::-1].copy(), name="other")
    viewer.layers.selection.active = other
    session = get_session(viewer)
    action = menu_action(viewer, "Layers", "Segment", "Segment with hypseg")

    action.trigger()  # no model yet: docks the widget on the selected image, starts nothing
    train = dock(viewer, TRAIN_WIDGET)
    assert train.selected_layer() is other and not train.busy and session.result is None

    model_file = save_checkpoint(tmp_path / "tiny.pt", HyperbolicVAE(ModelConfig(**TINY_MODEL)))
    assert train.load_model(model_file)
    train.settings.k_max.setValue(3)
    viewer.layers.selection.active = viewer.layers["cell"]
    action.trigger()  # with a model: segments the selected image at once
    assert train.busy
    wait_idle(qtbot, train)
    assert session.result.source.name == "cell" and session.k_values == [2, 3]


def test_voxel_size_mismatch_warns_in_the_dock_and_resamples(make_napari_viewer, qtbot, phantom_mrc, tmp_path):
    viewer = make_napari_viewer()
    [image] = viewer.open(phantom_mrc, plugin=PLUGIN)
    train = dock(viewer, TRAIN_WIDGET)
    tiny_training(train, steps=1, k_max=3)
    assert train.voxel_note.isHidden() and train.resample.isHidden()  # no model yet
    model = HyperbolicVAE(ModelConfig(**TINY_MODEL))
    model.voxel_size = tuple(2.0 * float(v) for v in image.scale)  # trained at twice the voxel size
    assert train.load_model(save_checkpoint(tmp_path / "coarse.pt", model))
    assert not train.voxel_note.isHidden() and not train.resample.isHidden() and train.resample.isEnabled()
    text = train.voxel_note.text()
    assert format_voxel_size(image.scale) in text and format_voxel_size(model.voxel_size) in text

    train.resample.setChecked(True)
    assert train.start_segment()
    wait_idle(qtbot, train)
    session = get_session(viewer)
    assert session.result is not None, train.status.text()
    assert session.result.segmentation.embedding.shape[:3] == image.data.shape  # mapped back to the image's grid
    layer = viewer.layers["hypseg clusters"]
    assert layer.data.shape == image.data.shape
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)

    # an image at the model's voxel size: no warning, no checkbox
    viewer.add_image(np.asarray(image.data), name="matching", scale=model.voxel_size)
    train.layer_combo.setCurrentText("matching")
    assert train.voxel_note.isHidden() and train.resample.isHidden()


def _dock_frame(widget):
    """The QDockWidget napari wrapped ``widget`` in."""
    from qtpy.QtWidgets import QDockWidget

    frame = widget.parent()
    while not isinstance(frame, QDockWidget):
        frame = frame.parent()
    return frame


def test_at_1080p_with_all_three_docks_the_disk_stays_square(make_napari_viewer, qtbot, phantom_image):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1920, 1080)
    viewer.add_image(phantom_image, name="cell")
    train = dock(viewer, TRAIN_WIDGET)
    tiny_training(train, steps=2, k_max=3)
    # the usual order: Start docks the disk, the segmentation at the end docks the clusters
    assert train.start_training()
    session = get_session(viewer)
    qtbot.waitUntil(lambda: session.result is not None and not train.busy, timeout=WAIT_MS)
    clusters, disk = dock(viewer, CLUSTERS_WIDGET), dock(viewer, DISK_WIDGET)
    window = _dock_frame(disk).parentWidget()

    def laid_out() -> bool:
        return _dock_frame(clusters) in window.tabifiedDockWidgets(_dock_frame(train))

    qtbot.waitUntil(laid_out, timeout=5_000)
    qtbot.wait(50)  # the column's resize lands on the next turns of the event loop
    assert not window.tabifiedDockWidgets(_dock_frame(disk))  # the disk keeps a place of its own
    assert not clusters.visibleRegion().isEmpty()  # the dock just opened is the tab on top
    canvas = disk.canvas.size()
    assert canvas.width() >= 300 and canvas.height() >= 300, canvas
    assert 0.8 <= canvas.width() / canvas.height() <= 1.25, canvas  # square-ish, not a strip
    # a tab of the pair still shows its whole widget
    assert _dock_frame(clusters).height() >= clusters.minimumSizeHint().height()


def test_docks_the_user_moved_elsewhere_are_left_alone(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1920, 1080)
    train, disk = dock(viewer, TRAIN_WIDGET), dock(viewer, DISK_WIDGET)
    _dock_frame(train).setFloating(True)
    clusters = dock(viewer, CLUSTERS_WIDGET)
    qtbot.wait(50)
    window = _dock_frame(disk).parentWidget()
    assert not disk.share_dock_column()
    assert not window.tabifiedDockWidgets(_dock_frame(clusters)) and _dock_frame(train).isFloating()

    # docked back: the three share the column, so the pair is tabbed once...
    _dock_frame(train).setFloating(False)
    qtbot.waitUntil(lambda: _dock_frame(clusters) in window.tabifiedDockWidgets(_dock_frame(train)), timeout=5_000)
    # ...and pulled apart by the user, they stay apart
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, _dock_frame(clusters))
    qtbot.wait(50)
    assert not window.tabifiedDockWidgets(_dock_frame(clusters))
    assert not disk.share_dock_column()


def test_opening_a_tabbed_dock_again_brings_it_to_the_front(make_napari_viewer, qtbot):
    from napari_hypseg._napari._session import open_widget

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1920, 1080)
    train, disk, clusters = dock(viewer, TRAIN_WIDGET), dock(viewer, DISK_WIDGET), dock(viewer, CLUSTERS_WIDGET)
    window = _dock_frame(disk).parentWidget()
    qtbot.waitUntil(lambda: _dock_frame(clusters) in window.tabifiedDockWidgets(_dock_frame(train)), timeout=5_000)
    for name, widget, other in ((TRAIN_WIDGET, train, clusters), (CLUSTERS_WIDGET, clusters, train)):
        assert open_widget(viewer, name) is widget
        qtbot.waitUntil(lambda w=widget: not w.visibleRegion().isEmpty(), timeout=5_000)
        assert other.visibleRegion().isEmpty()
