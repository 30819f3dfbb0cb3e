"""Playback in the main window: the playhead, the transport (play / pause, frame and keyframe steps), the
timeline's values at the playhead, and the flipbook (the whole clip rendered in the background at preview
size, shown while playing and at once when scrubbing).

:class:`PlaybackMixin` is a part of :class:`studio.main_window.MainWindow` (it uses the window's document,
render service, flipbook, transport and views); it has no state of its own beyond the window's ``playhead``.
"""

from __future__ import annotations

from studio.keyframes import masks_at, weights_at


class PlaybackMixin:
    """The playhead, transport and flipbook of the window (mixed into :class:`studio.main_window.MainWindow`)."""

    def refresh_flipbook(self) -> None:
        """Tell the flipbook about the document's state: frames the edit touched are re-rendered."""
        prepared = self.service.prepared_inputs
        if prepared is None or self._suspend_render:
            return
        r = self.doc.render
        self.service.flipbook_steps, self.service.flipbook_seed = r.preview_steps, r.seed
        self.service.life = self.life_config()
        stale = self.flipbook.update(self.doc.schedule(copy=False), int(prepared.num_frames), self.doc.mask_revision,
                                     (self._inputs_version, r.preview_steps, r.seed, self.service.life))
        self.flipbook.set_focus(self.playhead)
        if stale or not self.flipbook.is_complete():
            self.service.flipbook_changed()
        self.band_timer.start()

    def _flipbook_frame(self, frame: int) -> None:
        """A flipbook frame was rendered: show it when playback is on it; redraw the cached band soon."""
        if self.transport.playing and frame == self.playhead:
            self._show_flipbook_frame(frame)
        if not self.band_timer.isActive():
            self.band_timer.start()

    def _update_band(self) -> None:
        """The timeline's band of frames not rendered yet."""
        self.timeline.set_cached(self.flipbook.cached())

    def _show_flipbook_frame(self, frame: int) -> bool:
        """Show the flipbook's frame (returns False when it is not rendered yet)."""
        image = self.flipbook.frame(frame)
        if image is None:
            return False
        self._shown_request = self.service.latest_request_id  # older renders are stale from now on
        self.preview.show_result(image, self._shown_request, "flipbook", frame, 0, 0.0)
        return True

    def _clamped_playhead(self) -> int:
        """The playhead inside the prepared clip."""
        prepared = self.service.prepared_inputs
        last = max(0, int(getattr(prepared, "num_frames", 1)) - 1) if prepared is not None else 0
        return min(max(0, self.playhead), last)

    def follow_timeline(self, with_masks: bool = True, render: bool = True) -> None:
        """Set the sliders (and keyed masks) to the timeline's values at the playhead (no undo step).

        Playback passes ``with_masks=False, render=False``: the flipbook shows the frame, and blending
        full-size masks on every tick would only slow the UI thread.
        """
        keys = self.doc.state.keyframes
        if not keys:
            return
        mode = self.doc.render.interpolation
        weights = weights_at(keys, self.playhead, mode)
        keyed = masks_at(keys, self.playhead, mode, self.doc.masks.shape) if with_masks else None
        self._suspend_render = True  # one render below, not one per change
        try:
            if weights is not None:
                self.doc.set_weights(weights)
            if keyed is not None and keyed[0].shape == self.doc.masks.shape:
                self.doc.set_masks(*keyed)
        finally:
            self._suspend_render = False
        if render:
            self.schedule_render()

    def set_playhead(self, frame: int) -> None:
        """Move the playhead; with keyframes, the sliders (and keyed masks) follow the timeline.

        The flipbook's frame shows at once when it is rendered; while playing nothing else is rendered
        (the flipbook renders ahead of the playhead instead).
        """
        self.playhead = int(min(max(0, int(frame)), self.timeline.num_frames - 1))
        self.timeline.set_playhead(self.playhead)
        self.audio_panel.show_frame(self.playhead, self.timeline.fps)
        self.flipbook.set_focus(self.playhead)
        if self.transport.playing:
            self._show_flipbook_frame(self.playhead)
            self.follow_timeline(with_masks=False, render=False)
            return
        self._show_flipbook_frame(self.playhead)  # at once, when cached
        if self.doc.state.keyframes:
            self.follow_timeline()  # and renders the frame at full resolution
        else:
            self.schedule_render()

    def toggle_play(self) -> None:
        """Play from the playhead, or pause."""
        self.transport.toggle(self.playhead)

    def step_frames(self, delta: int) -> None:
        """Move the playhead by ``delta`` frames (stops playback)."""
        self.transport.stop()
        self.set_playhead(self.playhead + int(delta))

    def jump_to_key(self, direction: int) -> bool:
        """Move the playhead to the previous (-1) or next (+1) keyframe; False when there is none."""
        frames = sorted({k.frame for k in self.doc.state.keyframes})
        target = ([f for f in frames if f < self.playhead][-1:] if direction < 0
                  else [f for f in frames if f > self.playhead][:1])
        if not target:
            return False
        self.transport.stop()
        self.set_playhead(target[0])
        return True
