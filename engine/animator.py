"""The one animator contract: what every renderer offers, what each can do, and the one place that picks one.

Two renderers implement :class:`Animator`:

* ``"portrait"`` (:class:`engine.portrait.animator.PortraitAnimator`, the default): the motion MoE's 68-landmark
  performance carried onto the user's portrait at its own resolution;
* ``"pixel"`` (:class:`engine.diffusion.pipeline.Animator`): the pixel U-Net (diffusion) on its own face crop.

The contract (:class:`Animator`): ``prepare(portrait, audio=None, *, fps, num_frames, max_duration, ...)``,
``render_frame(prepared, frame_index=0, gates=None, *, cancel, ...)`` and ``render_clip(prepared, gates=None, *,
start, stop, cancel, ...)``: everything after the leading arguments is keyword-only, and a keyword
the renderer does not read is refused (``TypeError``, :func:`check_options`), sampling options included where it
has no sampling. Each renderer says what it supports in :class:`Capabilities`; a driver (the CLI, the studio,
:func:`engine.export.export_clip`) asks those flags, never the class, and passes render options through
:func:`render_options`. Frames come back as
:class:`FrameResult`; a render stops at the next step once its :class:`CancelToken` is cancelled.

This module is light (no torch, no diffusers): the CLI reads the capability tables before any model loads.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from engine.errors import CancelledError, EmotionSpecError

if TYPE_CHECKING:  # annotations only: importing the contract (and so `moee`'s parser) loads no numpy
    import numpy as np

#: The renderers :func:`load_animator` builds, default first.
RENDERERS = ("portrait", "pixel")
DEFAULT_RENDERER = "portrait"
#: Devices the CPU-only renderers accept.
CPU_DEVICES = ("auto", "cpu")
#: The render options (``render_frame`` / ``render_clip`` keywords) each capability brings: a renderer reads
#: them only when it has that capability, and refuses them (TypeError) otherwise. A generic driver passes its
#: settings through :func:`render_options`, which keeps those the renderer reads.
CAPABILITY_RENDER_OPTIONS: dict[str, frozenset[str]] = {
    "sampling": frozenset({"steps", "seed", "sampler", "strength"}),
    "guidance": frozenset({"guidance_scale"}),
}
#: The shared sampling vocabulary: every render option that belongs to a capability.
SAMPLING_OPTIONS = frozenset().union(*CAPABILITY_RENDER_OPTIONS.values())


class CancelToken:
    """Set by the caller (any thread) to stop a render at the next step (a denoising step or a frame)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`CancelledError` once cancelled."""
        if self._event.is_set():
            raise CancelledError("render cancelled")


@dataclass
class FrameResult:
    """One rendered frame of a clip: its index, the RGB uint8 image and the progress (0..1) over the range."""

    index: int
    image: np.ndarray
    progress: float


@dataclass(frozen=True)
class Capabilities:
    """What a renderer supports (a driver asks these instead of the renderer's class)."""

    #: Denoising steps, seed of the noise, sampler and strength (``--steps --sampler --strength``).
    sampling: bool = False
    #: Emotion and lip guidance scales (``--guidance --lip-guidance``).
    guidance: bool = False
    #: Slider calibration curves (``--calibration``).
    calibration: bool = False
    #: The portrait's own background outside the person (``--keep-background``).
    keep_background: bool = False
    #: A face crop mode (``--crop``).
    crop: bool = False
    #: Custom expert packs (``--expert``; each renderer reads its own kind).
    custom_experts: bool = False
    #: Emotion from the voice's tone (``--emotion-audio``).
    voice_tone: bool = False
    #: ``--text`` and ``--emotion-audio`` condition the model itself (``prepare(emotion_text=, emotion_audio=)``);
    #: without it the text becomes slider weights and the voice's tone sets the sliders over time.
    emotion_conditioning: bool = False
    #: Blinks, head motion and gaze (``--blinks --head-motion --gaze``).
    life: bool = False
    #: Which face of several to animate (``--face``).
    face_choice: bool = False
    #: Renders at the portrait's own resolution (else the model's small face crop).
    full_resolution: bool = False
    #: Can paste its face crop back into the portrait at the portrait's resolution (``--paste-back``).
    paste_back: bool = False
    #: Local gate heat maps of the last preview (``last_gate_maps``).
    gate_maps: bool = False
    #: Runs on an accelerator (``--device``); False: the CPU only.
    device: bool = False

    def names(self) -> frozenset[str]:
        """The capabilities this renderer has, by name."""
        return frozenset(f.name for f in fields(self) if getattr(self, f.name))


PORTRAIT_CAPABILITIES = Capabilities(custom_experts=True, voice_tone=True, life=True, face_choice=True,
                                     full_resolution=True)
PIXEL_CAPABILITIES = Capabilities(sampling=True, guidance=True, calibration=True, keep_background=True, crop=True,
                                  custom_experts=True, voice_tone=True, emotion_conditioning=True, gate_maps=True,
                                  device=True, paste_back=True)
#: Each renderer's capabilities, by :data:`RENDERERS` name.
RENDERER_CAPABILITIES: dict[str, Capabilities] = {"portrait": PORTRAIT_CAPABILITIES, "pixel": PIXEL_CAPABILITIES}


@runtime_checkable
class Animator(Protocol):
    """What every renderer offers (engine.portrait.animator.PortraitAnimator, engine.diffusion.pipeline.Animator)."""

    capabilities: ClassVar[Capabilities]
    renderer: ClassVar[str]

    @property
    def emotions(self) -> Any:
        """The slider names, in gate order (the six, then custom experts)."""

    def load_expert_pack(self, path: str | Path) -> str:
        """Add a custom emotion (one more slider); returns its name."""

    def emotion_from_text(self, text: str) -> dict[str, float]:
        """Slider weights from a description such as ``"sadly surprised"``."""

    def prepare(self, portrait: Any, audio: Any = None, **options: Any) -> Any:
        """Prepare (cache) a portrait and audio track; options keyword-only (``fps``, ``num_frames``, ...)."""

    def render_frame(self, prepared: Any, frame_index: int = 0, gates: Any = None, **options: Any) -> np.ndarray:
        """One frame as RGB uint8; options keyword-only (``cancel`` and the renderer's own)."""

    def render_clip(self, prepared: Any, gates: Any = None, **options: Any) -> Iterator[FrameResult]:
        """Frames ``start .. stop - 1`` in order; options keyword-only (``start``, ``stop``, ``cancel``, ...)."""


def check_options(method: str, options: Mapping[str, Any], known: frozenset[str] | set[str]) -> None:
    """Refuse (``TypeError``, as Python does for a bad keyword) an option ``method`` does not know."""
    unknown = sorted(set(options) - set(known))
    if not unknown:
        return
    message = (f"{method}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
               f"it takes {', '.join(sorted(known))}")
    missing = sorted(cap for cap, names in CAPABILITY_RENDER_OPTIONS.items() if names & set(unknown))
    if missing:
        message += (f" (this renderer has no {' or '.join(missing)}: pass a driver's settings through "
                    "engine.animator.render_options, which keeps only those the renderer reads)")
    raise TypeError(message)


def render_options(animator: Any, **options: Any) -> dict[str, Any]:
    """The ``options`` (``steps=``, ``seed=``, ``guidance_scale=``, ...) that ``animator`` reads, for its
    ``render_frame`` / ``render_clip``: an option of :data:`CAPABILITY_RENDER_OPTIONS` is kept only where the
    animator has that capability, and None (the renderer's own default) is left out. Other options pass as
    they are (the renderer refuses an unknown one)."""
    has = capabilities_of(animator).names()
    dropped = set().union(*(names for cap, names in CAPABILITY_RENDER_OPTIONS.items() if cap not in has))
    return {name: value for name, value in options.items() if value is not None and name not in dropped}


def frame_shape(prepared: Any) -> tuple[int, int]:
    """(height, width) of the frames a render of ``prepared`` returns: the portrait its face crop is pasted back
    into where there is one, else the prepared portrait (the whole portrait, or the model's crop)."""
    frame = getattr(prepared, "paste_portrait", None)
    frame = prepared.portrait if frame is None else frame
    return int(frame.shape[0]), int(frame.shape[1])


def default_fps(animator: Any) -> int:
    """The frame rate ``animator`` renders at unless told otherwise (its model's, else the portrait renderer's)."""
    from engine.portrait.animator import DEFAULT_FPS

    return int(getattr(getattr(animator, "cfg", None), "fps", 0) or DEFAULT_FPS)


def check_frame_index(prepared: Any, frame_index: int) -> None:
    """Refuse (EmotionSpecError) a frame outside the prepared clip (a still has one frame)."""
    count = max(int(prepared.num_frames), 1)
    if not 0 <= frame_index < count:
        raise EmotionSpecError(f"frame {frame_index} is outside the clip (0..{count - 1})")


def check_frame_range(prepared: Any, start: int, stop: int | None) -> int:
    """``stop`` resolved (None: the clip's end), after refusing (EmotionSpecError) a range outside the clip."""
    stop = int(prepared.num_frames) if stop is None else int(stop)
    if not 0 <= start < stop <= prepared.num_frames:
        raise EmotionSpecError(f"frame range {start}..{stop} is outside the clip (0..{prepared.num_frames})")
    return stop


def resolve_gates(gates: Any, frame_index: int, num_emotions: int) -> Any:
    """The validated :class:`engine.moee.GateControl` of one frame: ``gates`` is None (every slider at 0), one
    GateControl, or a callable ``frame -> GateControl`` (keyframes)."""
    from engine.moee import GateControl

    if gates is None:
        return GateControl()
    control = gates if isinstance(gates, GateControl) else gates(frame_index)
    return control.validated(num_emotions)


def renderer_capabilities(renderer: str) -> Capabilities:
    """The capabilities of a renderer by name (EmotionSpecError for an unknown one)."""
    check_renderer(renderer)
    return RENDERER_CAPABILITIES[renderer]


def check_renderer(renderer: str) -> None:
    if renderer not in RENDERERS:
        raise EmotionSpecError(f"unknown renderer {renderer!r}; choose one of {', '.join(RENDERERS)}")


def capabilities_of(animator: Any) -> Capabilities:
    """An animator's :class:`Capabilities` (none for an object outside the contract). A wrapper that passes an
    animator's frames on (the studio's export filters) may forward them as its own ``capabilities``."""
    caps = getattr(animator, "capabilities", None)
    return caps if isinstance(caps, Capabilities) else Capabilities()


def has_motion_model(model_dir: str | Path) -> bool:
    """True when the folder holds the motion model the portrait renderer reads."""
    from engine.portrait.motion import MOTION_CONFIG, MOTION_WEIGHTS

    return all((Path(model_dir) / name).is_file() for name in (MOTION_CONFIG, MOTION_WEIGHTS))


def load_animator(model_dir: str | Path | None = None, renderer: str = DEFAULT_RENDERER, device: str = "auto",
                  note: Callable[[str], None] | None = None) -> Animator:
    """The one place that builds a renderer: ``renderer`` of :data:`RENDERERS` from ``model_dir``
    (None: the bundled model).

    The fallback rule (the same for the CLI and the studio): the portrait renderer reads the folder's motion
    model; **a folder without one is animated by the bundled motion model**, and ``note`` (default: standard
    error) says so. The renderer never switches silently: ``renderer="pixel"`` renders the folder's pixel model.
    The portrait renderer runs on the CPU: a ``device`` other than auto/cpu is refused (EmotionSpecError).
    """
    from engine.io.resources import DEFAULT_MODEL_DIR

    check_renderer(renderer)
    folder = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    if renderer == "pixel":
        from engine.diffusion.pipeline import Animator as PixelAnimator

        return PixelAnimator.from_pretrained(folder, device=device)
    if str(device) not in CPU_DEVICES:
        raise EmotionSpecError(f"device {device}: the portrait renderer runs on the CPU; use the pixel renderer "
                               "for a GPU")
    if not has_motion_model(folder):
        message = (f"{folder} has no motion model; the portrait is animated by the bundled one "
                   "(--renderer pixel renders this folder's pixel model)")
        (note or (lambda text: print(f"note: {text}", file=sys.stderr)))(message)
        folder = DEFAULT_MODEL_DIR
    # Built from the motion model directly: PortraitAnimator.from_pretrained would import the pixel pipeline.
    from engine.portrait.animator import PortraitAnimator
    from engine.portrait.motion import MotionModel

    return PortraitAnimator(MotionModel.load(folder))
