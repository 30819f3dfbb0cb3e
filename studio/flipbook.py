"""The flipbook: every frame of the clip rendered in the background at preview size, kept up to date.

Animators judge a performance in motion, so the studio renders the whole clip whenever the engine
thread has nothing newer to do (:class:`studio.render_service.RenderService` asks :meth:`Flipbook.take_job`
for one frame at a time, so a slider change waits for at most one frame). Play and scrubbing show the
cached frames; the timeline shows the frames not cached yet as a band.

Each frame has a *signature*: everything that decides its pixels (the interpolated slider values, the
identity of the mask sets it blends and the blend weight, alpha, the inputs' version). An edit
recomputes the signatures (cheap: no mask is blended on the UI thread) and drops only the frames whose
signature changed, so moving one keyframe re-renders only the frames between its neighbours.

Qt-free; thread-safe (the UI thread edits, the engine thread takes jobs and stores frames).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from studio.document import GateSchedule
from studio.keyframes import Keyframe, mask_bracket, weights_at

#: Long side, in pixels, of the frames the flipbook keeps (the preview panel's size on a large screen).
FLIPBOOK_MAX_SIDE = 640
#: Zoomed in, the flipbook keeps frames up to this long side (playback at the view's resolution).
FLIPBOOK_ZOOM_MAX_SIDE = 1024
#: Signature weights are rounded to this many decimals (slider values differ by at least 0.001).
SIGNATURE_DECIMALS = 5

_serials = itertools.count(1)
_array_serials: dict[int, tuple[weakref.ref[np.ndarray], int]] = {}
_serial_lock = threading.Lock()


def array_token(array: np.ndarray) -> int:
    """A serial number naming one mask array for as long as it lives (its identity, not its content).

    Keyframe mask sets are never changed in place (edits replace them), so identity is enough and
    costs nothing, unlike hashing megabytes per edit.
    """
    with _serial_lock:
        known = _array_serials.get(id(array))
        if known is not None and known[0]() is array:
            return known[1]
        serial = next(_serials)
        _array_serials[id(array)] = (weakref.ref(array), serial)
        if len(_array_serials) > 4096:  # forget arrays that are gone
            for key in [k for k, (ref, _s) in _array_serials.items() if ref() is None]:
                del _array_serials[key]
        return serial


def downscale(image: np.ndarray, max_side: int = FLIPBOOK_MAX_SIDE) -> np.ndarray:
    """``image`` with its long side at most ``max_side`` (area-averaged), as a contiguous uint8 array."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(image, dtype=np.uint8)
    import cv2

    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def frame_signatures(schedule: GateSchedule, num_frames: int, live_masks_version: int,
                     inputs_version: Hashable = 0) -> list[tuple]:
    """One signature per frame: equal signatures mean equal frames (for the same prepared inputs)."""
    keys = schedule.keyframes
    mode = schedule.interpolation
    n = len(schedule.weights)
    live = (round_all(schedule.weights), ("live", live_masks_version, round_all(schedule.alpha)))
    out = []
    for frame in range(num_frames):
        weights = weights_at(keys, frame, mode) if keys else None
        weights_part = live[0] if weights is None else round_all((list(weights) + [0.0] * n)[:n])
        bracket = mask_bracket(keys, frame, mode) if keys else None
        if bracket is None:
            masks_part = live[1]
        else:
            left, right, u = bracket
            masks_part = (mask_token(left), round_all(left.alpha or []),
                          mask_token(right), round_all(right.alpha or []), round(u, SIGNATURE_DECIMALS))
        out.append((inputs_version, schedule.normalise, weights_part, masks_part))
    return out


def mask_token(key: Keyframe) -> int:
    """The identity of a keyframe's mask set for signatures: 0 for a "no mask" key."""
    return 0 if key.masks is None else array_token(key.masks)


def round_all(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(v), SIGNATURE_DECIMALS) for v in values)


def snapshot_schedule(schedule: GateSchedule, live_masks: np.ndarray) -> GateSchedule:
    """A copy of ``schedule`` safe to read on another thread: keyframes copied shallowly (their mask
    arrays are never changed in place), the live masks replaced by ``live_masks`` (a copy)."""
    keys = [Keyframe(k.frame, list(k.weights), k.masks, None if k.alpha is None else list(k.alpha), k.uid,
                     k.no_mask)
            for k in schedule.keyframes]
    return replace(schedule, weights=list(schedule.weights), alpha=list(schedule.alpha), keyframes=keys,
                   masks=live_masks)


@dataclass
class FlipbookJob:
    """One frame for the engine thread to render."""

    frame: int
    signature: tuple
    schedule: GateSchedule


class Flipbook:
    """Cached preview frames of the whole clip, invalidated frame by frame as edits touch them."""

    def __init__(self, max_side: int = FLIPBOOK_MAX_SIDE) -> None:
        self.max_side = int(max_side)
        self.enabled = True  # False: no background rendering (a setting; tests of the preview path)
        self.failed = False  # a frame failed to render: wait for the next edit before trying again
        self._lock = threading.Lock()
        self._frames: dict[int, tuple[tuple, np.ndarray]] = {}
        self._wanted: list[tuple] = []
        self._schedule: GateSchedule | None = None
        self._focus = 0
        self._live_version = -1
        self._live_copy: np.ndarray | None = None

    # ------------------------------------------------------------ UI thread
    def update(self, schedule: GateSchedule, num_frames: int, live_masks_version: int,
               inputs_version: Hashable = 0) -> list[int]:
        """Adopt the document's current state; returns the frames whose cached image became stale."""
        if live_masks_version != self._live_version or self._live_copy is None:
            self._live_copy = np.array(schedule.masks, np.float32, copy=True)
            self._live_version = live_masks_version
        snapshot = snapshot_schedule(schedule, self._live_copy)
        wanted = frame_signatures(snapshot, num_frames, live_masks_version, inputs_version)
        with self._lock:
            stale = [f for f, (sig, _img) in self._frames.items() if f >= num_frames or sig != wanted[f]]
            for f in stale:
                del self._frames[f]
            self._wanted, self._schedule = wanted, snapshot
            self.failed = False
        return sorted(f for f in stale if f < num_frames)

    def set_max_side(self, max_side: int) -> bool:
        """Keep frames up to ``max_side`` px long from now on (the view zoomed in: play at its resolution).

        A larger side drops the frames that were shrunk to the old one (they re-render); returns whether
        any frame was dropped.
        """
        max_side = int(max_side)
        with self._lock:
            old, self.max_side = self.max_side, max_side
            if max_side <= old:
                return False
            shrunk = [f for f, (_sig, img) in self._frames.items() if max(img.shape[:2]) >= old]
            for f in shrunk:
                del self._frames[f]
            return bool(shrunk)

    def clear(self) -> None:
        """Forget every frame (new portrait, audio or model)."""
        with self._lock:
            self._frames.clear()
            self._wanted, self._schedule = [], None

    def set_focus(self, frame: int) -> None:
        """Render from ``frame`` onwards first (the playhead)."""
        self._focus = max(0, int(frame))

    def frame(self, index: int) -> np.ndarray | None:
        """The cached image of frame ``index`` if it shows the current state, else ``None``."""
        with self._lock:
            entry = self._frames.get(int(index))
            if entry is None or index >= len(self._wanted) or entry[0] != self._wanted[index]:
                return None
            return entry[1]

    def cached(self) -> np.ndarray:
        """Boolean per frame: True where the current frame is cached."""
        with self._lock:
            out = np.zeros(len(self._wanted), bool)
            for f, (sig, _img) in self._frames.items():
                if f < len(self._wanted) and sig == self._wanted[f]:
                    out[f] = True
            return out

    @property
    def num_frames(self) -> int:
        return len(self._wanted)

    def is_complete(self) -> bool:
        return bool(self.num_frames) and bool(self.cached().all())

    # -------------------------------------------------------- engine thread
    def take_job(self) -> FlipbookJob | None:
        """The next frame to render (the first missing one from the playhead on), or ``None``."""
        with self._lock:
            if not self.enabled or self.failed or self._schedule is None or not self._wanted:
                return None
            n = len(self._wanted)
            focus = min(self._focus, n - 1)
            for f in itertools.chain(range(focus, n), range(0, focus)):
                entry = self._frames.get(f)
                if entry is None or entry[0] != self._wanted[f]:
                    return FlipbookJob(f, self._wanted[f], self._schedule)
            return None

    def store(self, job: FlipbookJob, image: np.ndarray) -> bool:
        """Keep a rendered frame if it still shows the current state; returns whether it was kept."""
        small = downscale(image, self.max_side)
        with self._lock:
            if job.frame >= len(self._wanted) or self._wanted[job.frame] != job.signature:
                return False
            self._frames[job.frame] = (job.signature, small)
            return True
