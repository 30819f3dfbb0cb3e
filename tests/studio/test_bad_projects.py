"""Bad project files (issue 19): each is refused with a clear error naming the problem, nothing changes.

Every case opens a bad file in a window that holds a saved project; the error must name the bad
field, the open document must stay as it was, and no file on disk may change.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from studio import project_io
from studio.document import DocumentState
from studio.keyframes import Keyframe

BOMB_SIDE = 14_000  # a 14000 x 14000 PNG: 196 M pixels, a few hundred kB compressed
BIG_SIDE = 8192
CURRENT_WEIGHTS = [0.25, 0.0, 0.0, 0.5, 0.0, 0.0]
LOAD_SECONDS = 5.0  # a refused file must be refused at once, without decoding anything large


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = BOMB_SIDE) -> str:
    """A valid all-black greyscale PNG of ``side x side`` pixels, base64 (built row by row, little memory)."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    return base64.b64encode(png).decode("ascii")


def small_png(side: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((side, side), 200, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def project(**changes: Any) -> dict[str, Any]:
    """A valid version-1 project with six emotions, changed by ``changes``."""
    data: dict[str, Any] = {
        "format": "moee-project", "version": 1, "emotions": list(DocumentState().emotions),
        "weights": [0.0] * 6, "normalise": False, "masks": None, "keyframes": [],
        "render": {"preview_steps": 4, "refine_steps": 16, "fps": 25, "refine_delay_ms": 400},
    }
    data.update(changes)
    return data


def masks(png: list[Any] | None = None, side: int = 128, **extra: Any) -> dict[str, Any]:
    return {"height": side, "width": side, "alpha": [1.0] * 6, "png": png or [None] * 6, **extra}


def render(**changes: Any) -> dict[str, Any]:
    return {"preview_steps": 4, "refine_steps": 16, "fps": 25, "refine_delay_ms": 400, **changes}


# (case id, project JSON factory, text the error must contain)
CASES: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
    ("preview_steps-text", lambda: project(render=render(preview_steps="many")), "render.preview_steps"),
    ("fps-text", lambda: project(render=render(fps="abc")), "render.fps"),
    ("refine_delay-text", lambda: project(render=render(refine_delay_ms="soon")), "render.refine_delay_ms"),
    ("fps-zero", lambda: project(render=render(fps=0)), "render.fps"),
    ("steps-float", lambda: project(render=render(refine_steps=2.5)), "render.refine_steps"),
    ("seed-bool", lambda: project(render=render(seed=True)), "render.seed"),
    ("interpolation", lambda: project(render=render(interpolation="cubic")), "render.interpolation"),
    ("render-not-object", lambda: project(render=[4, 16]), "'render'"),
    ("normalise-text", lambda: project(normalise="yes"), "'normalise'"),
    ("portrait-number", lambda: project(portrait=5), "'portrait'"),
    ("emotions-text", lambda: project(emotions="happiness"), "'emotions'"),
    ("weights-nan", lambda: project(weights=[float("nan")] + [0.0] * 5), "'weights'"),
    ("keyframe-frame-text", lambda: project(keyframes=[{"frame": "3", "weights": [0.0] * 6}]), "keyframes[0].frame"),
    ("keyframes-not-list", lambda: project(keyframes={"frame": 3}), "'keyframes'"),
    ("mask-bomb", lambda: project(masks=masks([bomb_png()] + [None] * 5)), "masks.png[0]"),
    ("mask-bomb-pool", lambda: project(version=2, masks=masks(ids=[None, 0, None, None, None, None]),
                                       mask_pool=[bomb_png()]), "mask_pool[0]"),
    ("mask-declared-8192", lambda: project(masks=masks(side=BIG_SIDE)), "masks.height"),
    ("key-masks-8192", lambda: project(keyframes=[
        {"frame": 0, "weights": [0.0] * 6, "masks": masks([small_png(8)] * 6, side=BIG_SIDE)}]),
     "keyframes[0].masks.height"),
    ("mask-size-mismatch", lambda: project(masks=masks([None, small_png(64)] + [None] * 4, side=32)), "masks.png[1]"),
    ("mask-not-png", lambda: project(masks=masks([base64.b64encode(b"GIF89a....").decode()] + [None] * 5)),
     "masks.png[0]"),
    ("mask-pool-index", lambda: project(version=2, masks=masks(ids=[7, None, None, None, None, None]),
                                        mask_pool=[]), "masks.ids[0]"),
    ("mask-alpha", lambda: project(masks={**masks(), "alpha": [2.0] * 6}), "masks.alpha"),
]


def files_state(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` with its bytes and modification time."""
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def current(window, tmp_path: Path) -> Path:
    """The window holds a saved project (the one that must be kept)."""
    path = tmp_path / "current.moee"
    project_io.save_project(DocumentState(weights=list(CURRENT_WEIGHTS)), path)
    assert window.open_project(str(path))
    return path


@pytest.mark.parametrize(("make", "field"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_project_is_refused_naming_the_problem(qtbot, window, current: Path, tmp_path: Path,
                                                   make: Callable[[], dict[str, Any]], field: str) -> None:
    bad = tmp_path / "bad.moee"
    bad.write_text(json.dumps(make()))
    before = files_state(tmp_path)
    start = time.perf_counter()
    with qtbot.waitSignal(window.errorReported, timeout=10_000) as blocker:
        assert window.open_project(str(bad)) is False
    assert time.perf_counter() - start < LOAD_SECONDS
    message = blocker.args[0]
    assert "bad.moee" in message and field in message, message
    assert "Traceback" not in message
    assert window.doc.path == str(current.resolve())
    assert window.doc.weights == pytest.approx(CURRENT_WEIGHTS)
    assert not window.doc.is_modified()
    assert files_state(tmp_path) == before


def test_load_error_in_the_app_is_a_message_box(qtbot, window, current: Path, tmp_path: Path) -> None:
    """Opened from inside the app, a bad mask shows a message box with the specific message."""
    bad = tmp_path / "bomb.moee"
    bad.write_text(json.dumps(project(masks=masks([bomb_png()] + [None] * 5))))
    window.show_dialogs = True
    try:
        assert window.open_project(str(bad)) is False
        boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
        assert boxes and "masks.png[0]" in boxes[-1].text() and "bomb.moee" in boxes[-1].text()
        for box in boxes:
            box.close()
    finally:
        window.show_dialogs = False


def test_render_settings_round_trip(tmp_path: Path) -> None:
    state = DocumentState()
    state.render.fps, state.render.preview_steps, state.render.interpolation = 30, 3, "linear"
    project_io.save_project(state, tmp_path / "r.moee")
    assert project_io.load_project(tmp_path / "r.moee").render == state.render


def test_keys_share_masks_in_file_and_memory(tmp_path: Path) -> None:
    """Six keys with the same masks: the file stores each distinct mask once, the keys share one array."""
    painted = np.zeros((6, 64, 64), np.float32)
    painted[1, 10:30, 20:40] = 0.8
    painted[4, 40:60, 5:25] = 0.3
    state = DocumentState(masks=painted.copy())
    state.keyframes = [Keyframe(f * 5, [0.1] * 6, painted.copy(), [1.0] * 6) for f in range(6)]
    path = tmp_path / "shared.moee"
    project_io.save_project(state, path)
    data = json.loads(path.read_text())
    assert data["version"] == project_io.VERSION and len(data["mask_pool"]) == 2
    loaded = project_io.load_project(path)
    arrays = {id(k.masks) for k in loaded.keyframes}
    assert len(arrays) == 1
    assert np.abs(loaded.keyframes[0].masks - painted).max() < 1e-4
    assert loaded.masks is not loaded.keyframes[0].masks and loaded.masks.flags.writeable  # painted in place


def test_version_1_files_still_load(tmp_path: Path) -> None:
    painted = np.zeros((64, 64), np.float32)
    painted[5:20, 5:20] = 1.0
    png = project_io.encode_mask(painted)
    data = project(masks=masks([png] + [None] * 5, side=64),
                   keyframes=[{"frame": 3, "weights": [0.2] * 6, "masks": masks([None, png] + [None] * 4, side=64)}])
    path = tmp_path / "v1.moee"
    path.write_text(json.dumps(data))
    state = project_io.load_project(path)
    assert np.abs(state.masks[0] - painted).max() < 1e-4
    assert np.abs(state.keyframes[0].masks[1] - painted).max() < 1e-4
