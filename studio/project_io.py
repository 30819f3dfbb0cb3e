"""Project files (``*.moee``): versioned JSON, masks embedded as base64 16-bit PNG, atomic writes.

Layout (version 2)::

    {"format": "moee-project", "version": 2,
     "portrait": "face.png" | null,        # relative to the project file when possible
     "audio": "speech.wav" | null,
     "duration": 4.0 | null,               # seconds of a clip without audio (null or absent: a still)
     "model_dir": "assets/models/demo" | null,
     "expert_packs": ["smug.moeexpert.safetensors", ...],
     "emotions": ["happiness", ..., "smug"],
     "weights": [0.6, 0, 0, 0, 0, 0.4, 0], "normalise": false,
     "masks": {"height": H, "width": W, "alpha": [...], "ids": [null | <index into mask_pool>, ...]},
     "keyframes": [{"frame": 0, "weights": [...], "masks": <same as "masks"> | null, "no_mask": true (optional)}],
     "mask_pool": ["<base64 PNG>", ...],   # every distinct mask once, shared by all keys using it
     "render": {"preview_steps": 4, "refine_steps": 16, "seed": 0, "fps": 25, ...}}

Version 1 files (each mask set embeds its PNGs: ``"png": [null | "<base64 PNG>", ...]``) still load;
``"duration"`` is optional (files without it load as before: no audio makes a still).
Masks are embedded (one PNG per emotion, 16-bit greyscale, ``null`` when empty) so a project is
one self-contained file that can be written atomically. Masks are at most
:data:`MAX_MASK_SIDE` pixels a side, checked on the declared size and on each PNG header before
its pixels are decoded. Every field is validated; any problem raises :class:`ProjectError` with a
message naming the field; nothing is changed in that case.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from studio.document import DocumentState, RenderSettings
from studio.engine_api import LIFE_RANGES, MoEEError, atomic_write_text
from studio.keyframes import INTERPOLATIONS, Keyframe

FORMAT = "moee-project"
VERSION = 2  # 2: distinct masks stored once in "mask_pool"; version 1 files (masks inline) still load
SUFFIX = ".moee"
#: Largest mask side in pixels. Masks live at the prepared portrait's resolution (the model size,
#: 512 px at most today); anything larger is refused before a pixel is decoded.
MAX_MASK_SIDE = 1024
#: Longest clip without audio a project may ask for (seconds; the engine's longest clip).
MAX_DURATION = 600.0
#: Largest keyframe index (about 11 hours at 25 fps).
MAX_FRAME = 1_000_000
#: Allowed range of each whole-number render setting.
RENDER_LIMITS: dict[str, tuple[int, int]] = {
    "preview_steps": (1, 1000),
    "refine_steps": (0, 1000),
    "export_steps": (1, 1000),
    "seed": (0, 2**32 - 1),
    "fps": (1, 240),
    "refine_delay_ms": (0, 600_000),
}
#: Allowed range of each real-valued render setting (the portrait renderer's life: engine/portrait/performance.py).
RENDER_REAL_LIMITS: dict[str, tuple[float, float]] = dict(LIFE_RANGES)


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


def decode_mask(text: str | None, height: int, width: int, field: str = "mask") -> np.ndarray:
    """Inverse of :func:`encode_mask`; ``field`` names the value in error messages.

    The PNG header's size is checked against ``height x width`` *before* any pixel is decoded
    (``Image.open`` only reads the header), so a decompression bomb costs nothing.
    """
    from PIL import Image, UnidentifiedImageError

    if text is None:
        return np.zeros((height, width), np.float32)
    if not isinstance(text, str):
        raise ProjectError(f"{field} must be a base64 PNG string or null, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ProjectError(f"{field} is not valid base64 PNG data") from None
    try:
        image = Image.open(io.BytesIO(raw), formats=["PNG"])
    except Image.DecompressionBombError:
        raise ProjectError(f"{field} is an image far larger than a mask may be "
                           f"(at most {MAX_MASK_SIDE}x{MAX_MASK_SIDE} px)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ProjectError(f"{field} is not a PNG image") from None
    with image:
        if image.size != (width, height):
            raise ProjectError(f"{field} is {image.size[0]}x{image.size[1]} px, expected {width}x{height}")
        try:
            image.load()
            array = np.asarray(image).astype(np.float32)
        except (OSError, ValueError, SyntaxError, MemoryError, Image.DecompressionBombError) as exc:
            raise ProjectError(f"{field} is a damaged PNG image ({exc})") from None
        scale = 65535.0 if image.mode.startswith("I") else 255.0
    if array.ndim == 3:
        array = array[..., 0]
    if array.shape != (height, width):
        raise ProjectError(f"{field} is {array.shape[-1]}x{array.shape[0]} px, expected {width}x{height}")
    return np.clip(array / scale, 0.0, 1.0)


class _MaskWriter:
    """Collects the distinct mask PNGs of a project: each is stored once, masks refer to it by id."""

    def __init__(self) -> None:
        self.pool: list[str] = []
        self._ids: dict[str, int] = {}

    def add(self, mask: np.ndarray) -> int | None:
        png = encode_mask(mask)
        if png is None:
            return None
        if png not in self._ids:
            self._ids[png] = len(self.pool)
            self.pool.append(png)
        return self._ids[png]

    def masks_to_json(self, masks: np.ndarray | None, alpha: list[float] | None) -> dict[str, Any] | None:
        if masks is None:
            return None
        return {
            "height": int(masks.shape[1]),
            "width": int(masks.shape[2]),
            "alpha": [float(a) for a in (alpha if alpha is not None else [1.0] * len(masks))],
            "ids": [self.add(m) for m in masks],
        }


class _MaskReader:
    """Reads mask sets of either layout: ``"png"`` (version 1, embedded) or ``"ids"`` into ``mask_pool``.

    Each pool entry is decoded once; keyframes whose masks are identical share one (read-only) array.
    """

    def __init__(self, pool: Any) -> None:
        if pool is None:
            pool = []
        if not isinstance(pool, list):
            raise ProjectError("'mask_pool' must be a list of base64 PNG strings")
        self.pool = pool
        self._decoded: dict[tuple[int, int, int], np.ndarray] = {}
        self._stacks: dict[tuple[Any, ...], np.ndarray] = {}

    def _pooled(self, ref: Any, h: int, w: int, field: str) -> np.ndarray:
        if ref is None:
            return np.zeros((h, w), np.float32)
        if isinstance(ref, bool) or not isinstance(ref, int) or not 0 <= ref < len(self.pool):
            raise ProjectError(f"{field} must be null or an index into 'mask_pool' (0..{len(self.pool) - 1}), got {ref!r}")
        key = (ref, h, w)
        if key not in self._decoded:
            self._decoded[key] = decode_mask(self.pool[ref], h, w, f"mask_pool[{ref}]")
        return self._decoded[key]

    def read(self, data: Any, count: int, field: str, shared: bool) -> tuple[np.ndarray | None, list[float] | None]:
        """(masks ``(count, H, W)``, alpha) of the mask set ``data`` (``None`` = no masks)."""
        if data is None:
            return None, None
        if not isinstance(data, dict):
            raise ProjectError(f"'{field}' must be an object or null")
        h, w = _whole(data.get("height"), f"{field}.height", 1, MAX_MASK_SIDE), _whole(
            data.get("width"), f"{field}.width", 1, MAX_MASK_SIDE)
        alpha = data.get("alpha", [1.0] * count)
        if not isinstance(alpha, list) or len(alpha) != count or not all(
                _is_number(a) and 0.0 <= float(a) <= 1.0 for a in alpha):
            raise ProjectError(f"'{field}.alpha' must be one number in 0..1 per emotion ({count})")
        alpha = [float(a) for a in alpha]
        if "ids" in data:
            refs, kind = data["ids"], "ids"
        else:
            refs, kind = data.get("png", []), "png"
        if not isinstance(refs, list) or len(refs) != count:
            got = len(refs) if isinstance(refs, list) else type(refs).__name__
            raise ProjectError(f"'{field}.{kind}' must list one mask per emotion: the project has {count} emotions, got {got}")
        if kind == "ids":
            cache_key = (h, w, *refs) if all(r is None or isinstance(r, int) for r in refs) else None
            if shared and cache_key in self._stacks:
                return self._stacks[cache_key], alpha
            stack = np.stack([self._pooled(r, h, w, f"{field}.ids[{i}]") for i, r in enumerate(refs)])
            if shared and cache_key is not None:
                stack.flags.writeable = False
                self._stacks[cache_key] = stack
            return stack.astype(np.float32, copy=False), alpha
        stack = np.stack([decode_mask(p, h, w, f"{field}.png[{i}]") for i, p in enumerate(refs)])
        return stack.astype(np.float32), alpha

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


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _whole(value: Any, field: str, low: int, high: int) -> int:
    """``value`` as an int in ``low..high`` (a bool, float or string is refused, naming ``field``)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProjectError(f"'{field}' must be a whole number in {low}..{high}, got {value!r}")
    return int(value)


def _weights(values: Any, count: int, what: str) -> list[float]:
    if not isinstance(values, list) or len(values) != count:
        raise ProjectError(f"{what} must be a list of {count} numbers")
    out = []
    for v in values:
        if not _is_number(v) or not 0.0 <= float(v) <= 1.0:
            raise ProjectError(f"{what} must be numbers in 0..1, got {v!r}")
        out.append(float(v))
    return out


def _path_field(value: Any, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ProjectError(f"'{field}' must be a file path (text) or null, got {value!r}")
    return value or None


def _real(value: Any, field: str, low: float, high: float) -> float:
    """A finite number within ``low..high`` (ProjectError naming the field otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProjectError(f"'{field}' must be a number, got {value!r}")
    if not low <= value <= high:
        raise ProjectError(f"'{field}' must be within {low:g}..{high:g}, got {value!r}")
    return float(value)


def render_from_json(data: Any) -> RenderSettings:
    """Validate the ``"render"`` object field by field (raises ProjectError naming the field).

    Missing fields take their defaults; unknown fields are ignored (a newer minor addition).
    """
    if data is None:
        return RenderSettings()
    if not isinstance(data, dict):
        raise ProjectError(f"'render' must be an object, got {data!r}")
    values: dict[str, Any] = {}
    for name, (low, high) in RENDER_LIMITS.items():
        if name in data:
            values[name] = _whole(data[name], f"render.{name}", low, high)
    for name, (low, high) in RENDER_REAL_LIMITS.items():
        if name in data:
            values[name] = _real(data[name], f"render.{name}", low, high)
    if "interpolation" in data:
        mode = data["interpolation"]
        if mode not in INTERPOLATIONS:
            raise ProjectError(f"'render.interpolation' must be one of {', '.join(INTERPOLATIONS)}, got {mode!r}")
        values["interpolation"] = mode
    return RenderSettings(**values)


def _duration(value: Any) -> float | None:
    """The optional ``duration`` field: null, or seconds in (0, :data:`MAX_DURATION`]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= MAX_DURATION:
        raise ProjectError(f"'duration' must be null or a number of seconds above 0 and at most {MAX_DURATION:g}, "
                           f"got {value!r}")
    return float(value)


# ------------------------------------------------------------------ API
def state_to_json(state: DocumentState, project_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object of a project file saved at ``project_path`` (each distinct mask stored once)."""
    base = Path(project_path).resolve().parent
    writer = _MaskWriter()
    masks = writer.masks_to_json(state.masks, state.alpha)
    keyframes = [
        {"frame": int(k.frame), "weights": [float(w) for w in k.weights], "masks": writer.masks_to_json(k.masks, k.alpha),
         **({"no_mask": True} if k.no_mask and k.masks is None else {})}
        for k in sorted(state.keyframes, key=lambda k: k.frame)
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "portrait": _rel(state.portrait_path, base),
        "audio": _rel(state.audio_path, base),
        "duration": state.duration,
        "model_dir": state.model_dir if state.model_dir in (None, "tiny") else _rel(state.model_dir, base),
        "expert_packs": [_rel(p, base) for p in state.expert_packs],
        "emotions": list(state.emotions),
        "weights": [float(w) for w in state.weights],
        "normalise": bool(state.normalise),
        "masks": masks,
        "keyframes": keyframes,
        "mask_pool": writer.pool,
        "render": state.render.to_dict(),
    }


def state_from_json(data: Any, project_path: str | os.PathLike[str]) -> DocumentState:
    """Parse and validate a project JSON object (raises ProjectError naming the bad field)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProjectError("this is not a MoEE Studio project (missing \"format\": \"moee-project\")")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ProjectError(f"the project has no valid version number ({version!r})")
    if version > VERSION:
        raise ProjectError(f"the project was saved by a newer MoEE Studio (format version {version}); please update")
    base = Path(project_path).resolve().parent
    try:
        emotions = data.get("emotions")
        if (not isinstance(emotions, list) or not emotions or not all(isinstance(e, str) and e for e in emotions)
                or len(set(emotions)) != len(emotions)):
            raise ProjectError("'emotions' must be a non-empty list of distinct names")
        n = len(emotions)
        weights = _weights(data.get("weights"), n, "'weights'")
        normalise = data.get("normalise", False)
        if not isinstance(normalise, bool):
            raise ProjectError(f"'normalise' must be true or false, got {normalise!r}")
        render = render_from_json(data.get("render"))
        portrait = _path_field(data.get("portrait"), "portrait")
        audio = _path_field(data.get("audio"), "audio")
        duration = _duration(data.get("duration"))
        model_dir = _path_field(data.get("model_dir"), "model_dir")
        packs = data.get("expert_packs", [])
        if not isinstance(packs, list):
            raise ProjectError("'expert_packs' must be a list of file paths")
        packs = [_path_field(p, f"expert_packs[{i}]") for i, p in enumerate(packs)]
        reader = _MaskReader(data.get("mask_pool"))
        masks, alpha = reader.read(data.get("masks"), n, "masks", shared=False)
        if masks is not None and not masks.flags.writeable:
            masks = masks.copy()  # the live masks are painted in place: never share them
        items = data.get("keyframes", [])
        if not isinstance(items, list):
            raise ProjectError("'keyframes' must be a list")
        keyframes = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ProjectError(f"'keyframes[{i}]' must be an object")
            frame = _whole(item.get("frame"), f"keyframes[{i}].frame", 0, MAX_FRAME)
            k_weights = _weights(item.get("weights"), n, f"'keyframes[{i}].weights'")
            k_masks, k_alpha = reader.read(item.get("masks"), n, f"keyframes[{i}].masks", shared=True)
            no_mask = item.get("no_mask", False)
            if not isinstance(no_mask, bool):
                raise ProjectError(f"'keyframes[{i}].no_mask' must be true or false")
            keyframes.append(Keyframe(frame, k_weights, k_masks, k_alpha, no_mask=no_mask and k_masks is None))
        return DocumentState(
            emotions=list(emotions),
            weights=weights,
            normalise=normalise,
            masks=masks,
            alpha=alpha if alpha is not None else [1.0] * n,
            keyframes=keyframes,
            portrait_path=_abs(portrait, base),
            audio_path=_abs(audio, base),
            duration=duration,
            model_dir=model_dir if model_dir in (None, "tiny") else _abs(model_dir, base),
            expert_packs=[p for p in (_abs(p, base) for p in packs) if p],
            render=render,
        )
    except ProjectError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OSError, MemoryError) as exc:
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
