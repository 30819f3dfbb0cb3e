"""Rendering off the UI thread: the engine thread, newest request wins, stale work cancelled.

The UI posts requests; the engine thread (:mod:`studio.engine_thread`, a one-thread QThreadPool)
runs them one at a time against the engine's animator (``PortraitAnimator`` by default: frames at
the portrait's own resolution; the pixel model's ``Animator`` with ``--renderer pixel`` or the tiny model):

* *tasks* (load model, prepare portrait+audio, text -> mix, load expert pack) run in order;
* *renders* keep only the newest request, with the live policy artists know from Krita AI
  Diffusion: a new request replaces any that has not started, but lets a running *preview* finish
  (so a slider drag shows a frame about every render time instead of nothing until release); a
  running refine or flipbook frame is cancelled through its engine ``CancelToken``;
* *flipbook frames* (:mod:`studio.flipbook`) fill the idle time, one frame per turn, so any request
  waits for at most one frame. Results come back as Qt signals (queued to the UI thread).

Every engine call holds :attr:`RenderService.engine_lock`, which the export job shares.
"""

from __future__ import annotations

import collections
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from studio import engine_api
from studio.engine_api import CancelledError, MoEEError
from studio.engine_thread import run_on_engine_thread
from studio.flipbook import Flipbook, FlipbookJob

#: How long :meth:`RenderService.shutdown` waits for the engine thread to leave the service.
SHUTDOWN_WAIT_MS = 10_000


@dataclass
class RenderRequest:
    """One preview frame to render."""

    frame: int
    gates: Any  # engine GateControl
    steps: int
    seed: int
    quality: str = "preview"  # "preview" (fast) or "refine" (full quality)
    request_id: int = 0


@dataclass
class RenderResult:
    """A finished preview frame."""

    request_id: int
    frame: int
    image: np.ndarray  # H x W x 3 uint8
    gate_maps: np.ndarray | None  # (E, H, W) the model's local gates s, for heat maps
    quality: str
    steps: int
    seconds: float
    gates: Any = field(default=None, repr=False)


class RenderService(QObject):
    """Owns the animator and the prepared inputs; renders on a worker thread."""

    modelLoaded = Signal(object)  # animator
    modelFailed = Signal(str)
    prepared = Signal(object)  # PreparedInputs
    prepareFailed = Signal(str)
    renderStarted = Signal(int, str)  # request id, quality
    frameReady = Signal(object)  # RenderResult
    renderCancelled = Signal(int)  # request id (superseded before or while running)
    renderFailed = Signal(int, str)
    busyChanged = Signal(bool)
    flipbookFrame = Signal(int)  # a frame of the flipbook was rendered and cached
    textMixReady = Signal(object)  # dict[str, float]
    textMixFailed = Signal(str)
    expertLoaded = Signal(str, str)  # emotion name, pack path
    expertFailed = Signal(str)

    def __init__(self, animator: Any = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.animator = animator
        self.prepared_inputs: Any = None
        self.engine_lock = threading.RLock()
        self._cond = threading.Condition()
        self._tasks: collections.deque[tuple[str, Callable[[], None]]] = collections.deque()
        self._pending: RenderRequest | None = None
        self._running: RenderRequest | None = None
        self._running_token: Any = None
        self._next_id = 0
        self._stop = False
        self._busy = False
        self._scheduled = False  # a drain job is queued or running on the engine thread
        self.flipbook: Flipbook | None = None  # background render of the whole clip (set by the window)
        self.flipbook_steps = 4
        self.flipbook_seed = 0
        #: Blinks, head motion and gaze of every frame rendered from now on (set from the UI thread; each
        #: render applies it to the prepared inputs under the engine lock).
        self.life: engine_api.LifeConfig | None = None

    # ------------------------------------------------------------ requests
    def load_model(self, model_dir: str | None, device: str = "cpu", renderer: str = "portrait") -> None:
        """Load a model folder on the worker (``"tiny"`` = random tiny model; ``renderer`` see engine_api)."""

        def task() -> None:
            try:
                engine_api.configure_threads()  # every core renders (the engine releases the GIL in its kernels)
                animator = engine_api.load_animator(model_dir, device=device, renderer=renderer)
                engine_api.warm_up()
            except Exception as exc:
                self._emit(self.modelFailed, _message(exc))
                return
            with self.engine_lock:
                self.animator = animator
                self.prepared_inputs = None
            self._emit(self.modelLoaded, animator)

        self._post("load_model", task)

    def prepare(self, portrait: Any, audio: Any = None, duration: float | None = None) -> None:
        """Prepare (cache) a portrait and audio track; emits ``prepared`` or ``prepareFailed``.

        Without audio, ``duration`` seconds (None: a still) set the clip's length. A render of the
        previous inputs that is still pending or running is cancelled.
        """
        self.cancel_render()

        def call(animator: Any) -> Any:
            self.prepared_inputs = engine_api.prepare_inputs(animator, portrait, audio, duration)
            return self.prepared_inputs

        self._post_engine_call("prepare", call, lambda p: self._emit(self.prepared, p), self.prepareFailed)

    def drop_prepared(self) -> None:
        """Forget the prepared inputs (the project's portrait could not be used): nothing renders."""
        self.cancel_render()

        def task() -> None:
            with self.engine_lock:
                self.prepared_inputs = None

        self._post("drop_prepared", task)

    def emotion_from_text(self, text: str) -> None:
        """Turn a description into slider values on the worker (it may load a sentence model)."""
        self._post_engine_call("text", lambda animator: animator.emotion_from_text(text),
                               lambda mix: self._emit(self.textMixReady, dict(mix)), self.textMixFailed)

    def load_expert_pack(self, path: str) -> None:
        """Load a custom expert pack into the animator; emits ``expertLoaded(name, path)``."""
        self._post_engine_call("expert", lambda animator: engine_api.load_expert_pack(animator, path),
                               lambda name: self._emit(self.expertLoaded, str(name), str(path)), self.expertFailed)

    def _post_engine_call(self, name: str, call: Callable[[Any], Any], done: Callable[[Any], None],
                          failed: Any) -> None:
        """Run ``call(animator)`` on the worker under the engine lock; ``done(result)`` or ``failed`` with a message."""

        def task() -> None:
            if self.animator is None:
                self._emit(failed, "no model is loaded")
                return
            try:
                with self.engine_lock:
                    result = call(self.animator)
            except Exception as exc:
                self._emit(failed, _message(exc))
                return
            done(result)

        self._post(name, task)

    def request_render(self, frame: int, gates: Any, steps: int, seed: int = 0, quality: str = "preview") -> int:
        """Ask for a frame; replaces a request not started yet. Returns the request id.

        A running preview finishes (live feedback during a drag); a running refine or flipbook
        frame is cancelled, since the new request makes it stale and it would only delay it.
        """
        with self._cond:
            self._next_id += 1
            req = RenderRequest(int(frame), gates, int(steps), int(seed), quality, self._next_id)
            superseded = self._pending
            self._pending = req
            running = self._running
            if running is not None and running.quality != "preview" and self._running_token is not None:
                self._running_token.cancel()
            self._kick()
        if superseded is not None:
            self.renderCancelled.emit(superseded.request_id)
        return req.request_id

    def flipbook_changed(self) -> None:
        """The flipbook has frames to (re)render: make sure the engine thread looks at it.

        A flipbook frame being rendered for an older state is cancelled.
        """
        with self._cond:
            running = self._running
            if running is not None and running.quality == "flipbook" and self._running_token is not None:
                self._running_token.cancel()
            self._kick()

    def cancel_render(self) -> None:
        """Drop the pending request and cancel the one in progress."""
        with self._cond:
            dropped = self._pending
            self._pending = None
            if self._running_token is not None:
                self._running_token.cancel()
        if dropped is not None:
            self.renderCancelled.emit(dropped.request_id)

    @property
    def latest_request_id(self) -> int:
        return self._next_id

    def is_idle(self) -> bool:
        """True when nothing is queued or running."""
        with self._cond:
            return not self._tasks and self._pending is None and self._running is None and not self._busy

    def _flipbook_job(self) -> FlipbookJob | None:
        """The next flipbook frame to render when the service has nothing else to do (``_cond`` held)."""
        if self.flipbook is None or self.animator is None or self.prepared_inputs is None:
            return None
        return self.flipbook.take_job()

    def shutdown(self, timeout_ms: int | None = None) -> None:
        """Stop (cancelling any render) and wait until the engine thread has left this service.

        Work that outlives the wait (a model still loading) finishes on the engine thread but never
        emits again: the service, and the window owning it, may be deleted at once.
        """
        timeout_ms = SHUTDOWN_WAIT_MS if timeout_ms is None else timeout_ms
        with self._cond:
            self._stop = True
            self._pending = None
            self._tasks.clear()
            if self._running_token is not None:
                self._running_token.cancel()
            self._cond.wait_for(lambda: not self._scheduled, timeout_ms / 1000.0)

    def _emit(self, signal: Any, *args: Any) -> None:
        """Emit ``signal`` unless the service was shut down (its Qt object may be gone by then).

        The check and the emit happen under ``_cond``, which :meth:`shutdown` takes to set ``_stop``,
        so no emit can start after shutdown returned.
        """
        with self._cond:
            if self._stop:
                return
            try:
                signal.emit(*args)
            except RuntimeError:  # the C++ object was deleted without shutdown(): nobody listens
                self._stop = True

    # -------------------------------------------------------------- worker
    def _post(self, name: str, task: Callable[[], None]) -> None:
        with self._cond:
            if self._stop:
                return
            self._tasks.append((name, task))
            self._kick()

    def _kick(self) -> None:
        """Make sure a drain job is queued on the engine thread (call with ``_cond`` held)."""
        if not self._scheduled and not self._stop:
            self._scheduled = True
            run_on_engine_thread(self._drain)

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self._emit(self.busyChanged, busy)

    def _drain(self) -> None:
        """Engine thread: run queued tasks, then the newest render, until nothing is left.

        Then one flipbook frame, after which the drain re-queues itself behind any other engine job
        (an export), so background work never holds the engine thread for longer than one frame.
        """
        while True:
            flip = None
            with self._cond:
                if not self._stop and not self._tasks and self._pending is None:
                    flip = self._flipbook_job()
                    if flip is not None:
                        self._set_busy(False)
                        req = RenderRequest(flip.frame, None, self.flipbook_steps, self.flipbook_seed, "flipbook")
                        self._running = req
                        self._running_token = engine_api.cancel_token()
                if flip is None and (self._stop or (not self._tasks and self._pending is None)):
                    self._scheduled = False
                    self._set_busy(False)
                    self._cond.notify_all()
                    return
                if flip is None:
                    self._set_busy(True)
                    if self._tasks:
                        _name, task = self._tasks.popleft()
                        req = None
                    else:
                        task = None
                        req, self._pending = self._pending, None
                        self._running = req
                        self._running_token = engine_api.cancel_token() if self.animator is not None else None
            if flip is not None:
                try:
                    self._render_flipbook_frame(flip)
                finally:
                    with self._cond:
                        self._clear_running()
                        self._scheduled = False
                        self._kick()  # behind any job queued meanwhile (an export)
                        self._cond.notify_all()
                return
            if task is not None:
                try:
                    task()
                except Exception:
                    traceback.print_exc()
                continue
            assert req is not None
            try:
                self._render(req)
            finally:
                with self._cond:
                    self._clear_running()

    def _clear_running(self) -> None:
        """Nothing is being rendered any more (call with ``_cond`` held)."""
        self._running = None
        self._running_token = None

    def _render_flipbook_frame(self, job: FlipbookJob) -> None:
        """Render one flipbook frame at preview quality and store it (if the state did not change meanwhile)."""
        token = self._running_token
        try:
            with self.engine_lock:
                prepared = self.prepared_inputs
                if prepared is None or job.frame >= int(getattr(prepared, "num_frames", 1)):
                    return
                gates = engine_api.fit_gates(job.schedule(job.frame), len(self.animator.emotions))
                engine_api.apply_life(prepared, self.life, self.animator)
                sampling = engine_api.sampling_options(self.animator, steps=self.flipbook_steps,
                                                       seed=self.flipbook_seed)
                image = self.animator.render_frame(prepared, job.frame, gates, cancel=token, **sampling)
        except CancelledError:
            return
        except Exception:
            if token is None or not token.cancelled:
                traceback.print_exc()
                if self.flipbook is not None:
                    self.flipbook.failed = True  # the preview reports the same failure with a message
            return
        if image is None or (token is not None and token.cancelled):
            return
        if self.flipbook is not None and self.flipbook.store(job, np.asarray(image, dtype=np.uint8)):
            self._emit(self.flipbookFrame, job.frame)

    def _render(self, req: RenderRequest) -> None:
        token = self._running_token
        if self.animator is None or self.prepared_inputs is None:
            self._emit(self.renderFailed, req.request_id,
                       "load a portrait first" if self.animator else "no model is loaded")
            return
        self._emit(self.renderStarted, req.request_id, req.quality)
        start = time.perf_counter()
        try:
            with self.engine_lock:
                prepared = self.prepared_inputs
                frame = min(max(0, req.frame), max(0, int(getattr(prepared, "num_frames", 1)) - 1))
                gates = engine_api.fit_gates(req.gates, len(self.animator.emotions))
                engine_api.apply_life(prepared, self.life, self.animator)
                sampling = engine_api.sampling_options(self.animator, steps=req.steps, seed=req.seed)
                image = self.animator.render_frame(prepared, frame, gates, cancel=token, **sampling)
                maps = engine_api.gate_maps(self.animator)
        except CancelledError:
            self._emit(self.renderCancelled, req.request_id)
            return
        except Exception as exc:
            if token is not None and token.cancelled:
                self._emit(self.renderCancelled, req.request_id)
            else:
                traceback.print_exc()
                self._emit(self.renderFailed, req.request_id, _message(exc))
            return
        if (token is not None and token.cancelled) or image is None:
            self._emit(self.renderCancelled, req.request_id)
            return
        result = RenderResult(
            req.request_id,
            frame,
            np.ascontiguousarray(np.asarray(image, dtype=np.uint8)),
            None if maps is None else np.asarray(maps, np.float32),
            req.quality,
            req.steps,
            time.perf_counter() - start,
            req.gates,
        )
        self._emit(self.frameReady, result)


def _message(exc: BaseException) -> str:
    """A user-facing message for an exception (MoEEError messages verbatim)."""
    if isinstance(exc, MoEEError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
