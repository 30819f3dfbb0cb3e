"""Measure the studio's responsiveness as the events reach the screen (issue 18's targets).

Runs a real MainWindow (offscreen or on an X server) on the bundled model with a portrait and prints
JSON: slider release -> settled preview (median, ms), previews shown per second during a 2 s drag, and
the longest event-loop stall during the drag and during an MP4 export.

    QT_QPA_PLATFORM=offscreen python -m studio.measure [PORTRAIT [AUDIO]]

Cold start (issue 27): seconds from launching ``moee-studio --portrait PORTRAIT`` in a fresh process to
the window, the portrait and the first preview on screen (median of ``RUNS`` launches):

    DISPLAY=:99 python -m studio.measure --startup PORTRAIT [RUNS]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QApplication

# Every wait sleeps between processEvents calls: PySide 6.12 on CPython 3.11 loses a reference to None
# per processEvents() call, and a busy loop of millions of calls ends in "none_dealloc" (the app itself
# never calls processEvents).


#: Slider releases timed (each at a new value), the drag's length (s) and its step between two slider moves (s).
RELEASES = 20
DRAG_SECONDS = 2.0
DRAG_STEP_S = 0.016
#: Event-loop tick (ms) of the stall meter, and the gap (ms) above which a stall is noted with where it happened.
TICK_MS = 5
STALL_MS = 50


def wait(app: QApplication, cond: Callable[[], object], timeout: float = 120.0) -> None:
    """Process events until ``cond()`` holds (TimeoutError after ``timeout`` seconds)."""
    end = time.monotonic() + timeout
    while not cond():
        app.processEvents()
        time.sleep(0.002)
        if time.monotonic() > end:
            raise TimeoutError


class StallMeter:
    """Gaps between event-loop ticks (ms): how long the UI thread was busy, and where the long stalls were
    (the export's progress in 1/1000 while an export dialog is open, else the time)."""

    def __init__(self, win: Any) -> None:
        self.win = win
        self.gaps: list[float] = []
        self.where: list[tuple[int, int]] = []  # (gap ms, export progress in 1/1000) of each stall over STALL_MS
        self.clock = QElapsedTimer()
        self.last = 0
        self.ticker = QTimer()
        self.ticker.setInterval(TICK_MS)
        self.ticker.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = self.clock.elapsed()
        self.gaps.append(now - self.last)
        if self.gaps[-1] > STALL_MS:
            self.where.append((self.gaps[-1], self.win._dialogs[-1].bar.value() if self.win._dialogs else now))
        self.last = now


def open_window(app: QApplication, argv: list[str]) -> Any:
    """A MainWindow on the bundled model with the portrait and audio of ``argv`` (default: the demo's) prepared
    and the whole flipbook rendered."""
    from studio import settings
    from studio.engine_api import demo_inputs
    from studio.main_window import MainWindow

    settings.use_settings_file(Path(tempfile.mkdtemp()) / "s.ini")
    portrait = argv[0] if argv else str(demo_inputs()[2])
    audio = argv[1] if len(argv) > 1 else str(demo_inputs()[1])
    win = MainWindow(show_dialogs=False, autosave=False)
    win.show()
    wait(app, lambda: win._model_ready)
    win.open_portrait(portrait)
    wait(app, lambda: win.last_result is not None)
    win.open_audio(audio)
    wait(app, lambda: win.service.prepared_inputs is not None and win.service.prepared_inputs.audio is not None)
    wait(app, win.flipbook.is_complete)
    return win


def release_latencies(app: QApplication, win: Any) -> list[float]:
    """Milliseconds from a slider release at a new value to the settled preview, sorted."""
    settled: list[float] = []
    win.previewSettled.connect(lambda _r: settled.append(time.perf_counter()))
    latencies = []
    for i in range(RELEASES):
        settled.clear()
        start = time.perf_counter()
        win.palette.rows[2].slider.setValue(100 + 40 * i)  # a release at a new value
        wait(app, lambda: bool(settled))
        latencies.append((settled[0] - start) * 1000)
        wait(app, win.service.is_idle)
    return sorted(latencies)


def drag(app: QApplication, win: Any, meter: StallMeter) -> tuple[list[float], list[tuple[int, int]], int]:
    """A slider dragged for DRAG_SECONDS: (event-loop gaps, stalls, previews shown during the drag)."""
    shown: list[float] = []
    win.previewShown.connect(lambda _r: shown.append(time.perf_counter()))
    meter.clock.start()
    meter.last = 0
    meter.gaps.clear()
    meter.ticker.start()
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < DRAG_SECONDS:
        win.palette.rows[0].slider.setValue(i % 1000)
        i += 7
        end = time.perf_counter() + DRAG_STEP_S
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.002)
    gaps, where = list(meter.gaps), list(meter.where)
    meter.where.clear()
    count = len([t for t in shown if t - start <= DRAG_SECONDS])
    wait(app, win.service.is_idle)
    return gaps, where, count


def export(app: QApplication, win: Any, meter: StallMeter) -> tuple[float, Any]:
    """An MP4 export through the dialog, the stall meter running: (seconds, the export job)."""
    dialog = win.show_export()
    out = Path(tempfile.mkdtemp()) / "clip.mp4"
    dialog.path.setText(str(out))
    meter.gaps.clear()
    meter.last = meter.clock.elapsed()
    t0 = time.perf_counter()
    job = dialog.start_export(overwrite=True)
    wait(app, lambda: job is not None and not job.isRunning(), timeout=600)
    seconds = time.perf_counter() - t0
    meter.ticker.stop()
    return seconds, job


def main(argv: list[str]) -> int:
    """Print the responsiveness figures of the module docstring as JSON."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    win = open_window(app, argv)
    meter = StallMeter(win)
    latencies = release_latencies(app, win)
    drag_gaps, drag_where, drag_shown = drag(app, win, meter)
    export_s, job = export(app, win, meter)
    gaps, where = meter.gaps, meter.where
    print(json.dumps({
        "portrait_px": list(win.service.prepared_inputs.portrait.shape[:2]),
        "release_to_preview_ms_median": round(latencies[len(latencies) // 2], 1),
        "release_to_preview_ms_max": round(latencies[-1], 1),
        "drag_previews_per_s": round(drag_shown / DRAG_SECONDS, 1),
        "drag_max_stall_ms": max(drag_gaps) if drag_gaps else None,
        "drag_stalls_at_ms": drag_where,
        "export_frames": win.service.prepared_inputs.num_frames,
        "export_s": round(export_s, 2),
        "export_max_stall_ms": max(gaps) if gaps else None,
        "export_stalls_over_50ms": sum(g > STALL_MS for g in gaps),
        "export_stalls_at_progress": where,
        "export_result": getattr(job, "result", None),
    }, indent=1))
    win.shutdown()
    return 0


def startup(portrait: str, runs: int = 3) -> int:
    """Launch the studio ``runs`` times; print the median seconds to window, portrait and first preview."""
    import os
    import statistics
    import subprocess

    results = []
    for _ in range(runs):
        env = dict(os.environ, MOEE_STARTUP_T0=repr(time.time()))
        with tempfile.TemporaryDirectory() as home:
            env.update(HOME=home, XDG_CONFIG_HOME=home)  # fresh settings: no restored layout or recovery
            out = subprocess.run([sys.executable, "-m", "studio.measure", "--startup-child", portrait], env=env,
                                 capture_output=True, text=True, timeout=300)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("{")), None)
        if line is None:
            print(out.stdout[-2000:], out.stderr[-2000:], file=sys.stderr)
            return 1
        results.append(json.loads(line))
    print(json.dumps({key: round(statistics.median(r[key] for r in results), 2) for key in results[0]}
                     | {"runs": runs}, indent=1))
    return 0


def _startup_child(portrait: str) -> int:
    """One launch: the real ``moee-studio`` main, watched by a timer that notes when things show."""
    import os

    t0 = float(os.environ["MOEE_STARTUP_T0"])
    from studio import app
    from studio import main_window as mw

    marks: dict[str, float] = {}
    show = mw.MainWindow.show

    def watched_show(win: mw.MainWindow) -> None:
        show(win)
        marks["window_s"] = time.time() - t0
        timer = QTimer(win)

        def poll() -> None:
            if "portrait_s" not in marks and win.canvas.image_size() is not None:
                win.canvas.repaint()
                marks["portrait_s"] = time.time() - t0
            if "first_preview_s" not in marks and win.preview.view.image is not None:
                win.preview.view.repaint()
                marks["first_preview_s"] = time.time() - t0
                print(json.dumps(marks), flush=True)
                os._exit(0)

        timer.timeout.connect(poll)
        timer.start(5)

    mw.MainWindow.show = watched_show  # type: ignore[method-assign]
    return app.main(["--portrait", portrait])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--startup"]:
        raise SystemExit(startup(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3))
    if sys.argv[1:2] == ["--startup-child"]:
        raise SystemExit(_startup_child(sys.argv[2]))
    raise SystemExit(main(sys.argv[1:]))
