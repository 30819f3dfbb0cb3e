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
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QApplication

# Every wait sleeps between processEvents calls: PySide 6.12 on CPython 3.11 loses a reference to None
# per processEvents() call, and a busy loop of millions of calls ends in "none_dealloc" (the app itself
# never calls processEvents).


def main(argv: list[str]) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from studio import settings
    from studio.engine_api import demo_inputs
    from studio.main_window import MainWindow

    settings.use_settings_file(Path(tempfile.mkdtemp()) / "s.ini")
    portrait = argv[0] if argv else str(demo_inputs()[2])
    audio = argv[1] if len(argv) > 1 else str(demo_inputs()[1])
    win = MainWindow(show_dialogs=False, autosave=False)
    win.show()

    def wait(cond, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while not cond():
            app.processEvents()
            time.sleep(0.002)
            if time.monotonic() > end:
                raise TimeoutError

    wait(lambda: win._model_ready)
    win.open_portrait(portrait)
    wait(lambda: win.last_result is not None)
    win.open_audio(audio)
    wait(lambda: win.service.prepared_inputs is not None and win.service.prepared_inputs.audio is not None)
    wait(win.flipbook.is_complete)

    gaps: list[float] = []
    clock = QElapsedTimer()
    last = [0]

    where: list[tuple[int, int]] = []  # (gap ms, export progress in 1/1000) of each stall over 50 ms

    def tick() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        if gaps[-1] > 50:
            where.append((gaps[-1], win._dialogs[-1].bar.value() if win._dialogs else now))
        last[0] = now

    ticker = QTimer()
    ticker.setInterval(5)
    ticker.timeout.connect(tick)

    settled: list[float] = []
    win.previewSettled.connect(lambda _r: settled.append(time.perf_counter()))
    latencies = []
    for i in range(20):
        settled.clear()
        start = time.perf_counter()
        win.palette.rows[2].slider.setValue(100 + 40 * i)  # a release at a new value
        wait(lambda: bool(settled))
        latencies.append((settled[0] - start) * 1000)
        wait(win.service.is_idle)

    shown: list[float] = []
    win.previewShown.connect(lambda _r: shown.append(time.perf_counter()))
    clock.start()
    last[0] = 0
    gaps.clear()
    ticker.start()
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < 2.0:
        win.palette.rows[0].slider.setValue(i % 1000)
        i += 7
        end = time.perf_counter() + 0.016
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.002)
    drag_gaps = list(gaps)
    drag_where = list(where)
    where.clear()
    drag_shown = len([t for t in shown if t - start <= 2.0])
    wait(win.service.is_idle)

    dialog = win.show_export()
    out = Path(tempfile.mkdtemp()) / "clip.mp4"
    dialog.path.setText(str(out))
    gaps.clear()
    last[0] = clock.elapsed()
    t0 = time.perf_counter()
    job = dialog.start_export(overwrite=True)
    wait(lambda: job is not None and not job.isRunning(), timeout=600)
    export_s = time.perf_counter() - t0
    ticker.stop()
    latencies.sort()
    print(json.dumps({
        "portrait_px": list(win.service.prepared_inputs.portrait.shape[:2]),
        "release_to_preview_ms_median": round(latencies[len(latencies) // 2], 1),
        "release_to_preview_ms_max": round(latencies[-1], 1),
        "drag_previews_per_s": round(drag_shown / 2.0, 1),
        "drag_max_stall_ms": max(drag_gaps) if drag_gaps else None,
        "drag_stalls_at_ms": drag_where,
        "export_frames": win.service.prepared_inputs.num_frames,
        "export_s": round(export_s, 2),
        "export_max_stall_ms": max(gaps) if gaps else None,
        "export_stalls_over_50ms": sum(g > 50 for g in gaps),
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
