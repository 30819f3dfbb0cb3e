"""``moee``: the command line.

The engine's own subcommands (render, bench, batch, init) are defined here; other packages add theirs through
entry points of the group :data:`COMMAND_GROUP` (``[project.entry-points."moee.commands"]`` in
pyproject.toml), each naming an object with the :class:`Command` protocol. The engine never imports
them by name: a package that is not installed, or cannot be imported, takes only its own subcommands away.
"""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

# Only light modules at import time (numpy and the rest load inside the commands): a Ctrl-C while
# ``moee`` starts lands inside main(), which prints "interrupted" instead of a traceback.
from engine.errors import EmotionSpecError, MoEEError, OutputError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

#: Most denoising steps a render accepts (more is a typo; the schedule has 1000 steps).
MAX_STEPS = 1000
#: Largest seed (torch seeds are 64-bit).
MAX_SEED = 2**63 - 1
#: Exit codes: a user error (bad input, as argparse uses), Ctrl-C, and SIGTERM (128 + the signal).
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + int(signal.SIGTERM)
#: Signals that stop a command like Ctrl-C (unwinding through the atomic writers): SIGTERM (``kill``) and,
#: where the platform has it, SIGHUP (the terminal was closed). The exit code is 128 + the signal.
TERMINATING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
#: Devices ``--device`` names (``cuda:N`` picks one GPU).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: Bench defaults.
BENCH_STEPS, BENCH_REPEATS, BENCH_FRAMES = 8, 7, 8
#: Most repeats and frames a bench takes (more is a typo: the 4x clip alone would take hours).
MAX_BENCH_REPEATS, MAX_BENCH_FRAMES = 1000, 1000
#: A render estimated to take longer than this (seconds) or hold more than this memory (bytes) gets a note.
LONG_RENDER_SECONDS = 10 * 60
LARGE_RENDER_BYTES = 4 * 2**30
#: Rough cost of one denoising step of one frame per output pixel on a CPU (seconds): the demo model
#: (64 px) takes about 0.23 s per frame at 8 steps on two cores (an estimate from `moee bench` on the crop path); a GPU is taken as 20x faster.
CPU_SECONDS_PER_PIXEL_STEP = 7e-6
GPU_SPEEDUP = 20.0
#: Rough memory of a render beyond the model: per frame, the audio windows and tokens kept for the clip
#: (bytes per output pixel; the frames themselves stream to the writer).
BYTES_PER_FRAME_PIXEL = 64


class TerminatedError(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every temporary file is removed on the way out."""

    def __init__(self, signum: int = int(signal.SIGTERM)) -> None:
        super().__init__(f"signal {signum}")
        self.signum = int(signum)


def number_flag(flag: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
                integer: bool = False, sampling: str | None = None) -> Callable[[str], float]:
    """An argparse ``type=`` for a numeric flag: the one rule book of every number a command line takes.

    Every value must be finite (``nan``, ``inf`` and ``1e999`` are refused); ``integer`` asks for a whole
    number; ``low`` / ``high`` bound it (``low_open``: ``low`` itself is excluded); ``sampling`` names the
    sampling setting the flag overrides, whose rule (:func:`engine.diffusion.config.sampling_value_problem`) applies.
    Errors name the flag (argparse prints "argument FLAG: ...") and exit with code 2.
    """

    def parse(text: str) -> float:
        from engine.diffusion.config import sampling_value_problem

        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise argparse.ArgumentTypeError(f"{flag} must be {kind}, not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number, not {text!r}")
        if sampling is not None:
            problem = sampling_value_problem(sampling, value)
            if problem:
                raise argparse.ArgumentTypeError(f"{flag} {problem}")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            lower = "" if low is None else (f"above {low:g}" if low_open else f"at least {low:g}")
            upper = "" if high is None else f"at most {high:g}"
            raise argparse.ArgumentTypeError(f"{flag} must be {' and '.join(filter(None, (lower, upper)))}, "
                                             f"not {text}")
        return value

    parse.__name__ = flag  # what argparse names in its own messages
    return parse


def yes_no(value: str | None) -> bool | None:
    """A ``yes|no`` option's value as a bool; None (not given: the model's setting) stays None."""
    return None if value is None else value == "yes"


def recorded_command(subcommand: str, argv: Sequence[str] | None = None) -> str:
    """The command line that ran, as ``moee SUBCOMMAND ARGS`` (for a model's or a file's notes).

    The same whether it ran as ``moee SUBCOMMAND ...`` or as a module (``python -m PACKAGE.MODULE ...``), and without
    the local path of the script; arguments are shell-quoted, so the record can be pasted and run.
    """
    args = list(sys.argv if argv is None else argv)[1:]
    if args[:1] == [subcommand]:
        args = args[1:]
    return shlex.join(["moee", subcommand, *args])


#: The performance flags: flag, the LifeConfig field it sets (its range: engine.portrait.performance.LIFE_RANGES), metavar.
LIFE_FLAGS = (("--blinks", "blinks_per_minute", "PER_MINUTE"), ("--head-motion", "head_motion", "SCALE"),
              ("--gaze", "gaze", "SCALE"))


def add_life_arguments(parser: argparse.ArgumentParser, helps: dict[str, str],
                       defaults: dict[str, float] | None = None) -> None:
    """``--blinks``, ``--head-motion`` and ``--gaze`` (destinations blinks, head_motion, gaze), bounded by
    :data:`engine.portrait.performance.LIFE_RANGES`; ``helps`` and ``defaults`` by LifeConfig field (default None: unset)."""
    from engine.portrait.performance import LIFE_RANGES

    for flag, name, metavar in LIFE_FLAGS:
        low, high = LIFE_RANGES[name]
        parser.add_argument(flag, type=number_flag(flag, low=low, high=high), default=(defaults or {}).get(name),
                            metavar=metavar, help=helps[name])


def _add_render(sub: argparse._SubParsersAction) -> None:
    from engine.io.audio import DEFAULT_MAX_DURATION
    from engine.limits import DEFAULT_MAX_SIZE, MAX_FPS

    p = sub.add_parser("render", help="animate a portrait with an audio track and an emotion mix")
    from engine.portrait.performance import DEFAULT_BLINKS_PER_MINUTE

    p.add_argument("portrait", help="portrait image (png, jpg, ...)")
    p.add_argument("audio", nargs="?", default=None,
                   help="speech audio (wav, mp3, flac, m4a, ...); leave it out and give --duration for a "
                        "silent, emotion-only clip")
    p.add_argument("--duration", type=number_flag("--duration", low=0, low_open=True), default=None,
                   metavar="SECONDS",
                   help="length of a clip without audio (mouth closed; the emotions play); at most --max-duration. "
                        "With an audio file the audio sets the length, so --duration is refused")
    p.add_argument("-o", "--output", required=True,
                   help="output .mp4 or .gif (written atomically), or a new or empty folder for PNG frames")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier PNG sequence of ours in the output / --frames-dir folder "
                        "(a folder holding anything else is never replaced)")
    p.add_argument("--max-duration", type=number_flag("--max-duration", low=0, low_open=True),
                   default=DEFAULT_MAX_DURATION, metavar="SECONDS",
                   help=f"longest audio clip accepted (default {DEFAULT_MAX_DURATION:g} s)")
    p.add_argument("--emotion", default=None,
                   help="slider weights, e.g. 'happiness=0.6,surprise=0.4', or a preset like 'sadly angry'")
    p.add_argument("--text", default=None, help="describe the emotion, e.g. 'sadly surprised'")
    p.add_argument("--emotion-audio", default=None, help="a clip whose tone of voice conditions the emotion")
    p.add_argument("--mask", action="append", default=[], help="painted local gate mask (grey PNG, white = on)")
    p.add_argument("--mask-emotion", action="append", default=[], help="the emotion each --mask paints")
    p.add_argument("--mask-alpha", type=number_flag("--mask-alpha", low=0, high=1), default=1.0,
                   help="how much masks override the model's local gate, 0..1")
    p.add_argument("--steps", type=number_flag("--steps", low=1, high=MAX_STEPS, integer=True), default=None,
                   help=f"denoising steps of --renderer pixel (default {PIXEL_DEFAULTS['steps']})")
    p.add_argument("--seed", type=number_flag("--seed", low=0, high=MAX_SEED, integer=True), default=0)
    p.add_argument("--sampler", default=None, choices=["dpm", "ddim", "euler"],
                   help=f"sampler of --renderer pixel (default {PIXEL_DEFAULTS['sampler']})")
    p.add_argument("--guidance", type=number_flag("--guidance", sampling="guidance_scale"), default=None,
                   help="emotion guidance scale, >= 0 (1 = off; default: the model's)")
    p.add_argument("--strength", type=number_flag("--strength", sampling="strength"), default=None,
                   help="start from the portrait noised to this level, 0..1 (1 = pure noise; default: the model's)")
    p.add_argument("--lip-guidance", type=number_flag("--lip-guidance", sampling="audio_guidance_scale"), default=None,
                   help="lip guidance against silence at the less noisy steps (1 = off, faster; default: the model's)")
    p.add_argument("--keep-background", choices=("yes", "no"), default=None,
                   help="show the portrait's own background outside the person (default: the model's)")
    p.add_argument("--calibration", default=None, metavar="off|FILE",
                   help="slider calibration: 'off' (each slider is the gate) or a curves JSON from "
                        "moee calibrate (default: the model's)")
    p.add_argument("--model", default=None, help="model folder (default: the bundled demo model)")
    p.add_argument("--expert", action="append", default=[], help="expert pack to load (adds an emotion)")
    p.add_argument("--fps", type=number_flag("--fps", low=1, high=MAX_FPS, integer=True), default=None,
                   help=f"frames per second, 1..{MAX_FPS} (default: the model's, 25)")
    p.add_argument("--frames-dir", default=None, help="also write a PNG sequence to this folder")
    add_life_arguments(p, {
        "blinks_per_minute": f"blinks per minute (default {DEFAULT_BLINKS_PER_MINUTE:g}; 0: none); portrait renderer",
        "head_motion": "head nods, turns and sway (1: natural, 0: a perfectly still head); portrait renderer",
        "gaze": "eye movements (1: natural, 0: a fixed look at the viewer); portrait renderer"})
    add_renderer_arguments(p)
    p.add_argument("--max-size", type=number_flag("--max-size", low=64, high=8192, integer=True),
                   default=DEFAULT_MAX_SIZE, help=f"cap of the output's long side in pixels (default {DEFAULT_MAX_SIZE})")
    p.add_argument("--crop", default=None, choices=["auto", "face", "none"],
                   help=f"face crop of --renderer pixel (default {PIXEL_DEFAULTS['crop']})")
    p.add_argument("--paste-back", choices=("yes", "no"), default=None,
                   help="--renderer pixel: paste each generated face crop back into the portrait at its own size "
                        "(long side capped by --max-size, feathered seam; default yes) or output the crop (no)")
    p.add_argument("--face", type=number_flag("--face", low=1, integer=True), default=None, metavar="N",
                   help="which face to animate when the portrait shows several: 1 = the leftmost (--renderer portrait)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N, mps (--renderer pixel; the portrait "
                                                  "renderer runs on the CPU)")
    p.set_defaults(func=run_render)


@dataclass
class CheckedInputs:
    """What :func:`check_render_inputs` read and checked before any model is loaded."""

    portrait: Any  # np.ndarray, RGB uint8
    audio: Any  # engine.io.audio.AudioClip
    emotion_audio: Any  # AudioClip or None
    masks: list[Any]  # float32 H x W in 0..1, one per --mask
    model_dir: Path
    emotions: list[str]
    mesh: Any = None  # the portrait's MediaPipe points (--renderer portrait: found before any weights are read)


def render_paths(args: argparse.Namespace) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """(outputs, inputs) of ``moee render`` as ``(label, path)`` pairs, for :func:`engine.io.paths.check_outputs_spare_inputs`."""
    from engine.io.resources import DEFAULT_MODEL_DIR

    outputs = [("-o", args.output), ("--frames-dir", args.frames_dir)]
    inputs = [("the portrait", args.portrait), ("the audio", args.audio),
              ("the --emotion-audio clip", args.emotion_audio),
              *(("the --mask", mask) for mask in args.mask),
              ("the model folder", args.model if args.model is not None else DEFAULT_MODEL_DIR),
              *(("the --expert pack", pack) for pack in args.expert),
              ("the --calibration file", None if args.calibration in (None, "off") else args.calibration)]
    return outputs, inputs


#: Defaults of flags a capability reads (argparse destination -> (capability, default)): a renderer with the
#: capability gets the default when the flag is not given; one without it must see the flag unset (refused by name).
CAPABILITY_DEFAULTS: dict[str, tuple[str, Any]] = {"steps": ("sampling", 12), "sampler": ("sampling", "dpm"),
                                                    "crop": ("crop", "auto"), "device": ("device", "auto")}
#: Those defaults by flag destination (all of them are the pixel model's).
PIXEL_DEFAULTS: dict[str, Any] = {name: value for name, (_cap, value) in CAPABILITY_DEFAULTS.items()}
#: Render flags that need a capability (engine.animator.Capabilities): argparse destination -> (capability, flag).
FLAG_CAPABILITIES: dict[str, tuple[str, str]] = {
    "steps": ("sampling", "--steps"), "sampler": ("sampling", "--sampler"), "strength": ("sampling", "--strength"),
    "guidance": ("guidance", "--guidance"), "lip_guidance": ("guidance", "--lip-guidance"),
    "keep_background": ("keep_background", "--keep-background"), "calibration": ("calibration", "--calibration"),
    "crop": ("crop", "--crop"), "paste_back": ("paste_back", "--paste-back"),
    "blinks": ("life", "--blinks"), "head_motion": ("life", "--head-motion"), "gaze": ("life", "--gaze")}


def _only_flags(renderer: str) -> dict[str, str]:
    """The flags of :data:`FLAG_CAPABILITIES` that ``renderer`` alone reads (destination -> flag)."""
    from engine.animator import RENDERER_CAPABILITIES

    mine = RENDERER_CAPABILITIES[renderer].names()
    others = set().union(*(caps.names() for name, caps in RENDERER_CAPABILITIES.items() if name != renderer))
    return {dest: flag for dest, (cap, flag) in FLAG_CAPABILITIES.items() if cap in mine and cap not in others}


#: Flags each renderer alone reads (argparse destination -> flag), from the renderers' capabilities.
PIXEL_ONLY_FLAGS = _only_flags("pixel")
PORTRAIT_ONLY_FLAGS = _only_flags("portrait")
#: What ``--frame`` (deprecated) named each renderer.
DEPRECATED_FRAME_NAMES = {"portrait": "portrait", "crop": "pixel"}


class _DeprecatedFrame(argparse.Action):
    """``--renderer portrait|crop``: the old name of ``--renderer portrait|pixel`` (hidden; prints a note)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        renderer = DEPRECATED_FRAME_NAMES[str(values)]
        print(f"note: --frame {values} is deprecated; use --renderer {renderer}", file=sys.stderr)
        namespace.renderer = renderer


#: ``--renderer``'s help in ``moee render`` and ``moee-studio``.
RENDERER_HELP = ("portrait: the whole portrait at its own resolution, animated by the motion model (default); "
                 "pixel: the pixel U-Net's own face crop (64 px with the demo model; training and evaluation)")


def add_renderer_arguments(parser: argparse.ArgumentParser, default: str | None = "portrait",
                           help: str = RENDERER_HELP) -> None:
    """``--renderer portrait|pixel`` and its hidden, deprecated alias ``--frame portrait|crop`` (crop = pixel)."""
    from engine.animator import RENDERERS

    parser.add_argument("--renderer", default=default, choices=RENDERERS, help=help)
    parser.add_argument("--frame", choices=tuple(DEPRECATED_FRAME_NAMES), action=_DeprecatedFrame,
                        help=argparse.SUPPRESS)


def refuse_flags_of_the_other_renderer(args: argparse.Namespace) -> None:
    """A render flag the chosen renderer does not read is refused (EmotionSpecError naming it), never ignored:
    the renderer's :class:`engine.animator.Capabilities` say which it reads."""
    from engine.animator import RENDERER_CAPABILITIES, renderer_capabilities

    caps = renderer_capabilities(args.renderer).names()
    given = {flag: cap for name, (cap, flag) in FLAG_CAPABILITIES.items()
             if cap not in caps and getattr(args, name, None) is not None}
    if "device" not in caps and args.device not in (None, "auto", "cpu"):
        given[f"--device {args.device}"] = "device"
    if not given:
        return
    lacking = sorted(set(given.values()))
    others = [name for name, other in RENDERER_CAPABILITIES.items() if set(lacking) <= other.names()]
    where = f"add --renderer {others[0]}" if others else "no renderer reads them all"
    raise EmotionSpecError(f"{', '.join(given)}: the {args.renderer} renderer has no {', '.join(lacking)} "
                           f"(docs/ARCHITECTURE.md, the renderers' table); leave them out, or {where}")


def check_device(device: str, flag: str = "--device") -> None:
    """Refuse (:class:`DeviceError`) a device this machine does not have, before any model loads."""
    from engine.errors import DeviceError

    kind, _, index = device.partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        raise DeviceError(f"{flag} {device!r} is not a device; choose {', '.join(DEVICE_CHOICES)} or cuda:N")
    if kind in ("auto", "cpu"):
        return
    import torch

    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "without CUDA"
            raise DeviceError(f"{flag} {device}: no CUDA GPU is usable here (PyTorch {torch.__version__}, built "
                              f"{build}); use --device cpu or auto")
        if index and int(index) >= count:
            raise DeviceError(f"{flag} {device}: this machine has {count} CUDA GPU(s), numbered 0 to {count - 1}")
    elif not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise DeviceError(f"{flag} mps: Apple's Metal (MPS) is not available here; use --device cpu or auto")


def _render_emotions(args: argparse.Namespace, model_dir: Path) -> list[str]:
    """The sliders the render will have, from the model folder's config (read and checked, no weights).

    The portrait path needs only the motion model (``motion.json`` + ``motion.safetensors``); a folder with
    the pixel model alone is animated by the bundled motion model (a note says so when it renders).
    """
    from engine.diffusion.config import CONFIG_FILE, read_model_config
    from engine.errors import CheckpointError
    from engine.io.resources import DEFAULT_MODEL_DIR
    from engine.portrait.motion import MOTION_CONFIG, MOTION_WEIGHTS, read_motion_config

    if args.renderer == "portrait":
        if (model_dir / MOTION_CONFIG).is_file():
            return list(read_motion_config(model_dir).emotions)
        if not (model_dir / CONFIG_FILE).is_file():
            raise CheckpointError(f"{model_dir} is not a MoEE model folder: {CONFIG_FILE} is missing, and so is "
                                  f"{MOTION_CONFIG}, the motion model the default renderer needs (with {MOTION_WEIGHTS})")
        read_model_config(model_dir)
        return list(read_motion_config(DEFAULT_MODEL_DIR).emotions)
    config = read_model_config(model_dir)
    return list(config.get("emotions", config["config"].get("moee", {}).get("emotions", [])))


def check_render_inputs(args: argparse.Namespace) -> CheckedInputs:
    """Check everything a render reads and writes before the model loads: outputs (names, formats, never
    an input), the device, the model folder's config, portrait, audio, masks, the emotion mix and, on the
    portrait path, the face itself. Raises the matching :class:`MoEEError`."""
    from engine.diffusion.calibration import curves_from_argument
    from engine.emotions import parse_mix
    from engine.errors import EmotionSpecError
    from engine.io.audio import DEFAULT_SAMPLE_RATE, load_audio
    from engine.io.image import load_image, load_mask
    from engine.io.paths import check_output_name, check_outputs_spare_inputs
    from engine.io.resources import DEFAULT_MODEL_DIR
    from engine.io.video import check_output

    for flag, path in (("-o", args.output), ("--frames-dir", args.frames_dir)):
        if path is not None:
            check_output_name(flag, path)
    if args.frames_dir is not None and Path(args.frames_dir).resolve() == Path(args.output).resolve():
        raise OutputError(f"--frames-dir and -o are the same path ({args.output}); give them different names")
    check_output(args.output, overwrite=args.overwrite)
    if args.frames_dir is not None:
        check_output(args.frames_dir, format="png", overwrite=args.overwrite)
    check_outputs_spare_inputs(*render_paths(args))
    if args.text is not None and not args.text.strip():
        raise EmotionSpecError("--text is empty; describe the emotion (e.g. 'sadly surprised') or leave --text out")
    from engine.animator import renderer_capabilities

    caps = renderer_capabilities(args.renderer)
    if args.face is not None and not caps.face_choice:
        raise EmotionSpecError(f"--face picks a face for --renderer portrait; for --renderer {args.renderer}, crop the "
                               "portrait to one face")
    refuse_flags_of_the_other_renderer(args)
    for name, (capability, value) in CAPABILITY_DEFAULTS.items():
        if capability in caps.names() and getattr(args, name) is None:
            setattr(args, name, value)
    if caps.device:
        check_device(args.device)

    model_dir = Path(args.model) if args.model is not None else DEFAULT_MODEL_DIR
    emotions = _render_emotions(args, model_dir)
    if args.expert:  # each renderer reads its own kind of pack (the other kind is refused, saying why)
        if args.renderer == "pixel":
            from engine.diffusion.checkpoint import read_expert_metadata as read_pack
        else:
            from engine.portrait.motion import read_motion_expert_metadata as read_pack
        emotions += [read_pack(pack).get("emotion", "") for pack in args.expert]
    if args.calibration is not None:
        curves_from_argument(args.calibration)

    # A full-resolution renderer needs the portrait at --max-size only: a huge file is decoded reduced (engine/io/image.py).
    portrait = load_image(args.portrait, max_side=args.max_size if caps.full_resolution else None)
    audio = load_audio(args.audio, DEFAULT_SAMPLE_RATE, max_duration=args.max_duration) if args.audio else None
    emotion_audio = (load_audio(args.emotion_audio, DEFAULT_SAMPLE_RATE, max_duration=args.max_duration)
                     if args.emotion_audio is not None else None)
    if args.emotion is not None:
        parse_mix(args.emotion, emotions)
    if len(args.mask) != len(args.mask_emotion):
        raise EmotionSpecError("give one --mask-emotion for every --mask")
    for name in args.mask_emotion:
        parse_mix(name, emotions)
    masks = [load_mask(path) for path in args.mask]
    mesh = _portrait_face(portrait, args.face) if caps.face_choice else None
    return CheckedInputs(portrait, audio, emotion_audio, masks, model_dir, emotions, mesh)


def _portrait_face(portrait: Any, face: int | None) -> Any:
    """The face the portrait path will animate (MediaPipe points), checked as the rig checks it: no face,
    several without ``--face``, a tiny or turned face are refused here, before any weights are read."""
    from engine.io.face import detect_landmarks
    from engine.portrait.rig import check_face

    points = detect_landmarks(portrait, face=face).points
    check_face(points, portrait.shape)
    return points


def check_clip_length(args: argparse.Namespace) -> None:
    """An audio file or ``--duration`` (not both) sets the clip's length; ``--duration`` is at most
    ``--max-duration`` seconds. Raises :class:`InputAudioError` (exit 2) otherwise."""
    from engine.errors import InputAudioError

    if args.audio is None and args.duration is None:
        raise InputAudioError("no audio: give a speech file, or --duration SECONDS for a silent clip "
                              "(mouth closed, the emotions and keyframes play)")
    if args.audio is not None and args.duration is not None:
        raise InputAudioError(f"--duration sets the length of a clip without audio; {args.audio} sets this "
                              "one's: leave out --duration (or trim the audio)")
    if args.duration is not None and args.duration > args.max_duration:
        raise InputAudioError(f"--duration {args.duration:g} is longer than clips may be ({args.max_duration:g} s); "
                              "shorten it, or raise the limit with --max-duration SECONDS")


def silent_frames(args: argparse.Namespace, default_fps: int) -> int | None:
    """Frames of a ``--duration`` clip without audio at ``--fps`` (or ``default_fps``); None with audio."""
    from engine.io.audio import num_video_frames

    if args.duration is None:
        return None
    return num_video_frames(args.duration, args.fps or default_fps)


def _gate_control(args: argparse.Namespace, animator, prepared, checked: CheckedInputs):
    """Sliders from --emotion / --text, masks from --mask; validated against the model's emotions."""
    import numpy as np

    from engine.emotions import mix_to_vector, parse_mix
    from engine.io.image import resize
    from engine.moee import GateControl

    emotions = animator.emotions
    if args.emotion is not None:
        mix = parse_mix(args.emotion, emotions)
    elif args.text:
        mix = animator.emotion_from_text(args.text)
        print(f"'{args.text}' -> " + (", ".join(f"{k}={v:.2f}" for k, v in mix.items()) or "neutral"))
    else:
        mix = {}
    weights = mix_to_vector(mix, emotions)
    masks = alpha = None
    if checked.masks:
        height, width = prepared.portrait.shape[:2]
        masks = np.zeros((len(emotions), height, width), np.float32)
        alpha = np.zeros(len(emotions), np.float32)
        for grey, name in zip(checked.masks, args.mask_emotion, strict=True):
            index = emotions.index(parse_mix(name, emotions).popitem()[0])
            masks[index] = np.maximum(masks[index], np.clip(resize(grey, (width, height)), 0.0, 1.0))
            alpha[index] = args.mask_alpha
    return GateControl(weights, masks, alpha)


def estimate_render(num_frames: int, steps: int, image_size: int, device: str) -> tuple[float, float]:
    """A rough (seconds, bytes) estimate of a render, from :data:`CPU_SECONDS_PER_PIXEL_STEP`."""
    pixel_steps = float(num_frames) * steps * image_size * image_size
    seconds = pixel_steps * CPU_SECONDS_PER_PIXEL_STEP / (1.0 if device == "cpu" else GPU_SPEEDUP)
    return seconds, float(num_frames) * image_size * image_size * BYTES_PER_FRAME_PIXEL


def _note_if_large(num_frames: int, steps: int, image_size: int, device: str) -> None:
    seconds, memory = estimate_render(num_frames, steps, image_size, device)
    if seconds > LONG_RENDER_SECONDS or memory > LARGE_RENDER_BYTES:
        print(f"note: {num_frames} frames at {steps} steps is a large render: roughly {seconds / 60:,.0f} min "
              f"on {device} and {memory / 2**30:,.1f} GB of memory (rough estimate); Ctrl-C stops it "
              f"and leaves nothing behind", file=sys.stderr)


def _voice_gates(animator, prepared, clip, gates):
    """``--emotion-audio`` on a renderer without ``emotion_conditioning`` (the portrait renderer): the voice's tone
    sets the sliders over time (engine.voice_emotion),
    added to the --emotion / --text mix (each slider capped at 1); --mask strokes are kept."""
    import numpy as np

    from engine.moee import GateControl
    from engine.voice_emotion import voice_emotion_track

    track = voice_emotion_track(clip, prepared.num_frames, prepared.fps, animator.emotions)
    base = np.zeros(len(animator.emotions), np.float32) if gates.global_weights is None else gates.global_weights
    summary = ", ".join(f"{name} up to {track.weights[:, i].max():.2f}" for i, name in enumerate(animator.emotions)
                        if track.weights[:, i].max() >= 0.05)
    print(f"the voice's tone: {summary or 'neutral'}")

    def at(frame: int) -> GateControl:
        row = track.weights[min(max(frame, 0), len(track.weights) - 1)] if len(track.weights) else 0.0
        return GateControl(np.clip(base + row, 0.0, 1.0).astype(np.float32), gates.local_masks, gates.local_alpha)

    return at


def run_render(args: argparse.Namespace) -> int:
    """``moee render``: one driver over the animator contract (engine.animator) for every renderer.

    Check every input, load the chosen renderer (:func:`engine.animator.load_animator`), prepare, build the gates,
    export (:func:`engine.export.export_clip`). What differs between renderers comes from their
    :class:`engine.animator.Capabilities`: :func:`prepare_options` and :func:`_configure_model` read them, and the
    export passes a renderer only the render options it reads.
    """
    check_clip_length(args)
    checked = check_render_inputs(args)

    from tqdm import tqdm

    from engine.animator import capabilities_of, default_fps, frame_shape, load_animator
    from engine.export import export_clip

    animator = load_animator(checked.model_dir, args.renderer, device=args.device or "auto")
    caps = capabilities_of(animator)
    _configure_model(args, animator, caps)
    for pack in args.expert:
        print(f"loaded custom emotion {animator.load_expert_pack(pack)!r}")
    prepared = animator.prepare(checked.portrait, checked.audio, fps=args.fps, max_duration=args.max_duration,
                                num_frames=silent_frames(args, default_fps(animator)),
                                **prepare_options(args, checked, caps))
    for warning in prepared.warnings:
        print(f"note: {warning}", file=sys.stderr)
    gates = _gate_control(args, animator, prepared, checked)
    if checked.emotion_audio is not None and not caps.emotion_conditioning:
        gates = _voice_gates(animator, prepared, checked.emotion_audio, gates)
    if caps.sampling:
        _note_if_large(prepared.num_frames, args.steps, animator.cfg.image_size, str(animator.device))
    bar = tqdm(total=prepared.num_frames, unit="frame", desc="rendering")
    try:
        export_clip(animator, prepared, args.output, gates=gates, steps=args.steps, seed=args.seed,
                    sampler=args.sampler, guidance_scale=args.guidance, strength=args.strength,
                    frames_dir=args.frames_dir, overwrite=args.overwrite, duration=args.duration,
                    on_frame=lambda _index, _progress: bar.update(1))
    finally:
        bar.close()
    height, width = frame_shape(prepared)
    print(f"wrote {args.output} ({prepared.num_frames} frames at {prepared.fps} fps, {width}x{height})")
    return 0


def prepare_options(args: argparse.Namespace, checked: CheckedInputs, caps: Any) -> dict[str, Any]:
    """The renderer's own ``prepare`` keywords, from its capabilities (each reads only those it has)."""
    options: dict[str, Any] = {}
    if caps.crop:
        options["crop"] = args.crop
    if caps.paste_back:
        options.update(paste_back=args.paste_back != "no", paste_max_size=args.max_size)
    if caps.full_resolution:
        options["max_size"] = args.max_size
    if caps.face_choice:
        options["mesh"] = checked.mesh
    if caps.life:
        from engine.portrait.performance import LifeConfig

        life = {name: getattr(args, dest) for _flag, name, dest in _LIFE_DESTINATIONS if getattr(args, dest) is not None}
        options["life"] = LifeConfig(seed=args.seed, **life)
    if caps.emotion_conditioning:
        options.update(emotion_text=args.text, emotion_audio=checked.emotion_audio)
    return options


#: The performance flags' (flag, LifeConfig field, argparse destination).
_LIFE_DESTINATIONS = tuple((flag, name, flag.lstrip("-").replace("-", "_")) for flag, name, _metavar in LIFE_FLAGS)


def _configure_model(args: argparse.Namespace, animator: Any, caps: Any) -> None:
    """The model-wide settings a renderer with guidance / keep_background / calibration reads from the flags."""
    if caps.guidance or caps.keep_background or caps.calibration:
        from engine.diffusion.config import override_sampling

        overrides = (("audio_guidance_scale", "--lip-guidance", args.lip_guidance),
                     ("keep_background", "--keep-background", yes_no(args.keep_background)))
        animator.cfg.sampling = override_sampling(animator.cfg.sampling, overrides, args.calibration)
    if not getattr(animator, "trained", True):
        print("warning: this model's weights are untrained; the video shows noise-like images", file=sys.stderr)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from engine.diffusion.config import CONFIGS

    p = sub.add_parser("bench", help="measure preview latency, clip speed and memory (JSON)")
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.add_argument("--model", default=None, help="model folder (default: the bundled demo model)")
    p.add_argument("--config", default=None, choices=sorted(CONFIGS),
                   help="benchmark an untrained config instead (tiny, demo, sd15)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--steps", type=number_flag("--steps", low=1, high=MAX_STEPS, integer=True), default=BENCH_STEPS,
                   help="denoising steps of the preview")
    p.add_argument("--repeats", type=number_flag("--repeats", low=1, high=MAX_BENCH_REPEATS, integer=True),
                   default=BENCH_REPEATS, help="measurements of each figure (the median is reported)")
    p.add_argument("--frames", type=number_flag("--frames", low=1, high=MAX_BENCH_FRAMES, integer=True),
                   default=BENCH_FRAMES, help="clip length of the base clip measurement")
    p.add_argument("--crop", default="auto", choices=["auto", "face", "none"],
                   help="portrait crop (none: no face detection, the portrait as it is)")
    p.add_argument("--keep-background", choices=("yes", "no"), default=None,
                   help="keep the portrait's background outside the person (default: the model's)")
    p.add_argument("--portrait", default=None, metavar="IMG",
                   help="benchmark the full-resolution path (motion model + transfer) on this portrait")
    p.add_argument("--max-size", type=number_flag("--max-size", low=64, high=8192, integer=True), default=512,
                   help="long side of --portrait's renders (default 512)")
    p.add_argument("--batch", type=number_flag("--batch", low=2, high=MAX_BENCH_FRAMES, integer=True), default=None,
                   metavar="JOBS", help="benchmark moee batch: JOBS one-second clips of --portrait (default: the demo "
                                        "portrait, at 1024 px at least) in one batch against a loop of moee render processes")
    p.add_argument("--loops", type=number_flag("--loops", low=0, high=MAX_BENCH_REPEATS, integer=True), default=3,
                   help="moee render processes timed by --batch (default 3; 0: none)")
    add_renderer_arguments(p, default=None, help="portrait: the full-resolution path on --portrait (the bundled "
                                                 "photo by default); pixel: the pixel model (the default unless "
                                                 "--portrait is given)")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import json

    check_device(args.device)
    if args.batch is not None:
        from engine.batch_bench import run_batch_benchmark

        print(json.dumps(run_batch_benchmark(args.batch, args.portrait, model_dir=args.model, max_size=args.max_size,
                                             loops=args.loops), indent=2))
        return 0
    if args.renderer is None:
        args.renderer = "portrait" if args.portrait is not None else "pixel"
    if args.renderer == "pixel" and args.portrait is not None:
        raise EmotionSpecError("--portrait benchmarks the portrait renderer; leave out --renderer pixel or --portrait")
    if args.renderer == "portrait":
        if args.portrait is None:
            from engine.io.resources import assets_dir

            args.portrait = str(assets_dir() / "demo" / "photo.png")
        from engine.io.image import load_image

        load_image(args.portrait, max_side=args.max_size)  # a bad portrait is refused before the model loads
        from engine.portrait.bench import run_portrait_benchmarks

        result = run_portrait_benchmarks(args.portrait, model_dir=args.model, max_size=args.max_size,
                                         repeats=args.repeats)
        print(json.dumps(result, indent=2))
        return 0
    from engine.diffusion.bench import run_benchmarks

    result = run_benchmarks(model_dir=args.model, config=args.config, device=args.device, steps=args.steps,
                            repeats=args.repeats, frames=args.frames, crop=args.crop,
                            keep_background=yes_no(args.keep_background))
    text = json.dumps(result, indent=2)
    print(text)
    return 0


def _add_batch(sub: argparse._SubParsersAction) -> None:
    from engine.batch import add_arguments, run_command

    p = sub.add_parser("batch", help="render many clips from a manifest (CSV or JSON lines): each portrait "
                                     "prepared once, resumable, on all cores or a Ray cluster")
    add_arguments(p)
    p.set_defaults(func=run_command)


def _add_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a new (untrained) model folder, optionally from local SD weights")
    p.add_argument("output", help="model folder to create")
    p.add_argument("--config", default="demo", choices=["tiny", "demo", "sd15"])
    p.add_argument("--base-model", default=None,
                   help="a local diffusers Stable Diffusion folder (unet/, vae/) to initialise the U-Net, "
                        "ReferenceNet and VAE from; the MoEE modules start as identity")
    p.add_argument("--fp16", action="store_true", help="store the weights in half precision")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    import torch

    from engine.diffusion.checkpoint import save_model
    from engine.diffusion.config import get_config
    from engine.diffusion.model import MoEEModel

    torch.manual_seed(args.seed)
    cfg = get_config(args.config)
    model = MoEEModel.from_base_model(cfg, args.base_model) if args.base_model else MoEEModel(cfg)
    notes = {"trained": False, "base_model": str(args.base_model or ""), "seed": args.seed}
    save_model(model, args.output, dtype=torch.float16 if args.fp16 else torch.float32, notes=notes)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output}: {args.config} config, {params / 1e6:.1f} M parameters"
          + (f", initialised from {args.base_model}" if args.base_model else ", random weights"))
    return 0


#: The entry-point group through which installed packages add subcommands to ``moee``.
COMMAND_GROUP = "moee.commands"


class Command(Protocol):
    """A subcommand another package adds to ``moee``: the object a :data:`COMMAND_GROUP` entry point names
    (the entry point's name is the subcommand's)."""

    help: str  # its line in ``moee --help``

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add its arguments to its subparser (ImportError: the subcommand is listed as unavailable)."""

    def run(self, args: argparse.Namespace) -> int:
        """Run it with the parsed arguments; the exit code."""


def installed_commands() -> list[EntryPoint]:
    """The :data:`COMMAND_GROUP` entry points of the installed distributions (the first of each name)."""
    from importlib.metadata import entry_points

    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=COMMAND_GROUP):
        found.setdefault(point.name, point)
    return list(found.values())


def _add_commands(sub: argparse._SubParsersAction, commands: Iterable[EntryPoint]) -> None:
    """Add each entry point's :class:`Command` (imported now, as ``--help`` shows their arguments)."""
    for point in commands:
        if point.name in sub.choices:  # the engine's own subcommands keep their names
            continue
        try:
            command: Command = point.load()
        except (ImportError, AttributeError) as exc:  # its package is missing, or no longer has that name
            p = sub.add_parser(point.name, help=f"(not available: {exc})")
            p.set_defaults(func=lambda _a, exc=exc, name=point.name: _unavailable(name, exc))
            continue
        p = sub.add_parser(point.name, help=command.help)
        try:
            command.add_arguments(p)
        except ImportError as exc:
            p.set_defaults(func=lambda _a, exc=exc, name=point.name: _unavailable(name, exc))
            continue
        p.set_defaults(func=command.run)


def _unavailable(name: str, exc: Exception) -> int:
    print(f"moee {name} is not available: {exc}", file=sys.stderr)
    return 2


def build_parser(commands: Iterable[EntryPoint] | None = None) -> argparse.ArgumentParser:
    """The ``moee`` parser: the engine's subcommands, then ``commands`` (default: :func:`installed_commands`)."""
    parser = argparse.ArgumentParser(prog="moee", description="MoEE Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_render(sub)
    _add_bench(sub)
    _add_batch(sub)
    _add_init(sub)
    commands = installed_commands() if commands is None else list(commands)
    _add_commands(sub, commands)
    if not commands:
        parser.epilog = (f"No other package adds subcommands (entry points {COMMAND_GROUP!r}); in a checkout, "
                         "'pip install -e .' installs those of this repository.")
    return parser


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise TerminatedError(signum)


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP (:data:`TERMINATING_SIGNALS`) raise :class:`TerminatedError`
    (main thread only; elsewhere a no-op), so a killed render, or one whose terminal was closed, unwinds
    through the atomic writers and leaves no hidden temporary file behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_terminated) for signum in TERMINATING_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None, commands: Iterable[EntryPoint] | None = None) -> int:
    """Run ``moee`` with ``argv`` (default: the process's); ``commands``: as :func:`build_parser`. The exit code."""
    try:
        with sigterm_unwinds():  # from the start: Ctrl-C while the subcommands load is a message too
            try:
                args = build_parser(commands).parse_args(argv)
            except SystemExit as exc:  # --help (0), or a bad argument: argparse printed why (2)
                return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
            return int(args.func(args) or 0)
    except MoEEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TerminatedError as exc:
        try:
            name = signal.Signals(exc.signum).name
        except ValueError:
            name = f"signal {exc.signum}"
        print(f"terminated; nothing was written ({name})", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
