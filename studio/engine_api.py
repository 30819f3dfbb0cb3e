"""The studio's only doorway into the engine: thin wrappers over the engine's public API.

Keeping every engine import here makes the integration points easy to see and to adapt.
Heavy modules (torch, the pipeline) are imported lazily so the UI starts fast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.moee import GateControl  # re-exported: the studio builds these

TINY = "tiny"  # pseudo model folder: an untrained tiny model (tests, screenshots without assets)


def default_model_dir() -> str | None:
    """The bundled demo model folder if it exists, else ``None``."""
    from engine.resources import default_model_dir as bundled

    path = bundled()
    return str(path) if path.is_dir() else None


def load_animator(model_dir: str | None, device: str = "cpu", seed: int = 0) -> Any:
    """Build an Animator: ``"tiny"`` = random tiny model, ``None`` = bundled default, else a folder."""
    from engine.pipeline import Animator

    if model_dir == TINY:
        from engine.config import tiny_config

        return Animator.from_config(tiny_config(), device=device, seed=seed)
    return Animator.from_pretrained(model_dir, device=device)


def cancel_token() -> Any:
    """A fresh engine CancelToken."""
    from engine.pipeline import CancelToken

    return CancelToken()


def load_image(path: str) -> np.ndarray:
    """Any readable image file -> RGB uint8 (engine.image.load_image)."""
    from engine.image import load_image as _load

    return _load(path)


def load_audio(path: str) -> Any:
    """An audio file -> engine AudioClip (samples float32 mono, sample_rate, duration)."""
    from engine.audio import load_audio as _load

    return _load(path)


def region_mask(points: np.ndarray, region: str, height: int, width: int) -> np.ndarray:
    """Float mask of a face region (brows, eyes, nose, mouth, cheeks, jaw, forehead) from landmarks."""
    from engine.face import region_mask as _region

    return np.asarray(_region(points, region, height, width), np.float32)


def face_regions() -> list[str]:
    """Region names the landmark presets offer."""
    try:
        from engine import face

        regions = getattr(face, "REGIONS", None)
        if regions:
            return list(regions)
    except Exception:  # noqa: BLE001 - face module optional until it lands
        pass
    return ["brows", "eyes", "nose", "mouth", "cheeks", "jaw", "forehead"]


def person_matte(image: np.ndarray) -> np.ndarray:
    """Float (H, W) foreground matte of a rendered frame (for PNG sequences with alpha)."""
    from engine.face import person_matte as _matte

    return np.asarray(_matte(image), np.float32)


def open_writer(path: str, fmt: str, fps: float, audio: Any = None) -> Any:
    """An engine video writer for ``fmt`` (mp4, png, png-alpha, gif); atomic on close."""
    from engine.video import open_writer as _open

    kind = {"mp4": "mp4", "gif": "gif", "png": "png", "png-alpha": "png"}[fmt]
    return _open(path, fps, audio=audio, format=kind)


def probe_video(path: str) -> Any:
    """Basic facts of a written video (frames, fps, size, audio)."""
    from engine.video import probe_video as _probe

    return _probe(path)


def fit_gates(gates: Any, count: int) -> Any:
    """Trim or pad a GateControl to ``count`` emotions (a project may name experts not loaded yet)."""
    if gates is None or not hasattr(gates, "global_weights"):
        return gates
    weights = None if gates.global_weights is None else list(gates.global_weights)
    if weights is None or len(weights) == count:
        return gates
    masks, alpha = gates.local_masks, gates.local_alpha
    weights = (weights + [0.0] * count)[:count]
    if masks is not None:
        m = np.asarray(masks, np.float32)
        pad = np.zeros((max(0, count - len(m)),) + m.shape[1:], np.float32)
        masks = np.concatenate([m, pad])[:count]
        alpha = (list(alpha if alpha is not None else [1.0] * len(m)) + [0.0] * count)[:count]
    return GateControl(global_weights=weights, local_masks=masks, local_alpha=alpha)
