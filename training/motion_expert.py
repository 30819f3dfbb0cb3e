"""``moee train expert`` for the default (portrait) renderer: one custom emotion as a new slot of the motion MoE.

The paper's recipe (MoEE Sec. 3.4), in motion space: the base motion model is loaded, a slot is added
(:meth:`engine.portrait.motion.MotionModel.add_emotion`) and only that slot trains: its expert, its latent tokens and
its gate column. The six experts, the trunk, the head and the lip model stay frozen, so the six's output is
unchanged (bit-identical with the new slider at 0). The loss is the squared error of the predicted
displacement (face units) on the 68 landmarks, *masked*: on frames where the mouth is speaking the mouth's
landmarks are left out (the lips come from the audio); on closed-mouth frames the mouth counts, so an
expression of the lips (a smirk) is learnt. The slider weight of each example is its intensity (noisy
labels: a recipe is drawn at random strengths), and a share of the examples mix a basic emotion in, so the
new slider mixes with the six.

Data (``--data``), any of:

* an **AU recipe** for users with no footage: ``recipe.json`` in the folder (or the JSON file itself),
  ``{"aus": {"12L": 1.0, "14L": 0.7}}``: action units of the synthetic renderer
  (:data:`training.synthetic.AU_LIST` and AU14) at slider 1, a suffix ``L`` / ``R`` for one side of the face
  (the person's left / right, FACS's convention: image right / left). Ground truth is the renderer's exact
  geometry (:meth:`training.synthetic.FaceRenderer.geometry`) of many synthetic people; no pixel is drawn.
* **labelled clips or photos**: ``labels.csv`` with the columns ``file`` and ``emotion`` (and optionally
  ``speaker``): videos (MEAD, RAVDESS, CREMA-D style) or photos labelled with the new emotion's name and
  ``neutral``. MediaPipe Face Mesh reads every file at full resolution; the 68 points are taken into face
  units by a similarity on the rigid points (as the portrait rig does); each frame's shape minus its speaker's
  neutral (the mean of their neutral files, or else the first frames of the clip), aligned to it on the points
  no action unit moves (:func:`align_to_neutral`), is fitted with the synthetic renderer's action units
  (:class:`ActionUnitBasis`, jaw outline left out, regions that move less than Face Mesh's own noise held still
  and the action units that would move them left out), and the fits, averaged over frames (by strength) and
  speakers (median), give a recipe that trains as above (:func:`footage_recipe`). Face Mesh's raw read-back
  agreed with the exact geometry at only 0.4-0.8 (cosine); the fitted recipe's geometry at 0.99 on the dimpled
  smile of the clip test (0.95 before the alignment and the rule-out). What the renderer's action units cannot
  draw is not learnt from footage.

Writes ``OUT/NAME.moeexpert.safetensors`` (:data:`engine.portrait.motion.MOTION_EXPERT_FORMAT`); progress as the
pixel trainer's JSON-lines log (``--log``), Stop through ``--stop-file`` and exact ``--resume`` from
``OUT/checkpoint``, as the studio's trainer panel expects.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.io.atomic import atomic_write_text
from engine.portrait.motion import EXPERT_PACK_SUFFIX, MOTION_CONFIG, MotionModel
from training.errors import DatasetError, TrainingError
from training.recipe import Recipe, read_recipe

#: Checkpoint folder and state file (the names the pixel trainer and the studio's trainer panel use).
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"
CHECKPOINT_WEIGHTS = "motion_expert.safetensors"
#: Softness (face units) of the midline blend of a one-sided action unit.
SIDE_SOFTNESS = 0.06
#: The mouth's landmarks (iBUG 48..67): masked from the loss on speaking frames.
MOUTH_68 = tuple(range(48, 68))
#: Inner-lip gap (face units, points 62-66) above the neutral's at which a real frame counts as speaking: its
#: jaw drop (:data:`OPENING_AU`) is left out of the expression read from it.
SPEAKING_GAP = 0.03
OPENING_AU = 26
#: A clip without a neutral file of its speaker: its first frames, this many seconds, are the neutral.
CLIP_NEUTRAL_SECONDS = 0.3
#: Frames read per clip (evenly spaced): Face Mesh on full-resolution frames is the slow part.
FRAMES_PER_CLIP = 24
#: The jaw outline (iBUG 0..16) and the inner mouth corners (60, 64).
JAW_68 = tuple(range(17))
INNER_CORNERS_68 = (60, 64)
#: Weight of the inner mouth corners in the action-unit fit of a read-back frame (:func:`readback_weights`).
INNER_CORNER_WEIGHT = 0.3
#: Face Mesh's nose wings (iBUG 31..35) widen with its reading of a smile: they count this much in the fit and
#: are still among the rigid points a frame is aligned on (without them the alignment drifted more).
NOSE_WINGS_68 = (31, 32, 33, 34, 35)
NOSE_WING_WEIGHT = 0.3
#: The face's regions (iBUG rows) and the RMS motion (face units) under which Face Mesh's reading of a region
#: counts as still (:func:`still_regions`).
REGIONS_68: dict[str, tuple[int, ...]] = {
    "brows": tuple(range(17, 27)), "nose": tuple(range(27, 36)), "left eye": tuple(range(36, 42)),
    "right eye": tuple(range(42, 48)), "mouth": tuple(range(48, 68))}
READBACK_NOISE = 0.02
#: Points none of the synthetic renderer's action units move (the eye corners and the top of the nose bridge):
#: each read frame is aligned to its speaker's neutral on them before differencing (:func:`align_to_neutral`).
#: The rig's rigid points also hold the nose tip and wings, which Face Mesh moves with its reading of a smile
#: (0.015-0.025 face units on synthetic smiles): aligned on those, the brows and eyes seemed to shrink inward.
ANCHORS_68 = (27, 28, 36, 39, 42, 45)
#: Ridge weight on the one-sided columns of the fit: an expression read as symmetric unless a side clearly differs.
ONE_SIDED_PENALTY = 1e-2
#: Synthetic people whose mean displacement per action unit is the fit's basis, and their draw's seed.
FIT_IDENTITIES = 12
FIT_SEED = 4242
#: Largest landmark motion (face units) under which a fitted action unit counts as Face Mesh's noise.
MIN_FIT_MOTION = 0.01
#: Fitted intensity under which an action unit counts as Face Mesh's noise (left out of a read recipe).
MIN_FIT_AU = 0.1
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")


@dataclass(frozen=True)
class ExpertTrainingConfig:
    """How the motion expert trains (defaults: about a minute on a busy CPU core)."""

    steps: int = 300
    batch: int = 64  # landmark examples per step
    lr: float = 3e-3
    identities: int = 80  # synthetic people of a recipe
    samples: int = 3000  # recipe examples drawn
    closed_share: float = 0.6  # share of recipe examples with the mouth closed (the mouth in the loss)
    mix_share: float = 0.25  # share with a basic emotion mixed in
    seed: int = 0
    log_every: int = 1
    save_every: int = 100


def _merge(a: dict[int, float], b: dict[int, float], scale: float = 1.0) -> dict[int, float]:
    """The AU union of ``a`` and ``b * scale`` (strongest per AU, as emotion_to_aus merges emotions)."""
    out = dict(a)
    for au, value in b.items():
        out[au] = max(out.get(au, 0.0), value * scale)
    return out


def recipe_landmarks(renderer, recipe: Recipe, intensity: float, base_aus: dict[int, float],
                     opening: float) -> np.ndarray:
    """(68, 2) face-unit landmarks of ``base_aus`` plus ``recipe`` at ``intensity``, one-sided AUs blended
    across the face's midline (the person's left is image right: x > 0)."""
    both = _merge(base_aus, recipe.both, intensity)
    points = renderer.landmarks_face_units(renderer.geometry(both, opening, 0.0))
    if not (recipe.left or recipe.right):
        return points
    rest_x = renderer.landmarks_face_units(renderer.geometry({}, 0.0, 0.0))[:, 0]
    out = points.copy()
    for aus, sign in ((recipe.left, 1.0), (recipe.right, -1.0)):
        if aus:
            sided = renderer.landmarks_face_units(renderer.geometry(_merge(both, aus, intensity), opening, 0.0))
            weight = 1.0 / (1.0 + np.exp(-sign * rest_x / SIDE_SOFTNESS))
            out += weight[:, None] * (sided - points)
    return out


def recipe_displacement(renderer, recipe: Recipe, intensity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(neutral landmarks, the recipe's displacement at ``intensity`` with the mouth closed), both (68, 2)."""
    rest = renderer.landmarks_face_units(renderer.geometry({}, 0.0, 0.0))
    return rest, recipe_landmarks(renderer, recipe, intensity, {}, 0.0) - rest


def recipe_examples(recipe: Recipe, emotions: tuple[str, ...], cfg: ExpertTrainingConfig) -> dict[str, np.ndarray]:
    """Exact examples of the recipe on synthetic people: shapes, openings, weights (E), targets, loss masks."""
    from training.synthetic import FaceRenderer, Identity, emotion_to_aus

    rng = np.random.default_rng(cfg.seed)
    seeds = [int(s) for s in rng.choice(2**31 - 1, cfg.identities, replace=False)]
    renderers = [FaceRenderer(Identity.from_seed(s)) for s in seeds]
    rests = [r.landmarks_face_units(r.geometry({}, 0.0, 0.0)) for r in renderers]
    base, count, new = len(emotions) - 1, cfg.samples, len(emotions) - 1
    out = {"shapes": np.zeros((count, 68, 2), np.float32), "targets": np.zeros((count, 68, 2), np.float32),
           "openings": np.zeros(count, np.float32), "weights": np.zeros((count, len(emotions)), np.float32),
           "masks": np.ones((count, 68), np.float32)}
    for k in range(count):
        person = int(rng.integers(len(renderers)))
        renderer = renderers[person]
        opening = 0.0 if rng.random() < cfg.closed_share else float(rng.uniform(0.1, 1.0))
        intensity = float(rng.uniform(0.05, 1.0))
        mix: dict[str, float] = {}
        if rng.random() < cfg.mix_share:
            mix = {emotions[int(rng.integers(base))]: float(rng.uniform(0.2, 1.0))}
        for name, value in mix.items():
            out["weights"][k, emotions.index(name)] = value
        out["weights"][k, new] = intensity
        moved = recipe_landmarks(renderer, recipe, intensity, emotion_to_aus(mix) if mix else {}, opening)
        out["shapes"][k], out["targets"][k], out["openings"][k] = rests[person], moved - rests[person], opening
        if opening > 0:
            out["masks"][k, list(MOUTH_68)] = 0.0
    return out


# ---------------------------------------------------------------------------------------------- real footage
def _frames_of(path: Path) -> tuple[list[np.ndarray], int]:
    """Evenly spaced frames (RGB, full resolution) of a video or a photo, and how many of the first are the
    clip's neutral head (every frame of its first :data:`CLIP_NEUTRAL_SECONDS`, at least one; 0 for a photo)."""
    from engine.io.image import load_image

    if path.suffix.lower() not in VIDEO_SUFFIXES:
        return [load_image(path)], 0
    from engine.io.video import probe_video, read_frames

    info = probe_video(path)
    frames = [np.asarray(f) for f in read_frames(path)]
    head = max(1, int(math.ceil(CLIP_NEUTRAL_SECONDS * float(info.fps or 25))))
    if len(frames) > FRAMES_PER_CLIP:
        picks = np.linspace(0, len(frames) - 1, FRAMES_PER_CLIP).round().astype(int)
        frames = [frames[i] for i in sorted(set(picks.tolist()) | set(range(min(head, len(frames)))))]
    return frames, min(head, len(frames))


def face_unit_shapes(frames: list[np.ndarray], mean_shape: np.ndarray) -> np.ndarray:
    """(F, 68, 2) face-unit shapes of the frames' faces (Face Mesh -> iBUG 68 -> similarity on the rigid
    points onto the motion model's mean face, as :func:`engine.portrait.rig.build_rig` does)."""
    from engine.io.face import detect_landmarks
    from engine.portrait.rig import LM68_FROM_MP478, RIGID_68, fit_similarity

    shapes = []
    for frame in frames:
        points = detect_landmarks(frame).points[list(LM68_FROM_MP478)].astype(np.float64)
        to_face = fit_similarity(points[list(RIGID_68)], mean_shape[list(RIGID_68)])
        shapes.append(to_face.apply(points))
    return np.asarray(shapes, np.float64).reshape(-1, 68, 2)


def _inner_gap(shapes: np.ndarray) -> np.ndarray:
    return np.linalg.norm(shapes[..., 66, :] - shapes[..., 62, :], axis=-1)


def readback_weights() -> np.ndarray:
    """(68,) weight of each landmark in the action-unit fit of a frame read back by Face Mesh.

    Face Mesh's jaw outline is a guess of the silhouette that follows the mouth's shape (it rose 0.015 face units
    on closed-mouth synthetic smiles whose jaw does not move): it is left out. The inner mouth corners count less
    (Face Mesh's are the corners of the opening, the synthetic face's lie a little inside them), and so do the
    nose wings (Face Mesh widens them with its reading of a smile).
    """
    weights = np.ones(68)
    weights[list(JAW_68)] = 0.0
    weights[list(INNER_CORNERS_68)] = INNER_CORNER_WEIGHT
    weights[list(NOSE_WINGS_68)] = NOSE_WING_WEIGHT
    return weights


def still_region_names(displacement: np.ndarray, noise: float = READBACK_NOISE) -> tuple[str, ...]:
    """The regions of :data:`REGIONS_68` whose RMS motion in ``displacement`` (68, 2) is under ``noise``.

    Face Mesh reads the whole face through one model: when the mouth changes, its brows, lids and nose wings
    shift by about 0.01 face units as well (measured on synthetic faces whose upper face does not move), enough
    for a fit to find a brow raise in every smile. A region that moves less than that counts as still. (Its
    jitter on a still face, 0.0001-0.0004 face units on the synthetic clips' neutral frames, is far below: the
    noise that matters is this coupling, not the jitter.)"""
    return tuple(name for name, rows in REGIONS_68.items()
                 if np.sqrt((np.asarray(displacement)[list(rows)] ** 2).sum(-1).mean()) < noise)


def still_regions(displacement: np.ndarray, noise: float = READBACK_NOISE) -> np.ndarray:
    """``displacement`` (68, 2) with each region of :func:`still_region_names` set to 0."""
    out = np.array(displacement, np.float64, copy=True)
    for name in still_region_names(out, noise):
        out[list(REGIONS_68[name])] = 0.0
    return out


def align_to_neutral(shapes: np.ndarray, neutral: np.ndarray, anchors: tuple[int, ...] = ANCHORS_68) -> np.ndarray:
    """``shapes`` (F, 68, 2) each moved by the similarity that best lays its ``anchors`` on the ``neutral``'s
    (:data:`ANCHORS_68`), so that a frame's difference from its neutral is the expression, not a shift, a turn
    or a change of scale of the head."""
    from engine.portrait.rig import fit_similarity

    rows = list(anchors)
    return np.asarray([fit_similarity(shape[rows], neutral[rows]).apply(shape) for shape in shapes], np.float64)


@dataclass(frozen=True)
class ActionUnitBasis:
    """The landmark displacement (face units, mean over synthetic people) of each action unit at intensity 1,
    on both sides of the face and on each side: ``columns`` ``(136, U)`` of ``names`` (``"12B"``, ``"12L"``,
    ``"12R"``, ...)."""

    names: tuple[str, ...]
    columns: np.ndarray

    @classmethod
    def build(cls, identities: int = FIT_IDENTITIES, seed: int = FIT_SEED) -> ActionUnitBasis:
        """The basis of the synthetic renderer's action units (:data:`training.synthetic.AU_LIST` and AU14)."""
        from training.synthetic import AU_LIST, FaceRenderer, Identity
        from training.synthetic.renderer import GEOMETRY_ONLY_AUS

        rng = np.random.default_rng(seed)
        renderers = [FaceRenderer(Identity.from_seed(int(s))) for s in rng.choice(2**31 - 1, identities, replace=False)]
        rests = [r.landmarks_face_units(r.geometry({}, 0.0, 0.0)) for r in renderers]
        names, columns = [], []
        for au in (*AU_LIST, *GEOMETRY_ONLY_AUS):
            for side in ("B", "L", "R"):
                recipe = Recipe({au: 1.0} if side == "B" else {}, {au: 1.0} if side == "L" else {},
                                {au: 1.0} if side == "R" else {})
                moved = [recipe_landmarks(r, recipe, 1.0, {}, 0.0) - rest for r, rest in zip(renderers, rests, strict=True)]
                names.append(f"{au}{side}")
                columns.append(np.mean(moved, axis=0).reshape(-1))
        return cls(tuple(names), np.stack(columns, axis=1))

    def columns_of(self, au: int) -> list[int]:
        """The basis columns of action unit ``au`` (both sides, each side)."""
        return [i for i, name in enumerate(self.names) if int(name[:-1]) == au]

    def moving_none_of(self, regions: tuple[str, ...]) -> np.ndarray:
        """(U,) bool: the columns that move no landmark of ``regions`` (names of :data:`REGIONS_68`) by
        :data:`MIN_FIT_MOTION` or more."""
        motion = np.linalg.norm(self.columns.reshape(68, 2, -1), axis=1)  # (68, U)
        allowed = np.ones(len(self.names), bool)
        for name in regions:
            allowed &= motion[list(REGIONS_68[name])].max(axis=0) < MIN_FIT_MOTION
        return allowed

    def fit(self, displacement: np.ndarray, weights: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """Intensities ``(U,)`` in 0..1 whose displacement best matches ``displacement`` (68, 2) in the
        least-squares sense, each landmark weighted by ``weights`` (68,); the columns not ``allowed`` (U,) bool
        stay at 0."""
        from scipy.optimize import lsq_linear

        allowed = np.ones(len(self.names), bool) if allowed is None else np.asarray(allowed, bool)
        out = np.zeros(len(self.names))
        if not allowed.any():
            return out
        w = np.repeat(np.sqrt(np.asarray(weights, np.float64)), 2)
        target = np.asarray(displacement, np.float64).reshape(-1)
        sided = np.array([not name.endswith("B") for name in self.names], np.float64)[allowed]
        prior = np.diag(np.sqrt(ONE_SIDED_PENALTY) * sided)  # a symmetric explanation first
        matrix = np.vstack([self.columns[:, allowed] * w[:, None], prior])
        out[allowed] = lsq_linear(matrix, np.concatenate([target * w, np.zeros(int(allowed.sum()))]),
                                  bounds=(0.0, 1.0)).x
        return out

    def fit_readback(self, displacement: np.ndarray, noise: float = READBACK_NOISE) -> np.ndarray:
        """:meth:`fit` of a frame read back by Face Mesh (its displacement from its speaker's neutral, aligned
        by :func:`align_to_neutral`): the regions that move less than ``noise`` are held still and rule out
        every action unit that would move them (a still brow rules out AU1, AU2, AU4 and AU9, whose wrinkling
        lowers the brows), so that Face Mesh's reading of a smile's upper lip and nose wings is not taken for a
        nose wrinkle; landmarks weighted by :func:`readback_weights`."""
        still = still_region_names(displacement, noise)
        return self.fit(still_regions(displacement, noise), readback_weights(), self.moving_none_of(still))

    def recipe(self, intensities: np.ndarray, floor: float = MIN_FIT_AU) -> Recipe:
        """The recipe of fitted intensities: an action unit on both sides at the weaker side's intensity, the
        stronger side's surplus one-sided; intensities under ``floor`` (Face Mesh's noise) left out."""
        by_au: dict[int, dict[str, float]] = {}
        reach = np.abs(self.columns.reshape(68, 2, -1)).max(axis=(0, 1))
        intensities = np.where(np.asarray(intensities) * reach >= MIN_FIT_MOTION, intensities, 0.0)
        for name, value in zip(self.names, intensities, strict=True):
            by_au.setdefault(int(name[:-1]), {"B": 0.0, "L": 0.0, "R": 0.0})[name[-1]] = float(value)
        both: dict[int, float] = {}
        left: dict[int, float] = {}
        right: dict[int, float] = {}
        for au, parts in by_au.items():
            sides = {"L": parts["B"] + parts["L"], "R": parts["B"] + parts["R"]}
            low, high = min(sides.values()), max(sides.values())
            if low >= floor:
                both[au] = round(min(low, 1.0), 3)
            if high >= floor and high - low >= floor:
                (left if sides["L"] >= sides["R"] else right)[au] = round(min(high, 1.0), 3)
        return Recipe(both, left, right)


def face_unit_shapes_of(path: Path, mean_shape: np.ndarray) -> tuple[np.ndarray, int]:
    """The face-unit shapes of a clip's or photo's frames (:func:`face_unit_shapes`) and how many of the first
    frames are the clip's neutral head (:data:`CLIP_NEUTRAL_SECONDS`; 0 for a photo)."""
    frames, head = _frames_of(path)
    return face_unit_shapes(frames, mean_shape), head


def footage_recipe(folder: Path, name: str, motion: MotionModel, log: Callable[[str], None] = print,
                   basis: ActionUnitBasis | None = None) -> tuple[Recipe, dict[str, str]]:
    """The recipe that ``labels.csv``'s clips or photos of ``name`` show (with its ``neutral`` ones), read by
    Face Mesh: the action units fitted to each frame's displacement from its speaker's neutral (the speaker's
    neutral files, else the first frames of their clips), averaged over the frames weighted by each frame's
    fitted strength (the apex of a clip counts, its neutral start does not), then over the speakers.

    Returns the recipe and notes (how many frames and speakers, the per-speaker recipes)."""
    csv_path = folder / "labels.csv"
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = {c.strip().lower(): c for c in (rows[0] if rows else {})}
    if "file" not in columns or "emotion" not in columns:
        raise DatasetError(f"{csv_path} needs the columns file and emotion")
    by_speaker: dict[str, dict[str, list[np.ndarray]]] = {}
    clip_heads: dict[str, list[np.ndarray]] = {}
    key = name.strip().lower()
    for row in rows:
        label = (row[columns["emotion"]] or "").strip().lower()
        if label not in (key, "neutral"):
            continue
        path = folder / (row[columns["file"]] or "").strip()
        speaker = (row.get(columns.get("speaker", ""), "") or "").strip() or "(one speaker)"
        shapes, head = face_unit_shapes_of(path, motion.mean_shape)
        if label == key and head:
            clip_heads.setdefault(speaker, []).append(shapes[: min(head, len(shapes))])
            shapes = shapes[head:] if len(shapes) > head else shapes
        by_speaker.setdefault(speaker, {}).setdefault(label, []).append(shapes)
        log(f"read {path.name}: {len(shapes)} face(s)")
    basis = basis if basis is not None else ActionUnitBasis.build()
    speakers: list[np.ndarray] = []
    notes: dict[str, str] = {}
    frames = 0
    for speaker, labelled in by_speaker.items():
        expressive = labelled.get(key, [])
        if not expressive:
            continue
        neutrals = labelled.get("neutral") or clip_heads.get(speaker)
        if not neutrals:
            raise DatasetError(f"{csv_path}: speaker {speaker!r} has photos of '{key}' but no neutral one; add a "
                               "neutral photo of the same person (emotion 'neutral')")
        neutral = np.concatenate(neutrals).mean(0)
        neutral_gap = float(_inner_gap(neutral))
        shapes = align_to_neutral(np.concatenate(expressive), neutral)
        fits_array = np.asarray([basis.fit_readback(shape - neutral) for shape in shapes])
        # a parted mouth is speech as likely as a jaw drop (the two open it alike): not part of the expression
        speaking = _inner_gap(shapes) - neutral_gap > SPEAKING_GAP
        fits_array[np.ix_(speaking, basis.columns_of(OPENING_AU))] = 0.0
        strength = np.linalg.norm(fits_array, axis=1)
        if strength.sum() <= 0:
            continue
        speakers.append((fits_array * strength[:, None]).sum(0) / strength.sum())
        frames += len(shapes)
        notes[f"speaker {speaker}"] = basis.recipe(speakers[-1]).describe()
    if not speakers:
        raise DatasetError(f"{csv_path} holds no clip or photo labelled '{key}' whose face moves from the neutral")
    recipe = basis.recipe(np.median(speakers, axis=0))
    if not (recipe.both or recipe.left or recipe.right):
        raise DatasetError(f"{csv_path}: the faces labelled '{key}' barely move from their neutral ones (every "
                           f"action unit below {MIN_FIT_AU:g}); nothing to learn")
    log(f"'{name}' read from {frames} frame(s) of {len(speakers)} speaker(s) as {recipe.describe()}")
    return recipe, {"frames": str(frames), "speakers": str(len(speakers)), **notes}


def check_expert_data(path: str | Path, name: str) -> str:
    """What a data folder teaches the motion expert: ``"recipe"`` or ``"footage"``; :class:`DatasetError` else."""
    from training.datasets import check_custom_emotion_data

    root = Path(path)
    if read_recipe(root) is not None:
        return "recipe"
    check_custom_emotion_data(root, name)
    return "footage"


# ---------------------------------------------------------------------------------------------- training
def slot_parameters(motion: MotionModel, index: int) -> list[torch.nn.Parameter]:
    """Freeze the whole motion model but the custom slot ``index``: its expert, latent tokens and gate column."""
    motion.moe.requires_grad_(False)
    motion.lips.requires_grad_(False)
    expert, latents, gate = motion.moe.slot_modules(index)
    params = [*expert.parameters(), latents, *gate.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared displacement error over the landmarks the mask keeps (the masked mouth of speaking frames)."""
    err = ((pred - target) ** 2).sum(-1) * mask
    return err.sum() / mask.sum().clamp_min(1.0) / 2.0


def lr_at(step: int, cfg: ExpertTrainingConfig) -> float:
    """Cosine decay from ``cfg.lr`` to a tenth of it (a function of the step: a resumed run continues it exactly)."""
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * step / max(1, cfg.steps))))


def _save_checkpoint(out: Path, params: list[torch.nn.Parameter], optimizer: torch.optim.Adam, step: int,
                     cfg: ExpertTrainingConfig, name: str) -> None:
    from safetensors.torch import save as save_bytes

    from engine.io.atomic import atomic_write_bytes

    folder = out / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for i, p in enumerate(params):
        tensors[f"param.{i}"] = p.detach().clone().contiguous()
        state = optimizer.state.get(p, {})
        for k in ("exp_avg", "exp_avg_sq"):
            if k in state:
                tensors[f"{k}.{i}"] = state[k].detach().clone().contiguous()
    atomic_write_bytes(folder / CHECKPOINT_WEIGHTS, save_bytes(tensors))
    adam_steps = [float(optimizer.state.get(p, {}).get("step", torch.tensor(0.0))) for p in params]
    atomic_write_text(folder / STATE_FILE, json.dumps(
        {"stage": "expert", "renderer": "portrait", "emotion": name, "step": step, "steps": cfg.steps,
         "adam_steps": adam_steps, "config": asdict(cfg)}, indent=1))


def _load_checkpoint(out: Path, params: list[torch.nn.Parameter], optimizer: torch.optim.Adam,
                     cfg: ExpertTrainingConfig) -> int:
    from safetensors.torch import load_file

    folder = out / CHECKPOINT_DIR
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        tensors = load_file(str(folder / CHECKPOINT_WEIGHTS))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"--resume: {folder} holds no readable motion-expert checkpoint ({exc})") from exc
    if state.get("renderer") != "portrait" or int(state.get("steps", -1)) != cfg.steps:
        raise TrainingError(f"--resume: {folder} is not a checkpoint of this training (give the same --steps "
                            f"{state.get('steps')} and data)")
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(tensors[f"param.{i}"])
            if f"exp_avg.{i}" in tensors:
                optimizer.state[p] = {"step": torch.tensor(state["adam_steps"][i]),
                                      "exp_avg": tensors[f"exp_avg.{i}"].clone(),
                                      "exp_avg_sq": tensors[f"exp_avg_sq.{i}"].clone()}
    return int(state["step"])


def train_slot(motion: MotionModel, index: int, data: dict[str, np.ndarray], cfg: ExpertTrainingConfig,
               out: Path | None = None, log_path: Path | None = None, stop_file: Path | None = None,
               resume: bool = False, log: Callable[[str], None] = print) -> int:
    """Train the custom slot ``index`` on ``data``; returns the step it stopped at (``cfg.steps`` when done)."""
    params = slot_parameters(motion, index)
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    start = _load_checkpoint(out, params, optimizer, cfg) if resume and out is not None else 0
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()}
    records: list[str] = []
    if log_path is not None:
        kept = []
        if resume and log_path.is_file():
            kept = [line for line in log_path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= start]
        records = kept
        atomic_write_text(log_path, "".join(line + "\n" for line in records))
    moe = motion.moe
    moe.train()
    began = time.perf_counter()
    step = start
    try:
        for step in range(start, cfg.steps):
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            idx = torch.randint(0, len(tensors["shapes"]), (cfg.batch,), generator=generator)
            pred = moe(tensors["shapes"][idx], tensors["openings"][idx], tensors["weights"][idx])
            loss = masked_loss(pred, tensors["targets"][idx], tensors["masks"][idx])
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done = step + 1
            if log_path is not None and (done % cfg.log_every == 0 or done == cfg.steps):
                rate = (done - start) * cfg.batch / max(time.perf_counter() - began, 1e-6)
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({"step": done, "loss": float(loss.item()), "lr": lr_at(step, cfg),
                                         "samples_per_s": round(rate, 1)}) + "\n")
            if done % 100 == 0 or done == cfg.steps:
                log(f"expert step {done}/{cfg.steps}: loss {loss.item():.2e}")
            if out is not None and done < cfg.steps:
                if stop_file is not None and stop_file.exists():
                    _save_checkpoint(out, params, optimizer, done, cfg, motion.cfg.emotions[index])
                    log(f"stopped at step {done}/{cfg.steps}; continue with --resume")
                    return done
                if done % cfg.save_every == 0:
                    _save_checkpoint(out, params, optimizer, done, cfg, motion.cfg.emotions[index])
        step = cfg.steps
    finally:
        moe.eval()
        motion.moe.requires_grad_(False)
    if out is not None:
        _save_checkpoint(out, params, optimizer, step, cfg, motion.cfg.emotions[index])
    return step


def recipe_agreement(motion: MotionModel, recipe: Recipe, people: int = 8, seed: int = 12345) -> dict[str, float]:
    """Cosine and magnitude ratio of the new slider at 1 vs the recipe's exact displacement, on unseen people."""
    from training.motion_trainer import displacement_agreement
    from training.synthetic import FaceRenderer, Identity

    rng = np.random.default_rng(seed)
    weights = np.zeros(len(motion.cfg.emotions), np.float32)
    weights[-1] = 1.0
    pred, exact = [], []
    for s in rng.choice(2**31 - 1, people, replace=False):
        rest, target = recipe_displacement(FaceRenderer(Identity.from_seed(int(s))), recipe)
        pred.append(motion.displacement(rest, [0.0], weights)[0])
        exact.append(target)
    return displacement_agreement(np.asarray(pred), np.asarray(exact))


def train_motion_expert(data: str | Path, name: str, out: str | Path, base: str | Path | None = None,
                        colour: str | None = None, cfg: ExpertTrainingConfig = ExpertTrainingConfig(),
                        log_path: str | Path | None = None, stop_file: str | Path | None = None,
                        resume: bool = False, log: Callable[[str], None] = print) -> Path | None:
    """Train one custom emotion of the motion model in ``base`` (default: the bundled model) on ``data``.

    Returns the written pack ``OUT/NAME.moeexpert.safetensors``, or None when Stop ended the run early (its
    checkpoint is in ``OUT/checkpoint``; ``resume=True`` continues it).
    """
    from engine.io.resources import DEFAULT_MODEL_DIR

    torch.manual_seed(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    motion = MotionModel.load(base if base is not None else DEFAULT_MODEL_DIR)
    index = motion.add_emotion(name, colour)
    started = time.perf_counter()
    recipe = read_recipe(data)
    if recipe is not None:
        examples = recipe_examples(recipe, motion.cfg.emotions, cfg)
        source = {"source": "recipe", "recipe": recipe.describe()}
    else:
        check_expert_data(data, name)
        recipe_read, read_notes = footage_recipe(Path(data), name, motion, log)
        examples = recipe_examples(recipe_read, motion.cfg.emotions, cfg)
        source = {"source": "footage", "recipe": recipe_read.describe(), **read_notes}
    log(f"{len(examples['shapes'])} examples of '{name}' ({source['source']}) in {time.perf_counter() - started:.1f} s")
    step = train_slot(motion, index, examples, cfg, out, None if log_path is None else Path(log_path),
                      None if stop_file is None else Path(stop_file), resume, log)
    if step < cfg.steps:
        return None
    extra = {**source, "steps": str(cfg.steps), "seconds": f"{time.perf_counter() - started:.1f}"}
    if recipe is not None:
        agreement = recipe_agreement(motion, recipe)
        extra["recipe_cosine"] = f"{agreement['cosine']:.3f}"
        log(f"'{name}' at 1 vs the recipe on unseen people: cosine {agreement['cosine']:.3f}, "
            f"magnitude ratio {agreement['magnitude_ratio']:.2f}")
    pack = motion.save_expert_pack(name, out / f"{name}{EXPERT_PACK_SUFFIX}", extra)
    log(f"wrote {pack}")
    return pack


# ---------------------------------------------------------------------------------------------- command line
def expert_renderer(args: argparse.Namespace) -> str:
    """Which renderer ``moee train expert`` trains for: ``--renderer``, else the motion model (portrait) when the
    base model folder has one, else the pixel model."""
    from engine.io.resources import DEFAULT_MODEL_DIR

    chosen = getattr(args, "renderer", "auto") or "auto"
    if chosen != "auto":
        return chosen
    base = Path(args.model or args.init or DEFAULT_MODEL_DIR)
    return "portrait" if (base / MOTION_CONFIG).is_file() else "pixel"


#: ``moee train`` options that only the pixel model's trainer reads (refused for the motion expert).
PIXEL_ONLY_OPTIONS = {"frames": 4, "lr": None, "ablation": "none", "mixed_precision": "no", "workers": 0,
                      "gradient_checkpointing": False, "spatial_frames": 1, "lip_weight": 0.0,
                      "expression_weight": 0.0, "no_noisy_sampling": False, "stop_after": None,
                      "time_limit": None}


def run_motion_expert(args: argparse.Namespace) -> int:
    """``moee train expert`` for the portrait renderer (arguments of :func:`training.trainer.add_train_arguments`)."""
    if not args.name:
        raise TrainingError("the expert stage needs --name (the new emotion's name)")
    given = [k for k, default in PIXEL_ONLY_OPTIONS.items() if getattr(args, k, default) != default]
    if given:
        raise TrainingError(f"--{given[0].replace('_', '-')} applies to the pixel model's expert only; leave it out "
                            "or train the pixel model's expert with --renderer pixel")
    steps = args.steps if args.steps is not None else ExpertTrainingConfig.steps
    if steps < 1 or args.batch < 1:
        raise TrainingError("--steps and --batch must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        torch.set_num_threads(1)  # tiny tensors: one thread beats two fighting over a busy machine
    cfg = ExpertTrainingConfig(steps=steps, batch=args.batch * ExpertTrainingConfig.batch // 2, seed=args.seed,
                               log_every=max(1, args.log_every), save_every=max(1, args.save_every))
    pack = train_motion_expert(args.data, args.name, args.out, args.model or args.init, args.colour, cfg,
                               args.log, args.stop_file, args.resume)
    if pack is None:
        print(f"stopped; continue with --resume (checkpoint in {Path(args.out) / CHECKPOINT_DIR})")
    return 0
