"""Python's cyclic garbage collection, run on the UI thread only.

CPython collects reference cycles in whichever thread happens to cross the allocation threshold. In the
studio that is often the engine thread (it allocates tensors by the thousand), and a collection there
finalises whatever cyclic garbage exists, window parts included: a Qt object (a timer, a widget's model)
destroyed from the engine thread crashes the process ("Timers cannot be stopped from another thread", then a
segmentation fault inside whatever the engine was doing). This module turns automatic collection off and
runs the same generational collection from a timer on the UI thread instead, the pattern calibre,
pyqtgraph's users and others adopted for the same crash.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

#: The oldest generation is collected once it has grown by 1 / FULL_COLLECTION_GROWTH of its size at its last collection.
FULL_COLLECTION_GROWTH = 4


@dataclass(frozen=True)
class UiThreadGcConfig:
    """How often the UI thread looks at the allocation counts (a collection runs only past a threshold)."""

    check_interval_ms: int = 100


class UiThreadGarbageCollector(QObject):
    """Disables automatic collection and collects from a UI-thread timer, generation by generation.

    Each check does what the interpreter would have done on allocation: collect the oldest generation whose
    count passed its threshold (``gc.get_count()`` against ``gc.get_threshold()``), and the oldest one only
    once the objects that reached it since its last collection exceed a quarter of those it held then (the
    interpreter's own rule: a full collection with a portrait prepared and a model loaded scans ~300,000
    objects, 0.1-0.2 s on the UI thread, so it must stay as rare as the interpreter keeps it). The checks
    come often (every 100 ms) so that each young collection has few objects to scan: the engine thread
    allocates fast, and a young collection every 500 ms blocked the UI for up to 100 ms.
    """

    def __init__(self, parent: QObject, config: UiThreadGcConfig = UiThreadGcConfig()) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._long_lived = len(gc.get_objects(2))  # the oldest generation's size after its last collection
        self._pending = 0  # objects that reached the oldest generation since then
        self.timer = QTimer(self)
        self.timer.setInterval(config.check_interval_ms)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> int:
        """Collect the oldest generation that is due; returns the generation collected, or -1."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        if 0 < thresholds[2] < counts[2] and self._pending > self._long_lived // FULL_COLLECTION_GROWTH:
            gc.collect(2)
            self._long_lived, self._pending = len(gc.get_objects(2)), 0
            return 2
        if 0 < thresholds[1] < counts[1]:
            young = len(gc.get_objects(0)) + len(gc.get_objects(1))
            self._pending += max(0, young - gc.collect(1))  # the survivors move to the oldest generation
            return 1
        if 0 < thresholds[0] < counts[0]:
            gc.collect(0)
            return 0
        return -1

    def release(self) -> None:
        """Stop collecting from the timer and give collection back to the interpreter (as it was)."""
        self.timer.stop()
        if self._was_enabled:
            gc.enable()


_collector: UiThreadGarbageCollector | None = None


def collect_on_ui_thread() -> UiThreadGarbageCollector:
    """Pin garbage collection to the UI thread for the life of the application (idempotent).

    Call it on the UI thread once a ``QCoreApplication`` exists and before any worker thread starts.
    """
    global _collector
    app = QCoreApplication.instance()
    if app is None:
        raise RuntimeError("collect_on_ui_thread needs a QApplication first")
    if QThread.currentThread() is not app.thread():
        raise RuntimeError("collect_on_ui_thread must be called on the UI thread")
    if _collector is None:
        _collector = UiThreadGarbageCollector(app)
    return _collector


def release_ui_thread_collection() -> None:
    """Undo :func:`collect_on_ui_thread` (the tests hand collection back to the interpreter after the studio's tests)."""
    global _collector
    if _collector is not None:
        _collector.release()
        _collector.deleteLater()
        _collector = None
