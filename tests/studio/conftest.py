"""Studio test fixtures: offscreen Qt, private settings, the real tiny Animator, a test portrait."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_settings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test uses a throw-away INI file: the user's QSettings are never touched."""
    from studio import settings

    path = tmp_path_factory.mktemp("settings") / "studio.ini"
    settings.use_settings_file(path)
    return path


@pytest.fixture(scope="package", autouse=True)
def _garbage_collection_on_the_ui_thread(qapp) -> Iterator[None]:
    """Garbage collection runs on the UI thread during the studio's tests (as in the app: ``ui_thread_gc``),
    also for widgets tested without a window; the tests after the studio's get the interpreter's back."""
    from studio.ui_thread_gc import collect_on_ui_thread, release_ui_thread_collection

    collect_on_ui_thread()
    yield
    release_ui_thread_collection()


@pytest.fixture(scope="session")
def animator():
    """The real untrained tiny model (32x32 frames)."""
    import torch

    from engine.diffusion.config import tiny_config
    from engine.diffusion.pipeline import Animator

    torch.set_num_threads(1)
    return Animator.from_config(tiny_config(), device="cpu", seed=0)


@pytest.fixture(scope="session")
def portrait_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A smooth square test image (no face: the engine then uses the whole square image)."""
    from PIL import Image

    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) / 63.0
    image = np.stack([0.3 + 0.6 * xx, 0.25 + 0.5 * yy, 0.6 - 0.3 * xx * yy], axis=-1)
    path = tmp_path_factory.mktemp("inputs") / "portrait.png"
    Image.fromarray((image * 255).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="session")
def speech_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 0.6 s voiced test tone (16 kHz WAV)."""
    import soundfile

    t = np.arange(int(0.6 * 16000)) / 16000.0
    samples = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    path = tmp_path_factory.mktemp("inputs") / "speech.wav"
    soundfile.write(str(path), samples, 16000)
    return str(path)


@pytest.fixture(scope="session")
def portrait_animator():
    """The bundled model's PortraitAnimator (what the studio loads by default)."""
    from studio import engine_api

    return engine_api.load_portrait_animator(None)


@pytest.fixture(scope="session")
def astronaut_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real 512 x 512 portrait with a detectable face."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("portrait") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return str(path)


def dispose(win) -> None:
    """Shut a window down and delete its C++ side now (not at some later garbage collection)."""
    from PySide6.QtCore import QCoreApplication, QEvent

    win.shutdown()
    win.close()
    win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@contextmanager
def portrait_window(qtbot, animator, portrait: str, *, flipbook: bool = True, show: bool = True) -> Iterator:
    """A main window on ``animator`` (no dialogs, no autosave, no refine) with ``portrait`` opened and its first
    preview shown (and the window on screen if ``show``); shut down when the block ends."""
    from studio.main_window import MainWindow

    win = MainWindow(animator=animator, show_dialogs=False, autosave=False)
    win.doc.render.refine_delay_ms = 60_000
    win.flipbook.enabled = flipbook
    qtbot.addWidget(win)
    try:
        if show:
            win.show()
            qtbot.waitExposed(win)
        with qtbot.waitSignal(win.previewSettled, timeout=60_000):
            assert win.open_portrait(portrait)
        yield win
    finally:
        dispose(win)


@pytest.fixture
def window(qtbot, animator):
    """A main window on the tiny model; dialogs off (errors arrive as signals)."""
    from studio.main_window import MainWindow

    win = MainWindow(animator=animator, show_dialogs=False, autosave=False)
    win.doc.render.preview_steps = 2
    win.doc.render.refine_steps = 3
    win.doc.render.refine_delay_ms = 60_000  # tests ask for refines explicitly
    win.flipbook.enabled = False  # no background frames: these tests observe the preview's requests
    qtbot.addWidget(win)
    win.show()
    win.activateWindow()
    qtbot.waitExposed(win)
    yield win
    dispose(win)


@pytest.fixture
def ready_window(qtbot, window, portrait_path):
    """A window with the test portrait prepared and its first preview shown."""
    with qtbot.waitSignal(window.previewSettled, timeout=30_000):
        assert window.open_portrait(portrait_path)
    return window


class RenderRecorder:
    """Wraps the real ``animator.render_frame`` and records the arguments the studio passes."""

    def __init__(self, animator) -> None:
        self.calls: list[dict] = []
        self._inner = animator.render_frame

    def __call__(self, prepared, frame_index=0, gates=None, **kwargs):
        self.calls.append({"frame": frame_index, "gates": gates, **kwargs})
        return self._inner(prepared, frame_index, gates, **kwargs)


@pytest.fixture
def recorder(animator, monkeypatch):
    """Record every render_frame call on the real tiny animator (the model still renders)."""
    rec = RenderRecorder(animator)
    monkeypatch.setattr(animator, "render_frame", rec)
    return rec
