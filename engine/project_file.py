"""A studio project (``*.moee``) read without Qt: its emotion timeline as gates for any frame, and its render
settings (``moee batch`` renders a line of dialogue with a character set up once in the studio).

The file format is the studio's (studio/project_io.py documents it and writes it): versioned JSON with
the sliders, the painted masks (base64 16-bit PNGs, stored once in ``mask_pool`` or inline in version 1),
the keyframes and the render settings. This reader takes what a render needs and checks it field by field;
between keyframes the sliders and the masks blend as in the studio (linear or smoothstep; before the first
and after the last keyframe they hold; only keyframes that carry masks take part in the mask track).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.emotions import normalise
from engine.errors import EmotionSpecError
from engine.interpolation import INTERPOLATIONS, ease, key_bracket
from engine.moee import GateControl

FORMAT = "moee-project"
#: Newest format version this reader knows (the studio's ``VERSION``).
VERSION = 2
SUFFIX = ".moee"
#: Largest mask side (pixels), checked on the PNG header before its pixels are decoded.
MAX_MASK_SIDE = 1024
#: The render settings a batch job takes from a project, with their allowed ranges.
RENDER_RANGES: dict[str, tuple[float, float]] = {
    "fps": (1, 240), "seed": (0, 2**32 - 1), "blinks_per_minute": (0.0, 60.0), "head_motion": (0.0, 3.0),
    "gaze": (0.0, 3.0),
}


class ProjectFileError(EmotionSpecError):
    """A project file cannot be read or does not fit the renderer (the message names the file and field)."""


@dataclass(frozen=True)
class KeyedGates:
    """The emotion state keyed at one frame: sliders and, optionally, masks ``(E, H, W)`` with their alpha."""

    frame: int
    weights: tuple[float, ...]
    masks: np.ndarray | None = None
    alpha: tuple[float, ...] | None = None


@dataclass
class ProjectGates:
    """Gates of every frame of a project, in the renderer's emotion order (a picklable GateSpec callable)."""

    weights: tuple[float, ...]
    masks: np.ndarray | None
    alpha: tuple[float, ...]
    keyframes: tuple[KeyedGates, ...] = ()
    normalise: bool = False
    interpolation: str = "smoothstep"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def parts(self, frame: int) -> tuple[list[float], np.ndarray | None, list[float] | None]:
        """(weights, masks or None, alpha or None) at ``frame`` (the studio's GateSchedule.parts)."""
        weights, masks, alpha = list(self.weights), self.masks, list(self.alpha)
        if self.keyframes:
            left, right, u = _bracket(self.keyframes, frame, self.interpolation)
            weights = [(1.0 - u) * a + u * b for a, b in zip(left.weights, right.weights, strict=True)]
        masked = tuple(k for k in self.keyframes if k.masks is not None)
        if masked:
            left, right, u = _bracket(masked, frame, self.interpolation)
            if left is right or left.masks.shape != right.masks.shape or u == 0.0:
                masks, alpha = left.masks, list(left.alpha or ())
            else:
                masks = ((1.0 - u) * left.masks + u * right.masks).astype(np.float32)
                alpha = [(1.0 - u) * a + u * b for a, b in zip(left.alpha or (), right.alpha or (), strict=True)]
        if self.normalise:
            weights = normalise(weights)
        if masks is None:
            return weights, None, None
        active = [float(a) if float(masks[i].max(initial=0.0)) > 0.0 else 0.0 for i, a in enumerate(alpha)]
        if not any(a > 0 for a in active):
            return weights, None, None
        return weights, masks, active

    def __call__(self, frame: int | None = None) -> GateControl:
        weights, masks, alpha = self.parts(0 if frame is None else int(frame))
        return GateControl(global_weights=weights, local_masks=masks, local_alpha=alpha)


@dataclass
class Project:
    """What a render takes from a project file."""

    path: Path
    gates: ProjectGates
    #: Render settings the project sets (fps, seed, blinks_per_minute, head_motion, gaze), only those present.
    render: dict[str, float] = field(default_factory=dict)
    portrait: Path | None = None
    audio: Path | None = None


def _bracket(keys: Sequence[KeyedGates], frame: float, mode: str) -> tuple[KeyedGates, KeyedGates, float]:
    """The keys around ``frame`` (sorted, non-empty) and the eased blend weight between them."""
    left, right, t = key_bracket(keys, frame)
    return left, right, ease(t, mode)


class _Reader:
    """Checks the fields of one project's JSON; every problem names the file and the field."""

    def __init__(self, path: Path, data: dict[str, Any], emotions: Sequence[str]) -> None:
        self.path, self.data, self.target = path, data, list(emotions)
        self.names: list[str] = []
        self.pool = data.get("mask_pool") or []
        self.decoded: dict[tuple[int, int, int], np.ndarray] = {}

    def fail(self, message: str) -> ProjectFileError:
        return ProjectFileError(f"project {self.path}: {message}")

    def number(self, value: Any, name: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not low <= value <= high:
            raise self.fail(f"'{name}' must be a number in {low:g}..{high:g}, got {value!r}")
        return float(value)

    def vector(self, values: Any, name: str, sliders: bool = True) -> tuple[float, ...]:
        """A per-emotion list of the project mapped onto the renderer's emotions (``sliders``: one the
        renderer lacks must be 0; the alpha of an emotion without a mask does not matter)."""
        if not isinstance(values, list) or len(values) != len(self.names):
            raise self.fail(f"'{name}' must list one number per emotion ({len(self.names)})")
        by_name = {e: self.number(v, name, 0.0, 1.0) for e, v in zip(self.names, values, strict=True)}
        extra = [e for e, v in by_name.items() if e not in self.target and v > 0]
        if extra and sliders:
            raise self.fail(f"'{name}' uses {', '.join(extra)}, which the portrait renderer has no slider for "
                            f"(it has {', '.join(self.target)})")
        return tuple(by_name.get(e, 0.0) for e in self.target)

    def mask(self, ref: Any, height: int, width: int, name: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        if ref is None:
            return np.zeros((height, width), np.float32)
        if isinstance(ref, int) and not isinstance(ref, bool):
            if not 0 <= ref < len(self.pool):
                raise self.fail(f"'{name}' refers to mask_pool[{ref}], which does not exist")
            key = (ref, height, width)
            if key in self.decoded:
                return self.decoded[key]
            text, name = self.pool[ref], f"mask_pool[{ref}]"
        else:
            text, key = ref, None
        try:
            raw = base64.b64decode(str(text).encode("ascii"), validate=True)
            with Image.open(io.BytesIO(raw), formats=["PNG"]) as image:
                if image.size != (width, height):
                    raise self.fail(f"'{name}' is {image.size[0]}x{image.size[1]} px, expected {width}x{height}")
                array = np.asarray(image).astype(np.float32)
                scale = 65535.0 if image.mode.startswith("I") else 255.0
        except (binascii.Error, UnicodeEncodeError, ValueError, UnidentifiedImageError, OSError,
                Image.DecompressionBombError) as exc:
            raise self.fail(f"'{name}' is not a readable PNG mask ({exc})") from None
        mask = np.clip((array[..., 0] if array.ndim == 3 else array) / scale, 0.0, 1.0).astype(np.float32)
        if key is not None:
            self.decoded[key] = mask
        return mask

    def masks(self, data: Any, name: str) -> tuple[np.ndarray | None, tuple[float, ...] | None]:
        if data is None:
            return None, None
        if not isinstance(data, dict):
            raise self.fail(f"'{name}' must be an object or null")
        height = int(self.number(data.get("height"), f"{name}.height", 1, MAX_MASK_SIDE))
        width = int(self.number(data.get("width"), f"{name}.width", 1, MAX_MASK_SIDE))
        refs = data.get("ids", data.get("png"))
        if not isinstance(refs, list) or len(refs) != len(self.names):
            raise self.fail(f"'{name}' must hold one mask per emotion ({len(self.names)})")
        alpha = self.vector(data.get("alpha", [1.0] * len(self.names)), f"{name}.alpha", sliders=False)
        by_name = {e: self.mask(r, height, width, f"{name}[{i}]") for i, (e, r) in enumerate(zip(self.names, refs,
                                                                                              strict=True))}
        stack = np.stack([by_name.get(e, np.zeros((height, width), np.float32)) for e in self.target])
        painted_extra = [e for e, m in by_name.items() if e not in self.target and m.max(initial=0.0) > 0]
        if painted_extra:
            raise self.fail(f"'{name}' paints {', '.join(painted_extra)}, which the portrait renderer has no "
                            "slider for")
        return stack, alpha

    def path_field(self, name: str) -> Path | None:
        value = self.data.get(name)
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise self.fail(f"'{name}' must be a file path or null, got {value!r}")
        return (self.path.resolve().parent / value).resolve()

    def read(self) -> Project:
        data = self.data
        if data.get("format") != FORMAT:
            raise self.fail("not a MoEE Studio project (missing \"format\": \"moee-project\")")
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
            raise self.fail(f"format version {version!r} is not one this engine reads (1..{VERSION})")
        names = data.get("emotions")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names) \
                or len(set(names)) != len(names):
            raise self.fail("'emotions' must be a non-empty list of distinct names")
        self.names = names
        if not isinstance(self.pool, list):
            raise self.fail("'mask_pool' must be a list of base64 PNG strings")
        normalise_on = data.get("normalise", False)
        if not isinstance(normalise_on, bool):
            raise self.fail(f"'normalise' must be true or false, got {normalise_on!r}")
        render = data.get("render") or {}
        if not isinstance(render, dict):
            raise self.fail("'render' must be an object")
        interpolation = render.get("interpolation", "smoothstep")
        if interpolation not in INTERPOLATIONS:
            raise self.fail(f"'render.interpolation' must be one of {', '.join(INTERPOLATIONS)}")
        settings = {key: self.number(render[key], f"render.{key}", *limits)
                    for key, limits in RENDER_RANGES.items() if key in render}
        masks, alpha = self.masks(data.get("masks"), "masks")
        items = data.get("keyframes", [])
        if not isinstance(items, list):
            raise self.fail("'keyframes' must be a list")
        keys = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"'keyframes[{i}]' must be an object")
            frame = int(self.number(item.get("frame"), f"keyframes[{i}].frame", 0, 1_000_000))
            k_masks, k_alpha = self.masks(item.get("masks"), f"keyframes[{i}].masks")
            keys.append(KeyedGates(frame, self.vector(item.get("weights"), f"keyframes[{i}].weights"), k_masks,
                                   k_alpha))
        gates = ProjectGates(self.vector(data.get("weights"), "weights"), masks,
                             alpha if alpha is not None else (1.0,) * len(self.target),
                             tuple(sorted(keys, key=lambda k: k.frame)), normalise_on, interpolation)
        return Project(self.path, gates, settings, self.path_field("portrait"), self.path_field("audio"))


def read_project(path: str | os.PathLike[str], emotions: Sequence[str]) -> Project:
    """Read a ``*.moee`` file for a renderer with these ``emotions``; :class:`ProjectFileError` on any problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProjectFileError(f"project file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectFileError(f"cannot read project file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ProjectFileError(f"project {path}: broken JSON at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ProjectFileError(f"project {path}: not a MoEE Studio project (the file is not a JSON object)")
    return _Reader(path, data, emotions).read()
