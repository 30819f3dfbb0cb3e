"""Project files (``*.moee``): versioned JSON, masks embedded as base64 16-bit PNG, atomic writes.

Layout (version 1)::

    {"format": "moee-project", "version": 1,
     "portrait": "face.png" | null,        # relative to the project file when possible
     "audio": "speech.wav" | null,
     "model_dir": "assets/models/demo" | null,
     "expert_packs": ["smug.moeexpert.safetensors", ...],
     "emotions": ["happiness", ..., "smug"],
     "weights": [0.6, 0, 0, 0, 0, 0.4, 0], "normalise": false,
     "masks": {"height": H, "width": W, "alpha": [...], "png": [null | "<base64 PNG>", ...]},
     "keyframes": [{"frame": 0, "weights": [...], "masks": <same as "masks"> | null}],
     "render": {"preview_steps": 4, "refine_steps": 16, "seed": 0, "fps": 25, ...}}

Masks are embedded (one PNG per emotion, 16-bit greyscale, ``null`` when empty) so a project is
one self-contained file that can be written atomically. Any problem reading a file raises
:class:`ProjectError` with a message for the user; nothing is changed in that case.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from engine.atomic import atomic_write_text
from engine.errors import MoEEError
from studio.document import DocumentState, RenderSettings
from studio.keyframes import Keyframe

FORMAT = "moee-project"
VERSION = 1
SUFFIX = ".moee"


class ProjectError(MoEEError):
    """A project file cannot be read or written."""


# ------------------------------------------------------------------ masks
def encode_mask(mask: np.ndarray) -> str | None:
    """A float mask (0..1) as base64 16-bit greyscale PNG; ``None`` when it is empty."""
    from PIL import Image

    if float(mask.max(initial=0.0)) <= 0.0:
        return None
    data = np.round(np.clip(mask, 0.0, 1.0) * 65535.0).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(data).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_mask(text: str | None, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_mask`."""
    from PIL import Image

    if text is None:
        return np.zeros((height, width), np.float32)
    image = Image.open(io.BytesIO(base64.b64decode(text.encode("ascii"), validate=True)))
    image.load()
    array = np.asarray(image).astype(np.float32)
    scale = 65535.0 if image.mode.startswith("I") else 255.0
    if array.ndim == 3:
        array = array[..., 0]
    if array.shape != (height, width):
        raise ProjectError(f"a mask is {array.shape[1]}x{array.shape[0]} px, expected {width}x{height}")
    return np.clip(array / scale, 0.0, 1.0)


def _masks_to_json(masks: np.ndarray | None, alpha: list[float] | None) -> dict[str, Any] | None:
    if masks is None:
        return None
    return {
        "height": int(masks.shape[1]),
        "width": int(masks.shape[2]),
        "alpha": [float(a) for a in (alpha if alpha is not None else [1.0] * len(masks))],
        "png": [encode_mask(m) for m in masks],
    }


def _masks_from_json(data: Any, count: int) -> tuple[np.ndarray | None, list[float] | None]:
    if data is None:
        return None, None
    if not isinstance(data, dict):
        raise ProjectError("'masks' must be an object")
    h, w = int(data["height"]), int(data["width"])
    if not (0 < h <= 8192 and 0 < w <= 8192):
        raise ProjectError(f"mask size {w}x{h} is not plausible")
    pngs = list(data.get("png", []))
    if len(pngs) != count:
        raise ProjectError(f"the project has {count} emotions but {len(pngs)} masks")
    alpha = [float(a) for a in data.get("alpha", [1.0] * count)]
    if len(alpha) != count or not all(0.0 <= a <= 1.0 for a in alpha):
        raise ProjectError("mask alpha must be one number in 0..1 per emotion")
    return np.stack([decode_mask(p, h, w) for p in pngs]).astype(np.float32), alpha


# ------------------------------------------------------------------ paths
def _rel(path: str | None, base: Path) -> str | None:
    if not path:
        return None
    try:
        return os.path.relpath(Path(path).resolve(), base.resolve())
    except ValueError:  # another drive on Windows
        return str(path)


def _abs(path: str | None, base: Path) -> str | None:
    if not path:
        return None
    p = Path(path)
    return str(p if p.is_absolute() else (base / p).resolve())


def _weights(values: Any, count: int, what: str) -> list[float]:
    if not isinstance(values, list) or len(values) != count:
        raise ProjectError(f"{what} must be a list of {count} numbers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
            raise ProjectError(f"{what} must be numbers in 0..1, got {v!r}")
        out.append(float(v))
    return out


# ------------------------------------------------------------------ API
def state_to_json(state: DocumentState, project_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object of a project file saved at ``project_path``."""
    base = Path(project_path).resolve().parent
    return {
        "format": FORMAT,
        "version": VERSION,
        "portrait": _rel(state.portrait_path, base),
        "audio": _rel(state.audio_path, base),
        "model_dir": state.model_dir if state.model_dir in (None, "tiny") else _rel(state.model_dir, base),
        "expert_packs": [_rel(p, base) for p in state.expert_packs],
        "emotions": list(state.emotions),
        "weights": [float(w) for w in state.weights],
        "normalise": bool(state.normalise),
        "masks": _masks_to_json(state.masks, state.alpha),
        "keyframes": [
            {"frame": int(k.frame), "weights": [float(w) for w in k.weights], "masks": _masks_to_json(k.masks, k.alpha)}
            for k in sorted(state.keyframes, key=lambda k: k.frame)
        ],
        "render": state.render.to_dict(),
    }


def state_from_json(data: Any, project_path: str | os.PathLike[str]) -> DocumentState:
    """Parse and validate a project JSON object (raises ProjectError)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProjectError("this is not a MoEE Studio project (missing \"format\": \"moee-project\")")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise ProjectError(f"the project has no valid version number ({version!r})")
    if version > VERSION:
        raise ProjectError(f"the project was saved by a newer MoEE Studio (format version {version}); please update")
    base = Path(project_path).resolve().parent
    try:
        emotions = [str(e) for e in data["emotions"]]
        if not emotions or len(set(emotions)) != len(emotions):
            raise ProjectError("'emotions' must be a non-empty list of distinct names")
        n = len(emotions)
        weights = _weights(data["weights"], n, "'weights'")
        masks, alpha = _masks_from_json(data.get("masks"), n)
        keyframes = []
        for item in data.get("keyframes", []):
            k_masks, k_alpha = _masks_from_json(item.get("masks"), n)
            frame = item["frame"]
            if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
                raise ProjectError(f"keyframe frame must be a whole number >= 0, got {frame!r}")
            keyframes.append(Keyframe(frame, _weights(item["weights"], n, "keyframe weights"), k_masks, k_alpha))
        render = RenderSettings.from_dict(dict(data.get("render") or {}))
        if render.interpolation not in ("linear", "smoothstep"):
            raise ProjectError(f"unknown interpolation {render.interpolation!r}")
        model_dir = data.get("model_dir")
        return DocumentState(
            emotions=emotions,
            weights=weights,
            normalise=bool(data.get("normalise", False)),
            masks=masks,
            alpha=alpha if alpha is not None else [1.0] * n,
            keyframes=keyframes,
            portrait_path=_abs(data.get("portrait"), base),
            audio_path=_abs(data.get("audio"), base),
            model_dir=model_dir if model_dir in (None, "tiny") else _abs(model_dir, base),
            expert_packs=[p for p in (_abs(p, base) for p in data.get("expert_packs", [])) if p],
            render=render,
        )
    except ProjectError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OSError) as exc:
        raise ProjectError(f"the project file is damaged ({type(exc).__name__}: {exc})") from exc


def load_project(path: str | os.PathLike[str]) -> DocumentState:
    """Read a ``*.moee`` file; raises ProjectError with a readable message on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"project file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read project file {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProjectError(f"{path.name} is not a valid project file (broken JSON at line {exc.lineno})") from exc
    return state_from_json(data, path)


def save_project(state: DocumentState, path: str | os.PathLike[str]) -> None:
    """Write a project file atomically (raises ProjectError if the folder is not writable)."""
    try:
        atomic_write_text(path, json.dumps(state_to_json(state, path), indent=1))
    except MoEEError as exc:
        raise ProjectError(f"cannot save project to {path}: {exc}") from exc
    except OSError as exc:
        raise ProjectError(f"cannot save project to {path}: {exc}") from exc
