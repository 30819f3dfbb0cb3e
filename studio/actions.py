"""The main window's actions: the action table (every menu, toolbar and shortcut action), the menus and the
toolbar made of it, the shortcut list of Help › Keyboard shortcuts, and the key filter that lets single-key
shortcuts work while a slider's spin box has the focus.

:class:`ActionsMixin` is a part of :class:`studio.main_window.MainWindow` (it uses the window's widgets and
slots); it has no state of its own.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QMessageBox

from studio import engine_api


class ActionsMixin:
    """The window's actions, menus, toolbar and shortcuts (mixed into :class:`studio.main_window.MainWindow`)."""

    def _action(self, text: str, slot: Any, shortcut: Any = None, checkable: bool = False) -> QAction:
        """One window action: its text, slot, shortcut (window-wide, named in its tooltip) and checkability."""
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.setToolTip(f"{text.rstrip('…')} ({action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})")
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        """Every action of the window (the action table), then the menus and the toolbar made of them."""
        a = self._action
        self.act_open_portrait = a("Open portrait…", self._ask_portrait, "Ctrl+Shift+O")
        self.act_open = a("Open project…", self._ask_open, QKeySequence.StandardKey.Open)
        self.act_save = a("Save project", lambda: self.save_project(), QKeySequence.StandardKey.Save)
        self.act_save_as = a("Save project as…", lambda: self.save_project(ask=True), "Ctrl+Shift+S")
        self.act_new = a("New project", self.new_project, QKeySequence.StandardKey.New)
        self.act_export = a("Export…", self.show_export, "Ctrl+E")
        self.act_expert = a("Load expert pack…", self._ask_expert)
        self.act_quit = a("Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_undo = self.doc.undo_stack.createUndoAction(self, "Undo")
        self.act_undo.setShortcut(QKeySequence("Ctrl+Z"))
        self.act_redo = self.doc.undo_stack.createRedoAction(self, "Redo")
        self.act_redo.setShortcut(QKeySequence("Ctrl+Shift+Z"))
        self.addAction(self.act_undo)
        self.addAction(self.act_redo)
        self.act_play = a("Play / pause", self.toggle_play, "Space")
        self.act_key = a("Add keyframe", lambda: self.add_keyframe(), "K")
        self.act_key_no_mask = a("Add \"no mask\" keyframe", lambda: self.add_no_mask_keyframe(), "Shift+K")
        self.act_voice_keys = a("Keyframes from the voice's tone", self.keys_from_voice)
        self.act_del_key = a("Delete keyframe", self.timeline.delete_selected, "Delete")
        tools = QActionGroup(self)
        self.act_brush = a("Brush", lambda: self.set_tool("brush"), "B", checkable=True)
        self.act_eraser = a("Eraser", lambda: self.set_tool("eraser"), "E", checkable=True)
        self.act_pan = a("Pan (no painting)", lambda: self.set_tool("pan"), "H", checkable=True)
        self.act_pan.setToolTip("Pan tool (H): a drag moves the view, a click does not paint. "
                                "The middle button pans with any tool; the wheel zooms")
        for act in (self.act_brush, self.act_eraser, self.act_pan):
            tools.addAction(act)
        self.act_zoom_in = a("Zoom in", lambda: self.zoom.zoom_in(*self._zoom_args()), QKeySequence.StandardKey.ZoomIn)
        self.act_zoom_in.setShortcuts([QKeySequence("Ctrl++"), QKeySequence("Ctrl+=")])
        self.act_zoom_out = a("Zoom out", lambda: self.zoom.zoom_out(*self._zoom_args()), "Ctrl+-")
        self.act_zoom_1 = a("Actual pixels (1:1)", lambda: self.zoom.actual_pixels(*self._zoom_args()), "Ctrl+1")
        self.act_zoom_fit = a("Fit in view", self.zoom.fit, "Ctrl+0")
        for act, short in ((self.act_pan, "Pan"), (self.act_zoom_fit, "Fit"), (self.act_zoom_1, "1:1"),
                           (self.act_key, "Key"), (self.act_play, "Play")):
            act.setIconText(short)  # the toolbar's button (the menus keep the full name)
        self.act_brush.setChecked(True)
        self.act_smaller = a("Smaller brush", lambda: self.change_radius(1 / 1.25), "[")
        self.act_bigger = a("Bigger brush", lambda: self.change_radius(1.25), "]")
        self.act_landmarks = a("Show landmarks", self._overlays_from_menu, None, checkable=True)
        self.act_prev_frame = a("Previous frame", lambda: self.step_frames(-1), ",")
        self.act_next_frame = a("Next frame", lambda: self.step_frames(1), ".")
        self.act_first_frame = a("First frame", lambda: self.set_playhead(0), "Home")
        self.act_last_frame = a("Last frame", lambda: self.set_playhead(self.timeline.num_frames - 1), "End")
        self.act_prev_key = a("Previous keyframe", lambda: self.jump_to_key(-1), "Alt+Left")
        self.act_next_key = a("Next keyframe", lambda: self.jump_to_key(1), "Alt+Right")
        self.act_shortcuts = a("Keyboard shortcuts", self.show_shortcuts, "F1")
        self.act_landmarks.setChecked(True)
        self._build_menus()
        self._build_toolbar()

    def _build_menus(self) -> None:
        """File, Edit, Tools, Animate, View and Help, from the actions."""
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        for act in (self.act_new, self.act_open, self.act_open_portrait):
            file_menu.addAction(act)
        file_menu.addAction("Open audio…", self.audio_panel._open)
        self.recent_menu = file_menu.addMenu("Recent projects")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file_menu.addSeparator()
        for act in (self.act_save, self.act_save_as, self.act_export, self.act_expert):
            file_menu.addAction(act)
        file_menu.addAction("Batch export…", self.show_batch_export)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        edit = menu.addMenu("&Edit")
        edit.addAction(self.act_undo)
        edit.addAction(self.act_redo)
        presets = edit.addMenu("Compound presets")
        for name in engine_api.COMPOUND_PRESETS:
            presets.addAction(name, lambda n=name: self.palette.apply_preset(n))
        edit.addAction("Reset mix", self.palette.reset)
        tool_menu = menu.addMenu("&Tools")
        for act in (self.act_brush, self.act_eraser, self.act_pan, self.act_smaller, self.act_bigger,
                    self.act_landmarks):
            tool_menu.addAction(act)
        anim = menu.addMenu("&Animate")
        for act in (self.act_play, self.act_key, self.act_key_no_mask, self.act_voice_keys, self.act_del_key,
                    self.act_prev_frame, self.act_next_frame,
                    self.act_first_frame, self.act_last_frame, self.act_prev_key, self.act_next_key):
            anim.addAction(act)
        view = menu.addMenu("&View")
        for act in (self.act_zoom_in, self.act_zoom_out, self.act_zoom_1, self.act_zoom_fit):
            view.addAction(act)
        view.addSeparator()
        for dock in (self.palette_dock, self.brush_dock, self.trainer_dock, self.life_dock, self.timeline_dock):
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        view.addAction("Reset layout", self.default_layout)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.act_shortcuts)

    def _build_toolbar(self) -> None:
        """The main toolbar; the undo / redo tooltips and the Ctrl+Y redo; the key filter."""
        bar = self.addToolBar("Main")
        bar.setObjectName("main_toolbar")
        bar.setMovable(False)
        for act in (self.act_open_portrait, self.act_open, self.act_save):
            bar.addAction(act)
        bar.addSeparator()
        bar.addAction(self.act_undo)
        bar.addAction(self.act_redo)
        bar.addSeparator()
        bar.addAction(self.act_brush)
        bar.addAction(self.act_eraser)
        bar.addAction(self.act_pan)
        bar.addAction(self.act_zoom_fit)
        bar.addAction(self.act_zoom_1)
        bar.addSeparator()
        bar.addAction(self.act_play)
        bar.addAction(self.act_key)
        bar.addSeparator()
        bar.addAction(self.act_export)
        self.redo_shortcut = QShortcut(QKeySequence("Ctrl+Y"), self, self.doc.undo_stack.redo)
        for act, text in ((self.act_undo, "Undo (Ctrl+Z)"), (self.act_redo, "Redo (Ctrl+Shift+Z, Ctrl+Y)")):
            act.setToolTip(text)
            act.setIconText(text.split(" ")[0])  # the toolbar button stays short ("Undo Fill mouth…" in the menu)
        self.key_button.setToolTip("Key the sliders (and masks, with Key masks on) at the playhead (K)")
        self.del_key_button.setToolTip("Delete the selected keyframe (Delete); Shift+click a key to select it")
        QApplication.instance().installEventFilter(self)  # single-key shortcuts work over spin boxes

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        """Let K, Space, B, E, [ and ] reach their shortcuts while a slider's spin box has the focus,
        and hand the focus back to the canvas after Enter (or Escape) in a spin box.

        A spin box claims every printable key for its text field; letters and brackets can never be part
        of a number, so they go to the window's shortcuts instead (the describe box keeps its letters).
        """
        if (event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent)
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape)):
            spin = obj if isinstance(obj, QAbstractSpinBox) else obj.parent() if isinstance(obj, QObject) else None
            if isinstance(spin, QAbstractSpinBox) and spin.window() is self:
                # the typed value is taken (the spin box sees Enter first), then the navigation keys
                # (Home, End, ".", Alt+Left) work again: they are number-editing keys inside a spin box
                QTimer.singleShot(0, self.focus_canvas)
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            spin = obj if isinstance(obj, QAbstractSpinBox) else obj.parent() if isinstance(obj, QObject) else None
            no_modifier = not (event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier)
            if isinstance(spin, QAbstractSpinBox) and spin.window() is self and no_modifier and (
                    Qt.Key.Key_A <= event.key() <= Qt.Key.Key_Z
                    or event.key() in (Qt.Key.Key_Space, Qt.Key.Key_BracketLeft, Qt.Key.Key_BracketRight)):
                event.ignore()
                return True
        return super().eventFilter(obj, event)

    def focus_canvas(self) -> None:
        """Give the keyboard focus to the portrait canvas (the window's shortcuts all work there)."""
        self.canvas.setFocus(Qt.FocusReason.OtherFocusReason)

    def shortcut_table(self) -> list[tuple[str, str]]:
        """(action, keys) of every action with a shortcut, as the Help menu lists them."""
        rows = []
        for act in self.actions():
            keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in act.shortcuts())
            if keys:
                name = {id(self.act_undo): "Undo", id(self.act_redo): "Redo"}.get(
                    id(act), act.text().replace("&", "").rstrip("…"))  # not "Redo Paint happiness"
                rows.append((name, keys))
        rows.append(("Redo", "Ctrl+Y"))
        return rows

    def show_shortcuts(self) -> QMessageBox:
        """Help › Keyboard shortcuts: every shortcut of the window."""
        text = "".join(f"<tr><td>{name}</td><td><b>{keys}</b></td></tr>" for name, keys in self.shortcut_table())
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts",
                          f"<table cellspacing=6>{text}</table>", QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        if self.show_dialogs:
            box.open()
        return box
