"""One clip interface for every training source, layout readers, preprocessing and noisy sampling.

Layouts read by :func:`open_dataset` (detected from the folder):

- **synthetic** (``index.json``; written by :mod:`training.synthetic` and by :func:`preprocess`).
- **labels.csv**: a folder of clips (mp4 with audio) and ``labels.csv`` with a ``file`` column and
  either an ``emotion`` column (a name or ``neutral``; optional ``intensity`` column, default 1) or
  one column per basic emotion holding weights; optional ``identity`` (default: the file stem).
- **MEAD**: ``<id>/video/front/<emotion>/level_<k>/<nnn>.mp4`` with audio
  ``<id>/audio/<emotion>/level_<k>/<nnn>.m4a``. Levels 1/2/3 -> weight 1/3, 2/3, 1.
  MEAD's *contempt* has no expert: it is mapped to **disgust at half weight**.
- **RAVDESS**: ``Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4``. Emotions 01 neutral, 02 calm, 03 happy,
  04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised; **calm is mapped to neutral**.
  Intensity 01 normal -> 0.6, 02 strong -> 1.0. Modality 01 (audio-video) files carry their own
  audio; modality 02 (video-only) files use the matching ``03-...wav`` (audio-only) file when one is
  found anywhere under the root, otherwise they have no audio (and :func:`preprocess` skips them).
- **CREMA-D**: ``VideoFlash/1001_DFA_ANG_XX.flv`` + ``AudioWAV/1001_DFA_ANG_XX.wav``; emotions
  ANG DIS FEA HAP NEU SAD; levels LO 0.4, MD 0.7, HI 1.0, XX (unspecified) 0.7.

Emotion weights are always a dict over the six basic emotions; neutral = all zero. Identities are
split train/test by a seeded permutation (held-out identities); synthetic data keeps its own split.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.emotions import BASIC_EMOTIONS, canonical_emotion
from engine.errors import MoEEError
from training.errors import DatasetError
from training.recipe import RECIPE_FILE, read_recipe

SYNTHETIC, LABELS_CSV, MEAD, RAVDESS, CREMA_D = "synthetic", "labels_csv", "mead", "ravdess", "crema-d"
NEUTRAL = "neutral"
SAMPLE_RATE = 16_000
DEFAULT_FPS = 25.0
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".flv", ".webm")

MEAD_LEVEL_WEIGHT = {1: 1 / 3, 2: 2 / 3, 3: 1.0}
MEAD_EMOTIONS = {"angry": "anger", "contempt": "disgust", "disgusted": "disgust", "fear": "fear",
                 "happy": "happiness", "neutral": NEUTRAL, "sad": "sadness", "surprised": "surprise"}
MEAD_CONTEMPT_FACTOR = 0.5
RAVDESS_EMOTIONS = {1: NEUTRAL, 2: NEUTRAL, 3: "happiness", 4: "sadness", 5: "anger", 6: "fear",
                    7: "disgust", 8: "surprise"}
RAVDESS_INTENSITY = {1: 0.6, 2: 1.0}
RAVDESS_PATTERN = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
CREMAD_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness", "NEU": NEUTRAL,
                   "SAD": "sadness"}
CREMAD_LEVELS = {"LO": 0.4, "MD": 0.7, "HI": 1.0, "XX": 0.7, "X": 0.7}
MIN_FACE_FRACTION = 0.5  # a clip needs a face in at least this fraction of its frames
DEFAULT_P_NOISY = 0.1
TEST_FRACTION = 0.2
FRAME_CACHE_BYTES = 1 << 30  # decoded clips kept in memory by a ClipSampler (least recently used out)


def neutral_weights() -> dict[str, float]:
    """All-zero weights over the six basic emotions (= neutral)."""
    return dict.fromkeys(BASIC_EMOTIONS, 0.0)


def weights_for(name: str, weight: float = 1.0) -> dict[str, float]:
    """Weights for one emotion name (aliases accepted; ``neutral``/``calm`` -> all zero)."""
    out = neutral_weights()
    key = name.strip().lower()
    if key in (NEUTRAL, "calm", "none", ""):
        return out
    out[canonical_emotion(key)] = float(np.clip(weight, 0.0, 1.0))
    return out


# ----------------------------------------------------------------------------------------------
# Clip
# ----------------------------------------------------------------------------------------------


@dataclass
class Clip:
    """One training clip, whatever its source. Frames and audio load lazily."""

    source: str  # the clip folder (synthetic layout) or the video file
    identity: str
    emotion: dict[str, float]  # over the six basic emotions; all zero = neutral
    fps: float | None = None
    audio_path: str | None = None  # a wav/m4a file, or the video itself when it carries audio
    landmarks_path: str | None = None
    split: str = "train"
    label: str = ""  # the raw label of the source layout
    layout: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def emotion_name(self) -> str:
        """The strongest emotion, or ``neutral``."""
        name, value = max(self.emotion.items(), key=lambda kv: kv[1], default=(NEUTRAL, 0.0))
        return name if value > 0 else NEUTRAL

    @property
    def emotion_vector(self) -> np.ndarray:
        return np.array([self.emotion.get(e, 0.0) for e in BASIC_EMOTIONS], dtype=np.float32)

    def load_frames(self) -> np.ndarray:
        """(F, H, W, 3) uint8 RGB frames."""
        path = Path(self.source)
        if path.is_dir():
            with np.load(path / "frames.npz") as data:
                return np.asarray(data["frames"], dtype=np.uint8)
        from engine.io.video import read_frames

        frames = list(read_frames(path))
        if not frames:
            raise DatasetError(f"{path} has no video frames")
        return np.stack(frames)

    def load_audio(self):
        """The clip's audio as an :class:`engine.io.audio.AudioClip` at 16 kHz (raises if there is none)."""
        from engine.io.audio import load_audio

        if self.audio_path is None:
            from engine.errors import InputAudioError

            raise InputAudioError(f"{self.source} has no audio track or audio file")
        return load_audio(self.audio_path, SAMPLE_RATE)

    def load_landmarks(self) -> np.ndarray | None:
        """(F, N, 2) float32 pixel landmarks, or ``None`` when the source has none."""
        if self.landmarks_path and os.path.exists(self.landmarks_path):
            return np.load(self.landmarks_path).astype(np.float32)
        return None


class ClipDataset(Sequence[Clip]):
    """A list of :class:`Clip` from one layout."""

    def __init__(self, clips: Sequence[Clip], layout: str, root: str | os.PathLike[str]) -> None:
        self.clips = list(clips)
        self.layout = layout
        self.root = str(root)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        return self.clips[index]

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)

    @property
    def identities(self) -> list[str]:
        return sorted({c.identity for c in self.clips})

    def split(self, name: str) -> ClipDataset:
        """Only the clips of one split (``train``, ``test``, ``compound_eval``)."""
        return ClipDataset([c for c in self.clips if c.split == name], self.layout, self.root)


def assign_identity_splits(clips: Sequence[Clip], seed: int = 0, test_fraction: float = TEST_FRACTION) -> None:
    """Set ``split`` to train/test per identity with a seeded permutation (at least one test identity)."""
    ids = sorted({c.identity for c in clips})
    n_test = 0 if len(ids) < 2 else max(1, int(round(len(ids) * test_fraction)))
    order = np.random.default_rng([seed, 7919]).permutation(len(ids))
    test = {ids[int(i)] for i in order[:n_test]}
    for c in clips:
        c.split = "test" if c.identity in test else "train"


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------


def read_synthetic(root: str | os.PathLike[str]) -> ClipDataset:
    """The synthetic layout (``index.json`` + one folder per clip)."""
    root = Path(root)
    index = json.loads((root / "index.json").read_text())
    clips = []
    for entry in index["clips"]:
        folder = root / entry["path"]
        emotion = neutral_weights()
        for k, v in entry.get("emotion", {}).items():
            if k != NEUTRAL:
                emotion[canonical_emotion(k)] = float(v)
        audio = folder / "audio.wav"
        lms = folder / "landmarks.npy"
        clips.append(Clip(source=str(folder), identity=entry["identity"], emotion=emotion,
                          fps=float(entry.get("fps", index.get("fps", DEFAULT_FPS))),
                          audio_path=str(audio) if audio.exists() else None,
                          landmarks_path=str(lms) if lms.exists() else None, split=entry.get("split", "train"),
                          label=entry["path"], layout=SYNTHETIC))
    return ClipDataset(clips, SYNTHETIC, root)


def read_labels_csv(root: str | os.PathLike[str], seed: int = 0) -> ClipDataset:
    """A folder of clips with ``labels.csv`` (see the module docstring)."""
    root = Path(root)
    with open(root / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DatasetError(f"{root / 'labels.csv'} has no rows")
    columns = {c.strip().lower(): c for c in rows[0]}
    if "file" not in columns:
        raise DatasetError(f"{root / 'labels.csv'} needs a 'file' column; it has {', '.join(rows[0])}")
    per_emotion = [e for e in BASIC_EMOTIONS if e in columns]
    clips = []
    for line, row in enumerate(rows, start=2):
        rel = row[columns["file"]].strip()
        try:
            if "emotion" in columns:
                intensity = float(row.get(columns.get("intensity", ""), "") or 1.0)
                emotion = weights_for(row[columns["emotion"]], intensity)
            elif per_emotion:
                emotion = neutral_weights()
                for e in per_emotion:
                    emotion[e] = float(np.clip(float(row[columns[e]] or 0.0), 0.0, 1.0))
            else:
                raise DatasetError("labels.csv needs an 'emotion' column or one column per emotion "
                                   f"({', '.join(BASIC_EMOTIONS)})")
        except (ValueError, MoEEError) as exc:
            raise DatasetError(f"labels.csv line {line}: {exc}") from exc
        path = root / rel
        identity = (row.get(columns.get("identity", ""), "") or "").strip() or Path(rel).stem
        clips.append(Clip(source=str(path), identity=identity, emotion=emotion, audio_path=str(path),
                          label=row.get(columns.get("emotion", ""), "") or "weights", layout=LABELS_CSV))
    assign_identity_splits(clips, seed)
    return ClipDataset(clips, LABELS_CSV, root)


def read_mead(root: str | os.PathLike[str], seed: int = 0) -> ClipDataset:
    """MEAD: front-camera videos with the matching m4a audio."""
    root = Path(root)
    clips = []
    for video in sorted(root.glob("*/video/front/*/level_*/*.mp4")):
        level_dir, emo_dir = video.parent, video.parent.parent
        ident = emo_dir.parent.parent.parent.name
        raw = emo_dir.name.lower()
        level = int(level_dir.name.split("_")[-1])
        name = MEAD_EMOTIONS.get(raw)
        if name is None:
            continue
        weight = MEAD_LEVEL_WEIGHT.get(level, 1.0) * (MEAD_CONTEMPT_FACTOR if raw == "contempt" else 1.0)
        audio = root / ident / "audio" / emo_dir.name / level_dir.name / (video.stem + ".m4a")
        clips.append(Clip(source=str(video), identity=f"mead_{ident}", emotion=weights_for(name, weight),
                          audio_path=str(audio) if audio.exists() else None, label=f"{raw}/level_{level}",
                          layout=MEAD))
    assign_identity_splits(clips, seed)
    return ClipDataset(clips, MEAD, root)


def read_ravdess(root: str | os.PathLike[str], seed: int = 0) -> ClipDataset:
    """RAVDESS: ``Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4`` (speech and song)."""
    root = Path(root)
    wavs = {p.stem: p for p in root.rglob("03-*.wav")}
    clips = []
    for video in sorted(root.rglob("Actor_*/*.mp4")):
        m = RAVDESS_PATTERN.match(video.stem)
        if not m:
            continue
        modality, _vocal, emo, inten, _stmt, _rep, actor = (int(g) for g in m.groups())
        name = RAVDESS_EMOTIONS.get(emo)
        if name is None or modality == 3:
            continue
        if modality == 1:
            audio: Path | None = video
        else:
            audio = wavs.get("03-" + video.stem[3:])
        clips.append(Clip(source=str(video), identity=f"ravdess_actor_{actor:02d}",
                          emotion=weights_for(name, RAVDESS_INTENSITY.get(inten, 1.0)),
                          audio_path=str(audio) if audio is not None else None,
                          label=f"{emo:02d}-{inten:02d}", layout=RAVDESS))
    assign_identity_splits(clips, seed)
    return ClipDataset(clips, RAVDESS, root)


def read_cremad(root: str | os.PathLike[str], seed: int = 0) -> ClipDataset:
    """CREMA-D: ``VideoFlash/*.flv`` (or mp4) with ``AudioWAV/*.wav``."""
    root = Path(root)
    clips = []
    videos = sorted(p for p in (root / "VideoFlash").iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    for video in videos:
        parts = video.stem.split("_")
        if len(parts) != 4 or parts[2] not in CREMAD_EMOTIONS:
            continue
        actor, _sentence, emo, level = parts
        wav = root / "AudioWAV" / (video.stem + ".wav")
        clips.append(Clip(source=str(video), identity=f"cremad_{actor}",
                          emotion=weights_for(CREMAD_EMOTIONS[emo], CREMAD_LEVELS.get(level, 0.7)),
                          audio_path=str(wav) if wav.exists() else None, label=f"{emo}_{level}", layout=CREMA_D))
    assign_identity_splits(clips, seed)
    return ClipDataset(clips, CREMA_D, root)


def detect_layout(path: str | os.PathLike[str]) -> str:
    """Which layout a folder holds (see the module docstring); raises :class:`DatasetError` if none."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    if (root / "index.json").exists():
        return SYNTHETIC
    if (root / "labels.csv").exists():
        return LABELS_CSV
    if (root / "VideoFlash").is_dir() or (root / "AudioWAV").is_dir():
        return CREMA_D
    if any(root.glob("Actor_*")) or any(root.glob("*/Actor_*")):
        return RAVDESS
    if any(root.glob("*/video/front")):
        return MEAD
    raise DatasetError(f"cannot tell the layout of {root}: expected index.json (synthetic), labels.csv, "
                       "MEAD (<id>/video/front/...), RAVDESS (Actor_XX/...) or CREMA-D (VideoFlash/, AudioWAV/)")


READERS: dict[str, Callable[..., ClipDataset]] = {
    SYNTHETIC: read_synthetic, LABELS_CSV: read_labels_csv, MEAD: read_mead, RAVDESS: read_ravdess,
    CREMA_D: read_cremad,
}


def open_dataset(path: str | os.PathLike[str]) -> ClipDataset:
    """Read a dataset folder of any supported layout."""
    return READERS[detect_layout(path)](path)


def custom_emotion_layout(name: str) -> str:
    """The data layout the expert stage needs for a new emotion ``name`` (for messages)."""
    return (f"a folder of clips (mp4 with audio) and a labels.csv with the columns file,emotion, where the rows "
            f"of the new emotion say '{name}' and any other rows say neutral or a basic emotion "
            f"({', '.join(BASIC_EMOTIONS)}); e.g.\n  file,emotion\n  {name}_01.mp4,{name}\n  calm_01.mp4,neutral")


def check_custom_emotion_data(path: str | os.PathLike[str], name: str) -> int:
    """Check that a folder holds clips of the new emotion ``name`` for the expert stage; returns how many.

    Of the layouts above only ``labels.csv`` with an ``emotion`` column can name an emotion that is not one
    of the six basic ones (the other layouts label the basic emotions only). Raises :class:`DatasetError`
    naming that layout when the folder has no clip labelled ``name``, when a clip of it is missing, or
    when another row's label is neither neutral nor a basic emotion. Reads only ``labels.csv``.
    """
    root = Path(path)
    key = name.strip().lower()
    expected = f"Expected {custom_emotion_layout(key)}"
    if (root / RECIPE_FILE).is_file():  # an AU recipe (training.recipe): no clips needed
        read_recipe(root)
        return 1
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder. {expected}")
    csv_path = root / "labels.csv"
    if not csv_path.exists():
        try:
            found = f"it holds a {detect_layout(root)} data set, labelled with the basic emotions only"
        except DatasetError:
            found = "it has no labels.csv"
        raise DatasetError(f"{root} has no clip labelled '{key}': {found}. {expected}")
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = {c.strip().lower(): c for c in (rows[0] if rows else {})}
    if "file" not in columns or "emotion" not in columns:
        raise DatasetError(f"{csv_path} needs the columns file and emotion. {expected}")
    count = 0
    labels: list[str] = []
    for line, row in enumerate(rows, start=2):
        label = (row[columns["emotion"]] or "").strip().lower()
        labels.append(label)
        if label == key:
            clip = root / (row[columns["file"]] or "").strip()
            if not clip.is_file():
                raise DatasetError(f"labels.csv line {line}: the clip {clip.name or '(empty)'} is not in {root}")
            count += 1
            continue
        try:
            weights_for(label)
        except MoEEError:
            raise DatasetError(f"labels.csv line {line}: '{label}' is neither the new emotion '{key}' nor neutral "
                               f"or a basic emotion. {expected}") from None
    if count == 0:
        found = ", ".join(sorted(set(labels))) or "no rows"
        raise DatasetError(f"{csv_path} has no clip labelled '{key}' (its labels: {found}). {expected}")
    return count


# ----------------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------------


@dataclass
class PreprocessReport:
    """What :func:`preprocess` wrote and which clips it skipped, with the reason."""

    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.written)} clips written, {len(self.skipped)} skipped"]
        lines += [f"  skipped {src}: {why}" for src, why in self.skipped]
        return "\n".join(lines)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "clip"


def _track_landmarks(frames: np.ndarray) -> tuple[np.ndarray | None, int]:
    """MediaPipe landmarks per frame; missing frames take the nearest detected one."""
    from engine.io.face import landmarks_or_none

    found = [landmarks_or_none(f) for f in frames]
    ok = [i for i, lm in enumerate(found) if lm is not None]
    if not ok:
        return None, 0
    out = np.empty((len(frames), found[ok[0]].points.shape[0], 2), dtype=np.float32)  # type: ignore[union-attr]
    ok_arr = np.array(ok)
    for i in range(len(frames)):
        j = int(ok_arr[np.argmin(np.abs(ok_arr - i))])
        out[i] = found[j].points  # type: ignore[union-attr]
    return out, len(ok)


def _readable_clip(clip: Clip) -> tuple[np.ndarray, Any, np.ndarray, str] | str:
    """A clip's (frames, audio, landmarks, landmark format), or why it cannot be preprocessed.

    Ground-truth landmarks (``ibug68``) when the clip has one per frame, else MediaPipe's (``mediapipe478``).
    """
    try:
        frames = clip.load_frames()
    except Exception as exc:
        return f"unreadable video: {exc}"
    if frames.ndim != 4 or len(frames) == 0:
        return "unreadable video: no frames"
    try:
        audio = clip.load_audio()
    except Exception as exc:
        return f"no audio: {exc}"
    landmarks = clip.load_landmarks()
    fmt = "ibug68"
    if landmarks is None or len(landmarks) != len(frames):
        landmarks, n_found = _track_landmarks(frames)
        fmt = "mediapipe478"
        if landmarks is None or n_found < MIN_FACE_FRACTION * len(frames):
            return f"no face found (in {n_found} of {len(frames)} frames)"
    return frames, audio, landmarks, fmt


def _clip_fps(clip: Clip) -> float:
    """The clip's frame rate: its own, else the video file's, else :data:`DEFAULT_FPS`."""
    from engine.io.video import probe_video

    fps = clip.fps
    if fps is None:
        try:
            fps = float(probe_video(clip.source).fps)
        except Exception:
            fps = DEFAULT_FPS
    return fps


def _aligned_crops(frames: np.ndarray, landmarks: np.ndarray, size: int,
                   margin: float | None) -> tuple[np.ndarray, np.ndarray]:
    """One face crop for the whole clip (from the mean landmarks: no jitter): (crops, landmarks in the crop)."""
    import cv2

    from engine.io.face import DEFAULT_CROP_MARGIN, crop_face

    _, tf = crop_face(frames[0], landmarks.mean(axis=0), size, margin if margin is not None else
                      DEFAULT_CROP_MARGIN)
    crops = np.stack([cv2.warpAffine(f, tf.matrix, (size, size), flags=cv2.INTER_AREA,
                                     borderMode=cv2.BORDER_REPLICATE) for f in frames])
    lms = np.stack([tf.apply(p) for p in landmarks]).astype(np.float32)
    return crops, lms


def _unique_folder(clip: Clip, used: set[str]) -> str:
    """``identity/name`` for the clip's cache folder, with ``_1``, ``_2``... when taken; adds it to ``used``."""
    name = _safe_name(Path(clip.source).stem if not Path(clip.source).is_dir() else Path(clip.source).name)
    rel = f"{_safe_name(clip.identity)}/{name}"
    k = 1
    while rel in used:
        rel = f"{_safe_name(clip.identity)}/{name}_{k}"
        k += 1
    used.add(rel)
    return rel


def _write_clip(folder: Path, clip: Clip, crops: np.ndarray, audio: Any, lms: np.ndarray, fps: float, size: int,
                fmt: str) -> dict[str, Any]:
    """Write one clip in the synthetic layout (frames.npz, audio.wav, landmarks.npy, meta.json); returns the meta."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "frames.npz", frames=crops)
    sf.write(str(folder / "audio.wav"), audio.samples, audio.sample_rate, subtype="PCM_16")
    np.save(folder / "landmarks.npy", lms)
    meta = {"identity": clip.identity, "emotion": clip.emotion, "fps": fps, "split": clip.split,
            "n_frames": len(crops), "size": size, "source": clip.source, "layout": clip.layout,
            "label": clip.label, "landmark_format": fmt}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def preprocess(dataset: ClipDataset, out_dir: str | os.PathLike[str], size: int = 128,
               margin: float | None = None, progress: bool = False) -> PreprocessReport:
    """Detect, crop and align the face of every clip and cache it in the synthetic layout.

    One crop per clip (from the mean landmarks: stable, no jitter). Synthetic clips use their
    ground-truth landmarks when MediaPipe is not needed. Unreadable clips, clips without audio and
    clips without a face are skipped and listed in the returned report instead of failing the run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = PreprocessReport()
    entries = []
    used: set[str] = set()
    iterator: Any = dataset
    if progress:
        from tqdm import tqdm

        iterator = tqdm(dataset, desc="preprocess", unit="clip")
    for clip in iterator:
        readable = _readable_clip(clip)
        if isinstance(readable, str):
            report.skipped.append((clip.source, readable))
            continue
        frames, audio, landmarks, fmt = readable
        fps = _clip_fps(clip)
        crops, lms = _aligned_crops(frames, landmarks, size, margin)
        rel = _unique_folder(clip, used)
        meta = _write_clip(out / rel, clip, crops, audio, lms, fps, size, fmt)
        entries.append({"path": rel, **{k2: meta[k2] for k2 in ("identity", "emotion", "split", "n_frames", "fps")}})
        report.written.append(rel)
    index = {"version": 1, "generator": "moee-preprocess", "size": size, "source_layout": dataset.layout,
             "clips": entries, "skipped": [{"source": s, "reason": r} for s, r in report.skipped]}
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return report


# ----------------------------------------------------------------------------------------------
# Masked noisy emotion sampling
# ----------------------------------------------------------------------------------------------


def _clip_bytes(data: dict[str, Any]) -> int:
    return sum(v.nbytes for v in data.values() if isinstance(v, np.ndarray))


def _torch_dataset_base() -> type:
    try:
        from torch.utils.data import Dataset

        return Dataset
    except ImportError:  # pragma: no cover
        return object


class ClipSampler(_torch_dataset_base()):  # type: ignore[misc]
    """Training windows with masked noisy emotion conditioning (MoEE).

    Each item: a reference frame of the same identity, ``num_frames`` consecutive target frames, one audio mel window
    per frame (``engine.io.audio.frame_windows``), the emotion condition and the mouth mask per frame
    (and, with ``expression_regions``, a mask of those face regions per frame, ``region_mask``).
    With probability ``p_noisy`` the emotion condition is replaced by the label of a clip of another
    emotion (or neutral) and ``noisy`` is True: the model must then rely on the video, not the label.
    Deterministic given ``seed``, ``epoch`` and the index.

    The reference is a frame of one of the identity's *neutral* clips when it has any: that is what an
    animator brings (a portrait at rest) and what the evaluation uses, and a reference that already
    shows the target's expression would let the network copy it instead of learning it from the
    emotion condition. Identities without a neutral clip fall back to another clip of the same person
    (or another frame of the same clip).
    """

    def __init__(self, dataset: ClipDataset | Sequence[Clip], num_frames: int = 8, p_noisy: float = DEFAULT_P_NOISY,
                 seed: int = 0, split: str | None = "train", size: int | None = None, audio_config: Any = None,
                 samples_per_epoch: int | None = None, mouth_dilate: float = 0.2,
                 expression_regions: Sequence[str] = ()) -> None:
        clips = list(dataset)
        if split is not None:
            clips = [c for c in clips if c.split == split]
        if not clips:
            raise DatasetError(f"no clips in split {split!r} to sample from")
        if not 0.0 <= p_noisy <= 1.0:
            raise DatasetError(f"p_noisy must lie in 0..1, not {p_noisy}")
        from engine.io.audio import AudioConfig

        self.clips = clips
        self.num_frames = int(num_frames)
        self.p_noisy = float(p_noisy)
        self.seed = int(seed)
        self.size = size
        self.audio_config = audio_config or AudioConfig()
        self.samples_per_epoch = samples_per_epoch
        self.mouth_dilate = mouth_dilate
        self.expression_regions = tuple(expression_regions)
        self.epoch = 0
        self._by_identity: dict[str, list[int]] = {}
        self._neutral_by_identity: dict[str, list[int]] = {}
        for i, c in enumerate(clips):
            self._by_identity.setdefault(c.identity, []).append(i)
            if not np.any(c.emotion_vector > 0):
                self._neutral_by_identity.setdefault(c.identity, []).append(i)
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._cache_bytes = 0

    def __len__(self) -> int:
        return self.samples_per_epoch or len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def condition(self, index: int) -> tuple[np.ndarray, bool, str]:
        """The emotion condition of item ``index``: (weights (6,), noisy, source of the label)."""
        rng = self._rng(index)
        clip = self.clips[index % len(self.clips)]
        if rng.random() < self.p_noisy:
            others = [c for c in self.clips if c.emotion_name != clip.emotion_name]
            if others:
                other = others[int(rng.integers(len(others)))]
                return other.emotion_vector, True, other.source
            return np.zeros(len(BASIC_EMOTIONS), np.float32), True, "neutral"
        return clip.emotion_vector, False, clip.source

    def _load(self, ci: int) -> dict[str, Any]:
        if ci in self._cache:
            self._cache.move_to_end(ci)
            return self._cache[ci]
        from engine.io.audio import frame_windows, log_mel

        clip = self.clips[ci]
        frames = clip.load_frames()
        if self.size is not None and frames.shape[1] != self.size:
            import cv2

            frames = np.stack([cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_AREA) for f in frames])
        audio = clip.load_audio()
        fps = clip.fps or DEFAULT_FPS
        windows = frame_windows(log_mel(audio, self.audio_config), len(frames), fps, self.audio_config)
        landmarks = clip.load_landmarks()
        if landmarks is not None and self.size is not None:
            landmarks = landmarks * (self.size / clip.load_frames().shape[1])
        data = {"frames": frames, "audio": windows, "landmarks": landmarks}
        self._cache[ci] = data
        self._cache_bytes += _clip_bytes(data)
        while self._cache_bytes > FRAME_CACHE_BYTES and len(self._cache) > 1:
            self._cache_bytes -= _clip_bytes(self._cache.popitem(last=False)[1])
        return data

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        from engine.io.face import mouth_mask, region_mask

        rng = self._rng(index)
        rng.random()  # the draw used by condition()
        ci = index % len(self.clips)
        clip = self.clips[ci]
        data = self._load(ci)
        frames = data["frames"]
        n = len(frames)
        f = min(self.num_frames, n)
        start = int(rng.integers(0, n - f + 1))
        # reference: a neutral clip of the identity; else another of its clips; else a frame of this clip
        neutral = self._neutral_by_identity.get(clip.identity, [])
        same = [j for j in self._by_identity[clip.identity] if j != ci]
        if neutral:
            ref_frames = self._load(neutral[int(rng.integers(len(neutral)))])["frames"]
            reference = ref_frames[int(rng.integers(len(ref_frames)))]
        elif same and rng.random() < 0.5:
            ref_frames = self._load(same[int(rng.integers(len(same)))])["frames"]
            reference = ref_frames[int(rng.integers(len(ref_frames)))]
        else:
            reference = frames[int(rng.integers(n))]
        target = frames[start:start + f]
        h, w = target.shape[1:3]
        lms = data["landmarks"]
        if lms is not None:
            masks = np.stack([mouth_mask(lms[start + k], h, w, dilate=self.mouth_dilate) for k in range(f)])
        else:  # no landmarks: the lower-middle third of the image
            masks = np.zeros((f, h, w), np.float32)
            masks[:, int(h * 0.6):int(h * 0.9), int(w * 0.3):int(w * 0.7)] = 1.0
        emotion, noisy, label_source = self.condition(index)
        extra: dict[str, Any] = {}
        if self.expression_regions:
            regions = np.zeros((f, h, w), np.float32)  # no landmarks: no region is known
            if lms is not None:
                regions = np.stack([region_mask(lms[start + k], self.expression_regions, h, w) for k in range(f)])
            extra["region_mask"] = torch.from_numpy(regions[:, None])

        def to_tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).float().div(127.5).sub(1.0)

        return {
            "reference": to_tensor(reference).permute(2, 0, 1),
            "frames": to_tensor(target).permute(0, 3, 1, 2),
            "audio": torch.from_numpy(data["audio"][start:start + f].copy()),
            "emotion": torch.from_numpy(emotion.copy()),
            "true_emotion": torch.from_numpy(clip.emotion_vector),
            "noisy": bool(noisy),
            "mouth_mask": torch.from_numpy(masks[:, None]),
            "identity": clip.identity,
            "source": clip.source,
            "emotion_source": label_source,
            "start": start,
            **extra,
        }
