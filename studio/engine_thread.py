"""The one thread on which the studio calls the engine.

All engine work (model loading, preparing inputs, previews, exports) runs on a single long-lived
worker thread: a ``QThreadPool`` with one thread that never expires. Some engine parts keep
per-thread state (MediaPipe graphs are cached thread-locally), so using one thread for the whole
process avoids re-creating them and keeps them away from threads that have ended.

Creating the pool pins Python's garbage collection to the UI thread (``ui_thread_gc``): a collection
started by the engine thread's allocations could otherwise destroy the UI's Qt objects from the wrong thread.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QRunnable, QThreadPool

from studio.ui_thread_gc import collect_on_ui_thread

_pool: QThreadPool | None = None


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], None]) -> None:
        super().__init__()
        self.fn = fn
        self.setAutoDelete(True)

    def run(self) -> None:
        self.fn()


def engine_pool() -> QThreadPool:
    """The process-wide engine pool (one thread, never expires)."""
    global _pool
    if _pool is None:
        collect_on_ui_thread()
        _pool = QThreadPool()
        _pool.setObjectName("moee-engine")
        _pool.setMaxThreadCount(1)
        _pool.setExpiryTimeout(-1)
    return _pool


def run_on_engine_thread(fn: Callable[[], None]) -> None:
    """Queue ``fn`` on the engine thread (jobs run one at a time, in order)."""
    engine_pool().start(_Job(fn))
