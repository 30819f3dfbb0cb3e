"""The studio's main window: wires document, palette, canvas, preview, timeline, audio, export, trainer.

Three parts of it live in their own modules, mixed into :class:`MainWindow`: the action table, menus and
shortcuts (:mod:`studio.actions`), playback (:mod:`studio.playback`: playhead, transport, flipbook) and
autosave / crash recovery (:mod:`studio.recovery`).
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio import engine_api, project_io, settings
from studio.actions import ActionsMixin
from studio.audio_panel import AudioPanel, Transport
from studio.brush import BrushSettings, fill_region
from studio.brush_panel import BrushPanel
from studio.canvas import IMAGE_SUFFIXES, PortraitCanvas
from studio.commands import AddKeyframeCommand, MaskEditCommand, SetMasksCommand
from studio.document import Document, DocumentState
from studio.engine_api import MoEEError
from studio.flipbook import FLIPBOOK_MAX_SIDE, FLIPBOOK_ZOOM_MAX_SIDE, Flipbook
from studio.keyframes import INTERPOLATIONS, Keyframe
from studio.life_panel import LifePanel
from studio.palette import PaletteWidget
from studio.playback import PlaybackMixin
from studio.preview import PreviewPanel
from studio.recovery import RecoveryMixin
from studio.render_service import RenderResult, RenderService
from studio.timeline import TimelineWidget
from studio.trainer_panel import TrainerPanel
from studio.ui_thread_gc import collect_on_ui_thread
from studio.zoom_view import ZoomModel

IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + ");;All files (*)"
PROJECT_FILTER = "MoEE projects (*.moee);;All files (*)"
_WINDOW_SERIALS = itertools.count()  # each window of a process autosaves to its own file
#: The window's comfortable size; a smaller screen gets its free area instead (1366 x 768 laptops).
WINDOW_SIZE = (1480, 920)
#: The timeline's curve area never gets shorter than this (px), and its dock starts at least this tall.
TIMELINE_MIN_HEIGHT = 120
TIMELINE_DOCK_HEIGHT = 190
PALETTE_MIN_WIDTH = 250
LOADING_MODEL = "loading model…"
PREPARING = "finding the face…"
SIDE_PANEL_MAX_WIDTH = 330


def default_brush_radius(shape: tuple[int, ...], landmarks: np.ndarray | None) -> float:
    """Default brush radius in portrait pixels: 3.5 % of the face width (a brow is about 3 radii tall).

    Without landmarks: 1.5 % of the portrait's long side. Never under 2 px.
    """
    width = engine_api.face_width(landmarks)
    if width is None or width <= 0:
        width = max(int(shape[0]), int(shape[1])) * 0.43
    return float(max(2, round(0.035 * width)))


def _scrolling(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless vertical scroll area (a dock's contents on a short screen)."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setMinimumWidth(widget.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
    return area


def _titled(title: str, widget: QWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(6, 6, 6, 6)
    label = QLabel(title)
    label.setObjectName("title")
    layout.addWidget(label)
    layout.addWidget(widget, 1)
    return box


class MainWindow(ActionsMixin, PlaybackMixin, RecoveryMixin, QMainWindow):
    """One open project. ``show_dialogs=False`` (tests, scripts) reports errors only by signal."""

    errorReported = Signal(str)
    previewShown = Signal(object)  # RenderResult (also intermediate ones during a drag)
    previewSettled = Signal(object)  # RenderResult of the newest request: the preview shows the current state
    preparedReady = Signal(object)  # PreparedInputs
    projectOpened = Signal(str)

    def __init__(
        self,
        animator: Any = None,
        model_dir: str | None = None,
        show_dialogs: bool = True,
        autosave: bool = True,
        device: str = "cpu",
        renderer: str = "portrait",
    ) -> None:
        super().__init__()
        collect_on_ui_thread()  # the engine, batch and trainer threads must never finalise this window's objects
        self._init_state(animator, device, renderer, show_dialogs)
        self._build_widgets()
        self._build_actions()
        self._connect()
        self._start_timers(autosave)
        self.default_layout()
        self._restore_window_state()

        if animator is not None:
            self._model_loaded(animator)
        else:
            self.load_model(model_dir)

    def _init_state(self, animator: Any, device: str, renderer: str, show_dialogs: bool) -> None:
        """The window's document, render service, flipbook, transport and bookkeeping (no widgets yet)."""
        self.device = device
        self.renderer = renderer  # "portrait" (own resolution) or "pixel" (the pixel model), see engine_api
        self.setWindowTitle("MoEE Studio")
        self.show_dialogs = show_dialogs
        self.doc = Document(self)
        self.brush = BrushSettings(radius=6.0)
        self.service = RenderService(animator, self)
        self.flipbook = Flipbook()
        self.service.flipbook = self.flipbook
        self._inputs_version = 0  # bumped whenever new prepared inputs arrive (flipbook frames go stale)
        self._shown_request = 0  # the newest render request whose frame is on screen
        self._pending_portrait: str | None = None  # an opened image waiting for its face check
        self._adopting = False
        self.transport = Transport(self)
        self.playhead = 0
        self.last_result: RenderResult | None = None
        self.last_error = ""
        self._dialogs: list[QWidget] = []
        self._suspend_render = False
        self._model_ready = False
        self.recovery_path = settings.recovery_file(next(_WINDOW_SERIALS))
        self.recovered_from: str | None = None  # the project a recovered (untitled) copy came from
        self._radius_portrait: tuple[str | None, tuple[int, ...]] | None = None  # portrait the brush was sized for
        self._eraser_shown = False

    def _build_widgets(self) -> None:
        """The canvas and preview (central), the side docks, the timeline dock with its key buttons."""
        self.zoom = ZoomModel(self)  # the canvas and the preview show the same part at the same zoom
        self.canvas = PortraitCanvas(self.doc, self.brush, zoom=self.zoom)
        self.preview = PreviewPanel(zoom=self.zoom)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(_titled("PORTRAIT · paint local gates", self.canvas))
        split.addWidget(self.preview)
        split.setSizes([500, 500])
        self.setCentralWidget(split)

        self.palette = PaletteWidget(self.doc)
        self.brush_panel = BrushPanel(self.doc, self.brush, engine_api.face_regions())
        self.trainer = TrainerPanel()
        self.life_panel = LifePanel(self.doc)
        self.timeline = TimelineWidget(self.doc)
        self.audio_panel = AudioPanel(self.transport)

        self.key_button = QPushButton("◆ Key (K)")
        self.no_mask_key_button = QPushButton("◇ No mask")
        self.no_mask_key_button.setToolTip("Key the sliders and \"no mask here\" at the playhead (Shift+K): "
                                           "masks keyed elsewhere fade out towards this frame")
        self.del_key_button = QPushButton("Delete")
        self.interp = QComboBox()
        self.interp.addItems(list(INTERPOLATIONS))
        self.interp.setCurrentText(self.doc.render.interpolation)
        self.key_masks = QCheckBox("Key masks")
        self.key_masks.setToolTip("New keyframes also store the painted masks")
        self.key_masks.setChecked(True)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        row.addWidget(self.audio_panel, 1)
        row.addWidget(self.key_button)
        row.addWidget(self.no_mask_key_button)
        row.addWidget(self.del_key_button)
        self.interp.setToolTip("Interpolation: how values move between keyframes")
        row.addWidget(self.interp)
        row.addWidget(self.key_masks)
        bl.addLayout(row)
        self.timeline.setMinimumHeight(TIMELINE_MIN_HEIGHT)
        bl.addWidget(self.timeline, 1)

        # the side docks scroll when the screen is short (1366 x 768): every control stays reachable
        self.palette_dock = self._dock("Emotion palette", _scrolling(self.palette), Qt.DockWidgetArea.LeftDockWidgetArea)
        self.brush_dock = self._dock("Brush", _scrolling(self.brush_panel), Qt.DockWidgetArea.RightDockWidgetArea)
        self.trainer_dock = self._dock("Custom experts", _scrolling(self.trainer), Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.brush_dock, self.trainer_dock)
        self.life_dock = self._dock("Performance", _scrolling(self.life_panel), Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.trainer_dock, self.life_dock)
        self.brush_dock.raise_()
        self.timeline_dock = self._dock("Timeline", bottom, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.model_label = QLabel("no model")
        self.statusBar().addPermanentWidget(self.model_label)
        self.palette.setMinimumWidth(PALETTE_MIN_WIDTH)
        self.brush_panel.setMaximumWidth(SIDE_PANEL_MAX_WIDTH)
        self.trainer.setMaximumWidth(SIDE_PANEL_MAX_WIDTH)

    def _start_timers(self, autosave: bool) -> None:
        """The refine delay, the flipbook band's redraw and the autosave timers."""
        self.refine_timer = QTimer(self)
        self.refine_timer.setSingleShot(True)
        self.refine_timer.timeout.connect(self.request_refine)
        self.band_timer = QTimer(self)  # redraws the timeline's "not rendered yet" band, at most 10 x/s
        self.band_timer.setSingleShot(True)
        self.band_timer.setInterval(100)
        self.band_timer.timeout.connect(self._update_band)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        interval = settings.autosave_interval_s()
        if autosave and interval > 0:
            self.autosave_timer.start(interval * 1000)

    # ---------------------------------------------------------------- building
    def default_layout(self, size: tuple[int, int] | None = None) -> None:
        """Size the window to the screen it opens on (at most the comfortable size, or ``size``) and the
        docks to it.

        On a 1366 x 768 laptop the window fits the screen's free area; the timeline keeps at least
        ``TIMELINE_MIN_HEIGHT`` px of curves and the side docks scroll.
        """
        screen = self.screen() or QApplication.primaryScreen()
        width, height = WINDOW_SIZE if size is None else size
        if screen is not None and size is None:
            free = screen.availableGeometry()
            width, height = min(width, free.width()), min(height, free.height())
            self.move(free.topLeft())
        self.resize(width, height)
        for dock in (self.palette_dock, self.brush_dock, self.trainer_dock, self.life_dock, self.timeline_dock):
            dock.show()
        self.brush_dock.raise_()
        timeline = max(TIMELINE_DOCK_HEIGHT, round(height * 0.27))
        self.resizeDocks([self.timeline_dock], [timeline], Qt.Orientation.Vertical)
        side = max(PALETTE_MIN_WIDTH + 20, min(300, round(width * 0.21)))
        self.resizeDocks([self.palette_dock, self.brush_dock], [side, side], Qt.Orientation.Horizontal)

    def fit_to_screen(self) -> None:
        """Pull a window restored from a larger screen back onto this one."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        free = screen.availableGeometry()
        frame = self.frameGeometry()
        if frame.width() > free.width() or frame.height() > free.height() or not free.intersects(frame):
            self.default_layout()

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_").lower())
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _connect(self) -> None:
        d, s = self.doc, self.service
        d.weightsChanged.connect(self.schedule_render)
        d.masksChanged.connect(lambda _i: self.schedule_render())
        for changed in (d.weightsChanged, d.masksChanged, d.emotionsChanged):
            changed.connect(self.refresh_flipbook)
        d.keyframesChanged.connect(self._timeline_edited)
        d.settingsChanged.connect(self._timeline_edited)
        self.life_panel.changed.connect(self._life_changed)
        s.flipbookFrame.connect(self._flipbook_frame)
        d.inputsChanged.connect(self.prepare_inputs)
        d.modifiedChanged.connect(lambda _m: self._update_title())
        d.settingsChanged.connect(lambda: self.interp.setCurrentText(d.render.interpolation))
        s.modelLoaded.connect(self._model_loaded)
        s.modelFailed.connect(self._model_failed)
        s.prepared.connect(self._prepared)
        s.prepareFailed.connect(self._prepare_failed)
        self.canvas.strokeFinished.connect(lambda _i: self.autokey_masks("Brush stroke"))
        s.frameReady.connect(self._frame_ready)
        s.renderFailed.connect(self._render_failed)
        s.busyChanged.connect(lambda b: self.preview.set_busy(b, "rendering…" if b else ""))
        s.textMixReady.connect(self._text_mix)
        s.textMixFailed.connect(self._text_failed)
        s.expertLoaded.connect(self._expert_loaded)
        s.expertFailed.connect(self._expert_failed)
        self.palette.describeRequested.connect(self.describe_emotion)
        self.canvas.imageDropped.connect(self.open_portrait)
        self.canvas.spaceTapped.connect(self.act_play.trigger)
        self.zoom.changed.connect(self._view_resolution_changed)
        self.brush_panel.regionFillRequested.connect(self.fill_region)
        self.brush_panel.clearRequested.connect(self.clear_masks)
        self.brush_panel.overlaysChanged.connect(self._apply_overlays)
        self.brush_panel.brushChanged.connect(self._brush_changed)
        self.timeline.playheadMoved.connect(self.set_playhead)
        self.transport.frameChanged.connect(self.set_playhead)
        self.audio_panel.openRequested.connect(self.open_audio)
        self.audio_panel.lengthChanged.connect(self.set_clip_length)
        self.audio_panel.play_button.clicked.connect(self.toggle_play)
        d.inputsChanged.connect(lambda: self._show_length())
        self.audio_panel.message.connect(self.status)
        self.transport.playingChanged.connect(lambda on: None if on else self.schedule_render())
        self.trainer.expertReady.connect(self.load_expert_pack)
        self.trainer.message.connect(self.status)
        self.key_button.clicked.connect(lambda: self.add_keyframe())
        self.no_mask_key_button.clicked.connect(lambda: self.add_no_mask_keyframe())
        self.del_key_button.clicked.connect(self.timeline.delete_selected)
        self.interp.currentTextChanged.connect(self._interp_changed)

    # ----------------------------------------------------------------- messages
    def status(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def report_error(self, text: str) -> None:
        """Show an error: status bar, ``errorReported`` signal, and (interactive) a non-modal box."""
        self.last_error = text
        self.status(text)
        self.errorReported.emit(text)
        if self.show_dialogs:
            box = QMessageBox(QMessageBox.Icon.Warning, "MoEE Studio", text, QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

    def _update_title(self) -> None:
        self.audio_panel.recorder.out_dir = self._recording_dir()
        if self.doc.path:
            name = Path(self.doc.path).name
        elif self.recovered_from:
            name = f"recovered copy of {Path(self.recovered_from).name}"
        else:
            name = "untitled"
        self.setWindowTitle(f"{name}{' •' if self.doc.is_modified() else ''} — MoEE Studio")

    # -------------------------------------------------------------------- model
    def load_model(self, model_dir: str | None) -> None:
        """Load a model folder on the worker (``None`` = bundled demo, else the tiny random model).

        The bundled model renders the portrait at its own resolution (``renderer="portrait"``).
        """
        if model_dir is None:
            model_dir = engine_api.default_model_dir() or engine_api.TINY
        self.doc.state.model_dir = model_dir
        self.trainer.base_model = model_dir
        self.model_label.setText("loading model…")
        self.service.load_model(model_dir, self.device, self.renderer)
        if self.canvas.portrait is None and self.canvas.loading_text:
            self.canvas.set_loading_text(LOADING_MODEL)

    def _model_loaded(self, animator: Any) -> None:
        self._model_ready = True
        if self.canvas.portrait is None and self.canvas.loading_text:
            self.canvas.set_loading_text(PREPARING)
        name = engine_api.animator_label(animator)
        trained = getattr(animator, "trained", True)
        self.model_label.setText(f"model: {name}{'' if trained else ' (untrained)'} · {len(animator.emotions)} experts")
        for emotion in animator.emotions:
            if emotion not in self.doc.emotions:
                self.doc.add_emotion(emotion)
        for pack in self.doc.state.expert_packs:
            if Path(pack).name.split(".")[0] not in animator.emotions:
                self.service.load_expert_pack(pack)
        if self.doc.state.portrait_path:
            self.prepare_inputs()

    def _model_failed(self, message: str) -> None:
        self.model_label.setText("no model")
        if self.canvas.loading_text:
            self.canvas.set_loading_text("model not loaded")
        self.preview.set_busy(False, "model not loaded")
        self.report_error(f"Cannot load the model: {message}")

    def load_expert_pack(self, path: str) -> None:
        """Load an expert pack (from the trainer or a file) as one more slider."""
        self.service.load_expert_pack(path)

    def _expert_failed(self, message: str) -> None:
        self.trainer.pack_refused(message)
        self.report_error(f"Cannot load the expert pack: {message}")

    def _expert_loaded(self, name: str, path: str) -> None:
        self.trainer.pack_loaded(name, path)
        if path not in self.doc.state.expert_packs:
            self.doc.state.expert_packs.append(path)
            self.doc.mark_dirty()
        self.doc.add_emotion(name)
        self.status(f"Custom expert '{name}' loaded")
        self.model_label.setText(f"{self.model_label.text().split(' · ')[0]} · {len(self.doc.emotions)} experts")

    # ------------------------------------------------------------------- inputs
    def open_portrait(self, path: str) -> bool:
        """Use an image file as the portrait (validated by the engine, prepared on the worker)."""
        try:
            image = engine_api.load_image(path)
        except MoEEError as exc:
            self.report_error(str(exc))
            return False
        if not self._model_ready:
            self.canvas.show_placeholder(image, LOADING_MODEL)  # at once; the model's arrival prepares it
            self.preview.set_busy(True, LOADING_MODEL)
            self.doc.set_input(portrait=str(Path(path).resolve()))
            return True
        # the project adopts the image only once the engine has found a face in it (see _prepared)
        self._pending_portrait = str(Path(path).resolve())
        self.preview.set_busy(True, "preparing…")
        self.service.prepare(self._pending_portrait, self.doc.state.audio_path, self.doc.state.duration)
        return True

    def _prepare_failed(self, message: str) -> None:
        """A portrait or audio the engine cannot use: say why; a rejected new portrait changes nothing,
        a project whose own inputs fail shows no face rather than the previous project's."""
        rejected = self._pending_portrait
        self._pending_portrait = None
        if rejected is not None:
            kept = self.canvas.portrait is not None
            self.preview.set_busy(False, f"{Path(rejected).name} refused · previous portrait kept" if kept
                                  else "portrait not loaded")
            self.report_error(f"Cannot use {Path(rejected).name}: {message}")
            return
        self.preview.set_busy(False, "portrait not loaded")
        self.report_error(f"Cannot use these inputs: {message}")
        self.service.drop_prepared()
        self.flipbook.clear()
        self.canvas.set_portrait(None)
        self.preview.view.set_frame(None)

    def open_audio(self, path: str) -> bool:
        """Use an audio file as the speech track."""
        try:
            clip = engine_api.load_audio(path)
        except MoEEError as exc:
            self.report_error(str(exc))
            return False
        self.audio_panel.set_track(Path(path).name, clip.duration)
        self.doc.set_input(audio=str(Path(path).resolve()))
        return True

    def prepare_inputs(self) -> None:
        """(Re)prepare portrait + audio on the worker (before the model is there: show the portrait at once)."""
        st = self.doc.state
        if st.portrait_path and not self._model_ready and self.canvas.image_size() is None:
            self._show_placeholder(st.portrait_path)
        if not st.portrait_path or not self._model_ready or self._adopting:
            return  # the model's arrival prepares the inputs
        self._pending_portrait = None
        self.preview.set_busy(True, "preparing…")
        self.service.prepare(st.portrait_path, st.audio_path, st.duration)

    def _show_placeholder(self, path: str) -> None:
        """The portrait on the canvas while the model loads (decoded here: a fraction of a second)."""
        try:
            image = engine_api.load_image(path)
        except MoEEError:
            return  # the prepare after the model load reports it
        self.canvas.show_placeholder(image, LOADING_MODEL)
        self.preview.set_busy(True, LOADING_MODEL)

    def set_clip_length(self, seconds: float) -> None:
        """Length of a clip without audio (0: a still): the timeline, playback and export follow."""
        self.doc.set_duration(seconds)

    def _show_length(self, audio_seconds: float | None = None) -> None:
        """The audio panel's length box: the audio's length (locked), or the project's for a clip without audio."""
        st = self.doc.state
        has_audio = bool(st.audio_path)
        self.audio_panel.set_length(audio_seconds if has_audio and audio_seconds else st.duration, has_audio)

    def _prepared(self, prepared: Any) -> None:
        if self._pending_portrait is not None:  # a newly opened image passed the face check: adopt it
            self._adopting = True
            try:
                self.doc.set_input(portrait=self._pending_portrait)
            finally:
                self._adopting = False
                self._pending_portrait = None
        self.canvas.set_portrait(prepared.portrait, prepared.landmarks)
        self.preview.view.reference_size = (self.canvas.image_size() if self.preview_is_final else None)
        self._size_brush(prepared)
        self.timeline.set_num_frames(prepared.num_frames, prepared.fps)
        self.timeline.set_audio(prepared.audio)
        self.transport.configure(prepared.num_frames, prepared.fps, prepared.audio)
        if prepared.audio is not None:
            self.audio_panel.set_track(Path(str(prepared.audio.source)).name, prepared.audio.duration)
        else:
            self.audio_panel.set_track(None)
        self._show_length(prepared.audio.duration if prepared.audio is not None else None)
        for warning in getattr(prepared, "warnings", []) or []:
            self.status(warning)
        self.playhead = min(self.playhead, prepared.num_frames - 1)
        self.timeline.set_playhead(self.playhead)
        self._inputs_version += 1
        self.flipbook.clear()
        self.refresh_flipbook()
        self.preparedReady.emit(prepared)
        self.schedule_render()

    def _size_brush(self, prepared: Any) -> None:
        """Give a newly opened portrait a brush sized for it (brows alone are easy to paint)."""
        key = (self.doc.state.portrait_path, tuple(prepared.portrait.shape))
        if key == self._radius_portrait:
            return  # the same portrait re-prepared (new audio, fps): keep the user's radius
        self._radius_portrait = key
        self.brush_panel.set_radius(default_brush_radius(prepared.portrait.shape, prepared.landmarks))

    # ------------------------------------------------------------------ render
    def schedule_render(self) -> int:
        """Ask for a fast preview of the playhead frame (the newest request wins). Returns its id."""
        if self._suspend_render:
            return 0
        self.refine_timer.stop()
        if self.service.prepared_inputs is None or self.canvas.portrait is None:
            return 0
        r = self.doc.render
        return self.service.request_render(self.playhead, self.doc.gates_for_frame(None), r.preview_steps, r.seed, "preview")

    @property
    def preview_is_final(self) -> bool:
        """True when a preview frame is already the export's frame (the portrait path has no sampling
        steps, so no refine pass is rendered)."""
        return not engine_api.can(self.service.animator, "sampling")

    def request_refine(self) -> int:
        """Full-quality render of the same state (after the user paused)."""
        if self.service.prepared_inputs is None:
            return 0
        r = self.doc.render
        return self.service.request_render(self.playhead, self.doc.gates_for_frame(None), r.refine_steps, r.seed, "refine")

    def _frame_ready(self, result: RenderResult) -> None:
        """Show a finished render unless something newer is on screen or the playhead moved on.

        With the live policy a drag shows every render that finishes (each newer than the last), and
        the newest request's frame always comes last.
        """
        if result.request_id <= self._shown_request or result.frame != self._clamped_playhead():
            return
        if self.transport.playing:
            return  # playback shows the flipbook
        self._shown_request = result.request_id
        self.last_result = result
        final = self.preview_is_final
        self.preview.show_result(result.image, result.request_id, result.quality, result.frame,
                                 0 if final else result.steps, result.seconds)
        self.canvas.set_gate_maps(result.gate_maps)
        self.previewShown.emit(result)
        if result.request_id == self.service.latest_request_id:
            self.previewSettled.emit(result)
        if result.quality == "preview" and not self.transport.playing and not final:
            self.refine_timer.start(self.doc.render.refine_delay_ms)

    # ---------------------------------------------------------------- life and timeline
    def life_config(self, seed: int | None = None) -> engine_api.LifeConfig:
        """The blinks, head motion and gaze of the document's render settings (with the project's seed)."""
        r = self.doc.render
        return engine_api.LifeConfig(blinks_per_minute=r.blinks_per_minute, head_motion=r.head_motion, gaze=r.gaze,
                                     seed=r.seed if seed is None else int(seed))

    def _life_changed(self) -> None:
        """Blinks, head motion or gaze changed in the panel: the preview and every flipbook frame follow (the
        flipbook's refresh hands the new settings to the render service; they are part of each frame's signature)."""
        self.refresh_flipbook()
        self.schedule_render()

    def _timeline_edited(self) -> None:
        """Keyframes or interpolation changed: the sliders (and keyed masks) show the curve at the playhead."""
        self.follow_timeline()
        self.refresh_flipbook()

    def _render_failed(self, _rid: int, message: str) -> None:
        self.preview.set_busy(False, "render failed")
        self.report_error(f"Render failed: {message}")

    # ---------------------------------------------------------------- keyframes
    def _recording_dir(self) -> Path:
        """Recordings go beside the project file (or to the temp folder for an unsaved project)."""
        if self.doc.path:
            return Path(self.doc.path).parent
        import tempfile

        return Path(tempfile.gettempdir())

    def add_keyframe(self, no_mask: bool = False) -> Keyframe:
        """Key the current sliders at the playhead (undoable).

        With "Key masks" on the key also stores the painted masks, or "no mask" when nothing is painted
        (so a mask keyed later does not leak back to this frame). ``no_mask=True`` keys "no mask here"
        whatever is painted (Animate › Add "no mask" keyframe).
        """
        masks = alpha = None
        empty = no_mask
        if self.key_masks.isChecked() and not no_mask:
            if float(self.doc.masks.max(initial=0.0)) > 0:
                masks, alpha = self.doc.masks.copy(), self.doc.alpha
            else:
                empty = True
        key = Keyframe(self.playhead, self.doc.weights, masks, alpha, no_mask=empty)
        self.doc.undo_stack.push(AddKeyframeCommand(self.doc, key))
        self.status(f"Keyframe at frame {self.playhead}{' (no mask)' if empty else ''}")
        return key

    def keys_from_voice(self) -> int:
        """"From the voice": key the sliders the audio's tone suggests (engine.voice_emotion) across the clip, as
        ordinary keyframes the user edits (one undo step). Returns how many keys were added."""
        path = self.doc.state.audio_path
        if not path:
            self.status("Open an audio clip first: the keyframes follow its tone of voice")
            return 0
        try:
            keys = engine_api.voice_emotion_keyframes(self.doc.emotions, path, self.timeline.num_frames,
                                                      self.timeline.fps)
        except MoEEError as exc:
            self.status(f"Could not read the voice: {exc}")
            return 0
        self.doc.undo_stack.beginMacro("Keyframes from the voice")
        for frame, weights in keys:
            self.doc.undo_stack.push(AddKeyframeCommand(self.doc, Keyframe(frame, weights)))
        self.doc.undo_stack.endMacro()
        self.status(f"{len(keys)} keyframes from the voice's tone (edit them on the timeline)")
        return len(keys)

    def add_no_mask_keyframe(self) -> Keyframe:
        """Key the sliders and "no mask here" at the playhead; the live masks are cleared to match (one undo step)."""
        stack = self.doc.undo_stack
        stack.beginMacro(f"Add no-mask keyframe at {self.playhead}")
        try:
            if float(self.doc.masks.max(initial=0.0)) > 0:
                stack.push(SetMasksCommand(self.doc, np.zeros_like(self.doc.masks), self.doc.alpha))
            key = self.add_keyframe(no_mask=True)
        finally:
            stack.endMacro()
        return key

    def autokey_active(self) -> bool:
        """True when a mask edit is keyed at the playhead at once (keyframes exist and "Key masks" is on)."""
        return self.key_masks.isChecked() and bool(self.doc.state.keyframes)

    def autokey_masks(self, what: str) -> Keyframe | None:
        """Auto-key: with keyframes and "Key masks" on, a mask edit is keyed at the playhead at once.

        Otherwise moving the playhead would replace the edit with the keyed masks and lose it. Callers
        wrap the edit and this key in one undo macro, so one undo takes both back.
        """
        if not self.autokey_active():
            return None
        key = self.add_keyframe()
        self.status(f"{what} keyed at frame {self.playhead} (auto-key: Key masks is on)")
        return key

    def _interp_changed(self, mode: str) -> None:
        if mode in INTERPOLATIONS and mode != self.doc.render.interpolation:
            self.doc.render.interpolation = mode
            self.doc.mark_dirty()
            self.timeline.refresh_keyframes()

    # -------------------------------------------------------------------- brush
    def set_tool(self, tool: str) -> None:
        """``"brush"``, ``"eraser"`` or ``"pan"`` (a drag on the portrait moves the view, paints nothing)."""
        if tool == "pan":
            self.act_pan.setChecked(True)
            self.canvas.set_pan_tool(True)
            return
        self.brush_panel.set_eraser(tool == "eraser")
        (self.act_eraser if tool == "eraser" else self.act_brush).setChecked(True)
        self.canvas.set_pan_tool(False)

    def _zoom_args(self) -> tuple[tuple[float, float], tuple[int, int]]:
        """(view size, image size) for the zoom actions: the canvas's (the preview shares its zoom)."""
        size = self.canvas.image_size() or (1, 1)
        return (float(self.canvas.width()), float(self.canvas.height())), size

    def change_radius(self, factor: float) -> None:
        self.brush_panel.set_radius(max(1.0, self.brush.radius * factor + (0.5 if factor > 1 else -0.5)))

    def _brush_changed(self) -> None:
        if self.act_pan.isChecked() and self.brush.eraser == self._eraser_shown:
            self.canvas.update()  # a new radius or value: the pan tool stays
            return
        self._eraser_shown = self.brush.eraser
        (self.act_eraser if self.brush.eraser else self.act_brush).setChecked(True)
        self.canvas.set_pan_tool(False)

    def _view_resolution_changed(self) -> None:
        """Zoomed in (or a larger view), the flipbook keeps frames at the view's resolution for playback."""
        view = self.preview.view
        rect, size = view.image_rect(), view.image_size()
        if rect is None or size is None:
            return
        drawn = max(rect.width(), rect.height()) * view.devicePixelRatioF()
        full = max(size)
        side = FLIPBOOK_MAX_SIDE if drawn <= FLIPBOOK_MAX_SIDE * 1.05 else min(FLIPBOOK_ZOOM_MAX_SIDE, full)
        if side > self.flipbook.max_side and self.flipbook.set_max_side(side):
            self.refresh_flipbook()

    def _apply_overlays(self) -> None:
        self.canvas.show_masks = self.brush_panel.show_masks.isChecked()
        on = self.brush_panel.show_landmarks.isChecked()
        self.canvas.show_landmarks = self.canvas.show_face_box = on
        self.act_landmarks.setChecked(on)
        self.canvas.set_heat_emotion(self.brush_panel.heat_emotion())

    def _overlays_from_menu(self) -> None:
        self.brush_panel.show_landmarks.setChecked(self.act_landmarks.isChecked())

    def fill_region(self, region: str) -> bool:
        """Fill a landmark region of the brush emotion's mask (undoable)."""
        landmarks = self.canvas.landmarks
        if landmarks is None or self.canvas.portrait is None:
            self.report_error("No face landmarks were found in this portrait, so region presets are unavailable.")
            return False
        h, w = self.doc.masks.shape[1:]
        try:
            region_mask = engine_api.region_mask(landmarks, region, h, w)
        except MoEEError as exc:
            self.report_error(str(exc))
            return False
        i = self.brush.emotion
        before = self.doc.masks[i].copy()
        after = fill_region(before, region_mask, self.brush.value, self.brush.eraser)
        with self._autokeyed_edit(f"Fill {region}"):
            self.doc.undo_stack.push(MaskEditCommand(self.doc, i, before, after, f"Fill {region}"))
        return True

    def clear_masks(self) -> None:
        masks = self.doc.masks
        with self._autokeyed_edit("Clear masks"):
            self.doc.undo_stack.push(SetMasksCommand(self.doc, np.zeros_like(masks), self.doc.alpha))

    @contextlib.contextmanager
    def _autokeyed_edit(self, what: str) -> Any:
        """A mask edit and its auto-key (when active) as one undo step."""
        stack = self.doc.undo_stack
        keyed = self.autokey_active()
        if keyed:
            stack.beginMacro(f"{what} (keyed at frame {self.playhead})")
        try:
            yield
            if keyed:
                self.autokey_masks(what)
        finally:
            if keyed:
                stack.endMacro()

    # --------------------------------------------------------------- text mix
    def describe_emotion(self, text: str) -> None:
        """Set the sliders from a description (the engine's text model runs on the worker)."""
        if self.service.animator is None:
            self.palette.describe_done()
            self.report_error("No model is loaded yet.")
            return
        self._describe_text = text
        self.status(f"Reading '{text}'…")
        self.service.emotion_from_text(text)

    def _text_mix(self, mix: dict[str, float]) -> None:
        text = getattr(self, "_describe_text", "")
        message = engine_api.read_emotion_text(text).message if text.strip() else ""  # cached: the worker read it already
        self.palette.describe_done(message)
        self.palette.apply_mix(mix, f"Describe: {text}")
        if message:
            self.status(message)

    def _text_failed(self, message: str) -> None:
        """The text was not read as an emotion: say so beside the box; the sliders stay as they are."""
        self.palette.describe_done(message, understood=False)
        self.status(f"Cannot read the description: {message}")

    # ------------------------------------------------------------------ export
    def show_export(self) -> Any:
        from studio.export_dialog import ExportDialog

        if self.service.prepared_inputs is None:
            self.report_error("Open a portrait before exporting.")
            return None
        dialog = ExportDialog(self, self)
        dialog.exported.connect(lambda p: self.status(f"Exported {p}"))
        self._dialogs.append(dialog)
        if self.show_dialogs:
            dialog.open()
        return dialog

    def show_batch_export(self) -> Any:
        """File > Batch export…: many clips with this project's settings (studio/batch_dialog.py)."""
        from studio.batch_dialog import BatchDialog

        dialog = BatchDialog(self, self)
        dialog.finished_batch.connect(lambda _ok, message: self.status(message))
        self._dialogs.append(dialog)
        if self.show_dialogs:
            dialog.open()
        return dialog

    # ---------------------------------------------------------------- projects
    def new_project(self) -> None:
        if not self._confirm_discard():
            return
        state = DocumentState(model_dir=self.doc.state.model_dir)
        self._load_state(state, None)  # keeps the loaded model's custom experts as sliders
        self.canvas.set_portrait(None)
        self.preview.view.set_frame(None)
        self._update_title()

    def open_project(self, path: str) -> bool:
        """Open a project; on any problem report it and leave the current document unchanged.

        Then offer the autosaved work of a studio that crashed while editing this project.
        """
        try:
            state = project_io.load_project(path)
        except MoEEError as exc:
            self.report_error(f"Cannot open {Path(path).name}: {exc}")
            return False
        except Exception as exc:
            self.report_error(f"Cannot open {Path(path).name}: unexpected {type(exc).__name__}: {exc}")
            return False
        self._load_state(state, str(Path(path).resolve()))
        settings.add_recent_file(path)
        self.projectOpened.emit(str(path))
        self.offer_recovery(path)
        return True

    def _load_state(self, state: DocumentState, path: str | None) -> None:
        self.recovered_from = None
        self._drop_own_recovery()  # the previous document's unsaved work was discarded on purpose
        animator = self.service.animator
        if animator is not None:
            for name in animator.emotions:
                if name not in state.emotions:
                    state.emotions.append(name)
                    state.weights.append(0.0)
                    state.alpha.append(1.0)
        self.playhead = 0  # a project opens at its first frame, the sliders showing the curve there
        self.timeline.set_playhead(0)
        self.doc.load_state(state, path)
        self.palette.rebuild()
        loaded = set(animator.emotions) if animator is not None else set()
        for pack in state.expert_packs:
            if animator is not None and Path(pack).name.split(".")[0] not in loaded:
                self.service.load_expert_pack(pack)
        if state.model_dir and state.model_dir != self.doc.state.model_dir and animator is None:
            self.load_model(state.model_dir)
        self._update_title()

    def save_project(self, path: str | None = None, ask: bool = False) -> bool:
        """Save to ``path`` (or the current file; asks for one when needed and dialogs are on)."""
        if path is None:
            path = self.doc.path  # None for a recovered copy: it is saved only where the user says
        if path is None or ask:
            if not self.show_dialogs:
                return False
            suggestion = path or self.recovered_from or "untitled.moee"
            path, _ = QFileDialog.getSaveFileName(self, "Save project", suggestion, PROJECT_FILTER)
            if not path:
                return False
            if not path.endswith(project_io.SUFFIX):
                path += project_io.SUFFIX
        try:
            project_io.save_project(self.doc.state, path)
        except MoEEError as exc:
            self.report_error(str(exc))
            return False
        self.doc.mark_saved(str(Path(path).resolve()))
        self.recovered_from = None
        self._drop_own_recovery()  # the save holds everything: never offer an older autosave over it
        settings.add_recent_file(path)
        self._update_title()
        self.status(f"Saved {Path(path).name}")
        return True

    def _confirm_discard(self) -> bool:
        """Ask about unsaved changes: Save (then go on only if it saved), Discard, or Cancel."""
        if not self.doc.is_modified() or not self.show_dialogs:
            return True
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(self, "Unsaved changes", "Save the changes to this project first?",
                                      buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
        if answer == buttons.Save:
            return self.save_project()
        return answer == buttons.Discard

    # ------------------------------------------------------------- file dialogs
    def _ask_portrait(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open portrait", "", IMAGE_FILTER)
        if path:
            self.open_portrait(path)

    def _ask_open(self) -> None:
        if not self._confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open project", "", PROJECT_FILTER)
        if path:
            self.open_project(path)

    def _ask_expert(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load expert pack", "", "Expert packs (*.safetensors)")
        if path:
            self.load_expert_pack(path)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = settings.recent_files()
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for f in files:
            self.recent_menu.addAction(f, lambda f=f: self._confirm_discard() and self.open_project(f))

    # -------------------------------------------------------------- lifecycle
    def _restore_window_state(self) -> None:
        s = settings.make_settings()
        geometry = s.value("window/geometry")
        state = s.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state)
        self.fit_to_screen()

    def save_window_state(self) -> None:
        s = settings.make_settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.sync()

    def shutdown(self) -> None:
        """Stop timers and the worker; a clean exit removes the recovery file."""
        self.autosave_timer.stop()
        self.refine_timer.stop()
        self.transport.stop()
        for dialog in self._dialogs:
            job = getattr(dialog, "job", None)
            if job is not None and job.isRunning():
                job.cancel()
                job.wait(10_000)
        self.service.shutdown()
        self.trainer.shutdown()  # a running training stops with a checkpoint (Resume continues it)
        self._drop_own_recovery()  # only this window's file: other instances keep theirs

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._confirm_discard():
            event.ignore()
            return
        self.save_window_state()
        self.shutdown()
        event.accept()
