"""The timeline (pyqtgraph): audio waveform, playhead, emotion keyframes as coloured curves.

Keyframes are vertical handles: drag one to move it (undoable), click to select, Delete to remove.
The curves show the per-frame interpolated slider values that the export renders.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget

from studio.commands import DeleteKeyframeCommand, MoveKeyframeCommand
from studio.document import Document
from studio.keyframes import sample_curves

WAVE_TOP, WAVE_BOTTOM = -0.08, -0.62
#: The flipbook band under the waveform: frames not rendered yet show in this colour.
BAND_TOP, BAND_BOTTOM = -0.66, -0.72
BAND_COLOUR = (232, 163, 23, 200)
KEY_PEN = pg.mkPen("#c8cbd2", width=1.5, style=Qt.PenStyle.DashLine)
KEY_SELECTED_PEN = pg.mkPen("#ffffff", width=2.5)


class TimelineWidget(QWidget):
    """Waveform + playhead + keyframe curves over the clip's frames."""

    playheadMoved = Signal(int)
    keyframeSelected = Signal(int)  # uid, 0 = none

    def __init__(self, doc: Document, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.num_frames = 50
        self.fps = 25.0
        self.playhead = 0
        self.selected_uid = 0
        self._key_lines: dict[int, pg.InfiniteLine] = {}
        self._curves: list[pg.PlotDataItem] = []
        self._dots: list[pg.ScatterPlotItem] = []

        pg.setConfigOptions(antialias=True)
        self.plot = pg.PlotWidget(background="#141518")
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=False, alpha=0.15)
        self.plot.getAxis("left").setTicks([[(0.0, "0"), (0.5, ".5"), (1.0, "1")]])
        self.plot.getAxis("bottom").setLabel("frame")
        self.plot.setYRange(BAND_BOTTOM - 0.02, 1.08, padding=0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)

        self._wave_hi = pg.PlotDataItem(pen=pg.mkPen("#5d6b80", width=1))
        self._wave_lo = pg.PlotDataItem(pen=pg.mkPen("#5d6b80", width=1))
        self._wave_fill = pg.FillBetweenItem(self._wave_hi, self._wave_lo, brush=pg.mkBrush(93, 107, 128, 120))
        for item in (self._wave_hi, self._wave_lo, self._wave_fill):
            self.plot.addItem(item)
        self._wave_axis = pg.InfiniteLine(pos=(WAVE_TOP + WAVE_BOTTOM) / 2, angle=0, pen=pg.mkPen("#2b2d31"))
        self.plot.addItem(self._wave_axis)

        # frames the flipbook has not rendered yet: an amber band (one pixel per frame, stretched)
        self.band = pg.ImageItem(axisOrder="row-major")
        self.band.setZValue(5)
        self.band.setToolTip("Amber: frames not rendered yet for playback (they render in the background)")
        self.plot.addItem(self.band)
        self.uncached = np.zeros(0, bool)

        self.playhead_line = pg.InfiniteLine(
            pos=0, angle=90, movable=True, pen=pg.mkPen("#ff5c5c", width=2), hoverPen=pg.mkPen("#ff9090", width=3)
        )
        self.playhead_line.setZValue(20)
        self.playhead_line.sigPositionChanged.connect(self._playhead_dragged)
        self.plot.addItem(self.playhead_line)
        self.plot.scene().sigMouseClicked.connect(self._scene_clicked)

        doc.keyframesChanged.connect(self.refresh_keyframes)
        doc.emotionsChanged.connect(self.refresh_keyframes)
        doc.settingsChanged.connect(self.refresh_keyframes)
        self.set_num_frames(self.num_frames, self.fps)

    # --------------------------------------------------------------- model
    def set_num_frames(self, num_frames: int, fps: float) -> None:
        """Length of the clip in frames (from the prepared audio)."""
        self.num_frames = max(1, int(num_frames))
        self.fps = float(fps)
        self.playhead_line.setBounds((0, self.num_frames - 1))
        self.plot.setLimits(xMin=-2, xMax=self.num_frames + 2)  # limits first: they clamp the range
        self.plot.setXRange(0, max(1, self.num_frames - 1), padding=0.01)
        self.refresh_keyframes()

    def set_waveform(self, lo: np.ndarray | None, hi: np.ndarray | None) -> None:
        """Draw a (min, max) waveform preview across the clip (``None`` clears it)."""
        if lo is None or hi is None or len(lo) == 0:
            self._wave_hi.setData([], [])
            self._wave_lo.setData([], [])
            return
        peak = max(1e-6, float(np.max(np.abs(np.concatenate([lo, hi])))))
        mid, half = (WAVE_TOP + WAVE_BOTTOM) / 2, (WAVE_TOP - WAVE_BOTTOM) / 2
        x = np.linspace(0, self.num_frames - 1, len(lo))
        self._wave_hi.setData(x, mid + hi / peak * half)
        self._wave_lo.setData(x, mid + lo / peak * half)

    def set_audio(self, clip: Any) -> None:
        """Waveform of an engine AudioClip (or ``None``)."""
        if clip is None:
            self.set_waveform(None, None)
            return
        from studio.engine_api import waveform_preview

        self.set_waveform(*waveform_preview(clip, 1200))

    def set_playhead(self, frame: int) -> None:
        """Move the playhead without re-emitting (driven by playback)."""
        frame = int(min(max(0, frame), self.num_frames - 1))
        self.playhead = frame
        self.playhead_line.blockSignals(True)
        self.playhead_line.setValue(frame)
        self.playhead_line.blockSignals(False)

    def set_cached(self, cached: np.ndarray) -> None:
        """Show which frames the flipbook holds: uncached frames as a coloured band."""
        self.uncached = ~np.asarray(cached, bool)
        rgba = np.zeros((1, max(1, len(self.uncached)), 4), np.uint8)
        rgba[0, : len(self.uncached)][self.uncached] = BAND_COLOUR
        self.band.setImage(rgba, autoLevels=False, levels=(0, 255))
        n = max(1, len(self.uncached))
        self.band.setRect(-0.5, BAND_BOTTOM, n, BAND_TOP - BAND_BOTTOM)

    # ----------------------------------------------------------- keyframes
    def refresh_keyframes(self) -> None:
        """Redraw curves and keyframe handles from the document."""
        for item in self._curves + self._dots:
            self.plot.removeItem(item)
        self._curves, self._dots = [], []
        for line in self._key_lines.values():
            self.plot.removeItem(line)
        self._key_lines = {}
        keys = self.doc.keyframes
        curves = sample_curves(keys, self.num_frames, len(self.doc.emotions), self.doc.render.interpolation)
        x = np.arange(self.num_frames)
        for i, colour in enumerate(self.doc.colours):
            if not keys:
                break
            curve = pg.PlotDataItem(x, curves[:, i], pen=pg.mkPen(colour, width=2))
            self.plot.addItem(curve)
            self._curves.append(curve)
            kx = [k.frame for k in keys]
            ky = [k.weights[i] if i < len(k.weights) else 0.0 for k in keys]
            dots = pg.ScatterPlotItem(kx, ky, size=8, brush=pg.mkBrush(colour), pen=pg.mkPen("#141518"))
            self.plot.addItem(dots)
            self._dots.append(dots)
        for key in keys:
            label = "◆ M" if key.masks is not None else "◆ ∅" if key.no_mask else "◆"
            line = pg.InfiniteLine(
                pos=key.frame,
                angle=90,
                movable=True,
                pen=KEY_SELECTED_PEN if key.uid == self.selected_uid else KEY_PEN,
                hoverPen=pg.mkPen("#ffffff", width=3),
                label=label,
                labelOpts={"position": 0.97, "color": "#e6e6e6"},
                bounds=(0, self.num_frames - 1),
            )
            line.setZValue(10)
            line.sigPositionChangeFinished.connect(lambda ln, uid=key.uid, old=key.frame: self._key_moved(uid, old, ln))
            line.sigClicked.connect(lambda _ln, ev, uid=key.uid, frame=key.frame: self._key_clicked(uid, frame, ev))
            line.setToolTip(f"Keyframe at {key.frame}: drag to move · Shift+click or double-click to select "
                            "(Delete removes it) · a plain click moves the playhead here")
            self.plot.addItem(line)
            self._key_lines[key.uid] = line
        if self.selected_uid and self.doc.keyframe(self.selected_uid) is None:
            self.select_keyframe(0)

    def _key_clicked(self, uid: int, frame: int, event: Any) -> None:
        """A plain click on a key moves the playhead there; Shift/Ctrl+click or a double-click selects it
        (so clicking frame 0 to rewind never arms Delete for the key that sits there)."""
        mods = event.modifiers() if hasattr(event, "modifiers") else Qt.KeyboardModifier.NoModifier
        double = bool(event.double()) if hasattr(event, "double") else False
        if double or mods & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier):
            self.select_keyframe(uid)
        else:
            self.set_playhead(frame)
            self.playheadMoved.emit(frame)

    def select_keyframe(self, uid: int) -> None:
        self.selected_uid = uid
        for kuid, line in self._key_lines.items():
            line.setPen(KEY_SELECTED_PEN if kuid == uid else KEY_PEN)
        self.keyframeSelected.emit(uid)

    def delete_selected(self) -> bool:
        """Delete the selected keyframe (undoable). Returns whether one was deleted."""
        if not self.selected_uid or self.doc.keyframe(self.selected_uid) is None:
            return False
        uid = self.selected_uid
        self.selected_uid = 0
        self.doc.undo_stack.push(DeleteKeyframeCommand(self.doc, uid))
        return True

    def move_keyframe(self, uid: int, frame: int) -> None:
        """Move a keyframe to ``frame`` (undoable), as a drag would."""
        key = self.doc.keyframe(uid)
        frame = int(min(max(0, round(frame)), self.num_frames - 1))
        if key is not None and key.frame != frame:
            self.doc.undo_stack.push(MoveKeyframeCommand(self.doc, uid, key.frame, frame))

    def _key_moved(self, uid: int, old: int, line: pg.InfiniteLine) -> None:
        frame = int(round(line.value()))
        if frame != old:
            self.move_keyframe(uid, frame)
        else:
            line.setValue(old)

    def _playhead_dragged(self, line: pg.InfiniteLine) -> None:
        frame = int(round(line.value()))
        if frame != self.playhead:
            self.playhead = frame
            self.playheadMoved.emit(frame)

    def _scene_clicked(self, event: Any) -> None:
        if event.isAccepted() or event.button() != Qt.MouseButton.LeftButton:
            return
        pos = self.plot.plotItem.vb.mapSceneToView(event.scenePos())
        frame = int(round(min(max(0.0, pos.x()), self.num_frames - 1)))
        self.set_playhead(frame)
        self.playheadMoved.emit(frame)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.delete_selected():
            return
        super().keyPressEvent(event)


