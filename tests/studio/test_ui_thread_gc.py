"""Garbage collection runs on the UI thread: the engine thread's allocations never finalise UI objects."""

from __future__ import annotations

import gc
import threading


class _Cycle:
    """Cyclic garbage that records the thread that finalised it."""

    def __init__(self, finalised_on: list[str]) -> None:
        self.me = self
        self.finalised_on = finalised_on

    def __del__(self) -> None:
        self.finalised_on.append(threading.current_thread().name)


def test_cyclic_garbage_is_collected_on_the_ui_thread_not_the_engine_thread(qtbot, animator) -> None:
    from studio.engine_thread import run_on_engine_thread
    from studio.main_window import MainWindow
    from studio.ui_thread_gc import release_ui_thread_collection
    from tests.studio.conftest import dispose

    release_ui_thread_collection()  # as in a fresh process: the window must pin collection itself
    window = MainWindow(animator=animator, show_dialogs=False, autosave=False)
    qtbot.addWidget(window)
    try:
        finalised_on: list[str] = []
        _Cycle(finalised_on)  # unreachable at once, freed only by a cyclic collection
        allocated = threading.Event()
        results: list[list[int]] = []

        def allocate_like_the_engine() -> None:
            threading.current_thread().name = "engine"
            results.extend([i] for i in range(20 * gc.get_threshold()[0]))  # passes the young generation's threshold
            allocated.set()

        run_on_engine_thread(allocate_like_the_engine)
        qtbot.waitUntil(allocated.is_set, timeout=10_000)
        qtbot.waitUntil(lambda: bool(finalised_on), timeout=5_000)
        # the UI thread's timer collected it, never the engine thread's allocations
        assert finalised_on == [threading.main_thread().name]
    finally:
        dispose(window)


def test_a_full_collection_waits_until_the_oldest_generation_has_grown_by_a_quarter(qapp) -> None:
    """A full collection scans every object (0.1-0.2 s on the UI thread with a portrait prepared): the timer
    runs one only as the interpreter would, once a quarter more objects than it last held reached it."""
    from studio.ui_thread_gc import UiThreadGarbageCollector

    collector = UiThreadGarbageCollector(qapp)
    try:
        collector.timer.stop()  # this test drives the checks
        for _ in range(gc.get_threshold()[2] + 1):
            gc.collect(1)  # the oldest generation's count passes its threshold ...
        assert collector.check() != 2  # ... but it has hardly grown: no full collection
        survivors = [[i] for i in range(len(gc.get_objects(2)) // 3)]  # long-lived objects ...
        for _ in range(gc.get_threshold()[1] + 1):
            gc.collect(0)
        assert collector.check() == 1  # ... that a young collection moves into the oldest generation
        assert collector.check() == 2
        assert collector.check() != 2  # and not again at once
        del survivors
    finally:
        collector.release()
        collector.deleteLater()
