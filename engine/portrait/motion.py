"""The Emotion MoE in motion space: sliders, brush and audio -> facial landmark motion.

The pixel U-Net of MoEE works on a 64 px face; its frames of a real portrait are out of its training
domain, and motion read back out of generated pixels loses most of the expression
(``docs/PORTRAIT.md``). So the performance that reaches a full-resolution portrait is produced *as
motion*, by the same mechanism acting on landmark tokens instead of latent pixels:

* tokens ``X`` (n = 68, iBUG order): each landmark's neutral position in *face units* (the synthetic
  renderer's frame: 1 = half the face width), its index embedding, and the mouth opening of the frame;
* six experts ``E_i`` (happiness .. surprise), each a cross-attention from the landmark tokens to
  that emotion's learned latent tokens;
* local gates ``s = sigmoid(G_local(LN(X)))`` (n x E) and global weights ``g`` (the sliders);
* combination ``X' = X + sum_i (g_i * s_i) ⊙ E_i(LN(X))`` — the paper's ``X + sum_i g_i E_i(X * s_i)``
  with the local gate applied to each token's expert output instead of its input. The experts are
  token-wise (a landmark's query never sees another landmark), so the two agree in what each token
  receives, and the product ``g_i * s_i`` is one number a painted stroke can stand in for exactly:
  inside a stroke ``w_i = (1 - alpha_i m) g_i s_i + alpha_i m`` (:func:`painted_token_weights`);
* a head maps ``X'`` to a displacement in face units; the rest pose (``g = 0``, mouth closed) is
  subtracted, so a neutral, silent frame moves nothing, exactly.

Lips follow the audio through :class:`LipModel`, a small network from the per-frame loudness window
(:func:`lip_features`) to the mouth opening. Both are trained on the synthetic renderer's exact
landmarks (``moee train-motion``, :mod:`training.motion_trainer`) and shipped beside the U-Net in the
default model folder as ``motion.safetensors`` + ``motion.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.errors import CheckpointError
from engine.moee import EmotionExpert, local_gate
from engine.portrait.calibration import PortraitCalibration, load_portrait_calibration

#: Landmarks the motion model moves (iBUG 68-point order, as the synthetic renderer records them).
MOTION_LANDMARKS = 68
MOTION_WEIGHTS = "motion.safetensors"
MOTION_CONFIG = "motion.json"
MOTION_FORMAT_VERSION = 1

#: ``format`` of a motion expert pack's safetensors metadata: one custom emotion of the motion MoE (its expert,
#: latent tokens and gate column). A pixel-model pack says ``moee-expert`` (engine.diffusion.checkpoint.EXPERT_FORMAT).
MOTION_EXPERT_FORMAT = "moee-motion-expert"
MOTION_EXPERT_FORMAT_VERSION = 1
#: File name ending of an expert pack (the same for both renderers; the metadata's ``format`` tells them apart).
EXPERT_PACK_SUFFIX = ".moeexpert.safetensors"
#: Tensors of a motion expert pack besides the expert's own (``expert.*``).
PACK_LATENTS, PACK_GATE_WEIGHT, PACK_GATE_BIAS = "latents", "gate.weight", "gate.bias"

#: Loudness percentile of a clip mapped to a fully open mouth (as the synthetic speech model does).
LIP_REFERENCE_PERCENTILE = 95.0
#: Frames of loudness on each side of a frame that the lip model reads.
LIP_CONTEXT = 2
#: Floor of the normalised loudness before the logarithm (silence reads as this level).
LIP_LEVEL_FLOOR = 1e-3


#: Accepted range of each size of a motion config (the shipped model: width 64, 4 tokens of 32, 4 heads).
MOTION_SIZE_BOUNDS: dict[str, tuple[int, int]] = {
    "width": (1, 4096), "emotion_tokens": (1, 256), "emotion_dim": (1, 4096), "heads": (1, 64),
    "trunk_layers": (0, 64), "lip_hidden": (1, 4096), "lip_context": (0, 64)}


@dataclass(frozen=True)
class MotionConfig:
    """Sizes of the motion MoE (small: it trains in minutes and runs in about a millisecond on a CPU)."""

    emotions: tuple[str, ...] = ("happiness", "sadness", "anger", "disgust", "fear", "surprise")
    width: int = 64  # token width C
    emotion_tokens: int = 4  # learned latent tokens K per expert
    emotion_dim: int = 32  # width D of the emotion tokens
    heads: int = 4
    trunk_layers: int = 2  # residual MLP blocks before the MoE
    lip_hidden: int = 32
    lip_context: int = LIP_CONTEXT

    def to_json(self) -> dict:
        return {**asdict(self), "emotions": list(self.emotions)}

    @classmethod
    def from_json(cls, data: object, source: str) -> MotionConfig:
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            emotions = kwargs.get("emotions", list(cls.emotions))
            if not (isinstance(emotions, list) and emotions and all(isinstance(e, str) and e.strip() for e in emotions)
                    and len(set(emotions)) == len(emotions)):
                raise ValueError(f"emotions must be a list of distinct emotion names, not {emotions!r}")
            kwargs["emotions"] = tuple(emotions)
            cfg = cls(**kwargs)
            for name, (low, high) in MOTION_SIZE_BOUNDS.items():
                value = getattr(cfg, name)
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
            if cfg.width % cfg.heads:
                raise ValueError(f"width {cfg.width} is not divisible by heads {cfg.heads}")
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: bad motion config: {exc}") from exc
        return cfg

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the tensors that pin each size of this config down (``moe.`` / ``lips.`` names)."""
        return {"moe.token_embedding": (MOTION_LANDMARKS, self.width),
                "moe.emotion_latents": (len(self.emotions), self.emotion_tokens, self.emotion_dim),
                "lips.net.0.weight": (self.lip_hidden, 2 * self.lip_context + 1)}


def painted_token_weights(g: torch.Tensor, s: torch.Tensor, painted: torch.Tensor | None,
                          alpha: torch.Tensor | None) -> torch.Tensor:
    """Per-token expert weights ``w = g_i * s_i``, with a painted stroke standing in for the product.

    ``w_i = (1 - alpha_i * m_i) * g_i * s_i + alpha_i * m_i`` where ``m`` (n x E, 0..1) is the painted
    strength at each token and ``alpha`` how much the brush overrides the model. So a stroke shows at its
    painted strength even where its emotion's slider is 0, and a token the brush does not touch
    (``m = 0``) keeps ``g_i * s_i``. Shapes: ``g`` (B, E), ``s`` (B, n, E), ``painted`` (B, n, E),
    ``alpha`` (B, E).
    """
    weights = g[:, None, :] * s
    if painted is None or alpha is None:
        return weights
    override = alpha[:, None, :] * painted
    return (1.0 - override) * weights + override


class MotionMoE(nn.Module):
    """Landmark tokens -> displacement in face units, through six emotion experts (module docstring)."""

    def __init__(self, cfg: MotionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n, c = MOTION_LANDMARKS, cfg.width
        self.token_embedding = nn.Parameter(torch.randn(n, c) * 0.1)
        self.shape_in = nn.Linear(2, c)
        self.opening_embedding = nn.Parameter(torch.randn(n, c) * 0.1)
        self.trunk = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(c), nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
            for _ in range(cfg.trunk_layers))
        self.norm = nn.LayerNorm(c)
        num = len(cfg.emotions)
        self.emotion_latents = nn.Parameter(torch.randn(num, cfg.emotion_tokens, cfg.emotion_dim) * 0.5)
        self.experts = nn.ModuleList(EmotionExpert(c, cfg.emotion_dim, cfg.heads) for _ in range(num))
        for expert in self.experts:  # unlike a U-Net layer, a motion expert must not start as zero
            nn.init.normal_(expert.to_out.weight, std=0.02)
        self.gate_local = nn.Linear(c, num)
        # Custom emotions (expert packs): each slot's latent tokens and gate column live apart from the six,
        # so the six's gate logits are computed exactly as before (bit-identical output with a custom slider at 0).
        self.custom_latents = nn.ParameterList()
        self.custom_gates = nn.ModuleList()
        self.head = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, c), nn.GELU(), nn.Linear(c, 2))
        # Normalisation of the neutral shape input (set from the training data, saved with the weights).
        self.register_buffer("shape_mean", torch.zeros(n, 2))
        self.register_buffer("shape_std", torch.ones(n, 2))

    @property
    def emotions(self) -> tuple[str, ...]:
        return self.cfg.emotions

    @property
    def base_count(self) -> int:
        """How many emotions the model was trained with (the custom slots follow them)."""
        return len(self.cfg.emotions) - len(self.custom_gates)

    def add_emotion(self, name: str) -> int:
        """Append a custom expert slot (expert, latent tokens, gate column) for ``name``; returns its index.

        The new expert starts small and random (as the six did), its gate column at zero logits.
        """
        if name in self.cfg.emotions:
            raise CheckpointError(f"the motion model already has an emotion called {name!r}")
        c, cfg = self.cfg.width, self.cfg
        reference = self.emotion_latents
        latents = nn.Parameter(torch.randn(1, cfg.emotion_tokens, cfg.emotion_dim) * 0.5)
        expert = EmotionExpert(c, cfg.emotion_dim, cfg.heads)
        nn.init.normal_(expert.to_out.weight, std=0.02)
        gate = nn.Linear(c, 1)
        nn.init.zeros_(gate.weight)
        nn.init.zeros_(gate.bias)
        self.custom_latents.append(latents.to(reference.device))
        self.experts.append(expert.to(reference.device))
        self.custom_gates.append(gate.to(reference.device))
        self.cfg = dataclasses.replace(cfg, emotions=(*cfg.emotions, name))
        return len(self.cfg.emotions) - 1

    def slot_modules(self, index: int) -> tuple[nn.Module, nn.Parameter, nn.Linear]:
        """(expert, latent tokens (1, K, D), gate (C -> 1)) of the custom slot at emotion ``index``."""
        custom = index - self.base_count
        if not 0 <= custom < len(self.custom_gates):
            raise IndexError(f"emotion {index} is not a custom slot")
        return self.experts[index], self.custom_latents[custom], self.custom_gates[custom]

    def _latents(self, index: int) -> torch.Tensor:
        base = self.base_count
        return self.emotion_latents[index : index + 1] if index < base else self.custom_latents[index - base]

    def gates(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Local gates ``s`` (B, n, E): the six's columns, then each custom slot's."""
        s = local_gate(self.gate_local(x_norm))
        if len(self.custom_gates):
            s = torch.cat([s, *(local_gate(gate(x_norm)) for gate in self.custom_gates)], dim=-1)
        return s

    def tokens(self, shape: torch.Tensor, opening: torch.Tensor) -> torch.Tensor:
        """``X``: tokens ``(B, n, C)`` from neutral shapes ``(B, n, 2)`` and mouth openings ``(B,)``."""
        normalised = (shape - self.shape_mean) / self.shape_std
        x = self.token_embedding + self.shape_in(normalised) + opening[:, None, None] * self.opening_embedding
        for block in self.trunk:
            x = x + block(x)
        return x

    def forward(self, shape: torch.Tensor, opening: torch.Tensor, g: torch.Tensor,
                painted: torch.Tensor | None = None, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Displacement ``(B, n, 2)`` in face units of each landmark from the neutral, closed-mouth pose.

        ``shape``: neutral landmarks ``(B, n, 2)`` in face units; ``opening``: ``(B,)`` 0..1; ``g``: the
        sliders ``(B, E)``; ``painted`` ``(B, n, E)`` and ``alpha`` ``(B, E)``: brush overrides.
        """
        x = self.tokens(shape, opening)
        x_norm = self.norm(x)
        s = self.gates(x_norm)
        w = painted_token_weights(g, s, painted, alpha)
        out = x
        for i in torch.nonzero((w != 0).any(dim=0).any(dim=0)).flatten().tolist():
            context = self._latents(i).expand(x.shape[0], -1, -1)
            out = out + w[..., i : i + 1] * self.experts[i](x_norm, context)
        rest = self.tokens(shape, torch.zeros_like(opening))
        return self.head(out) - self.head(rest)


class LipModel(nn.Module):
    """Mouth opening (0..1) per video frame from a window of loudness features (:func:`lip_features`)."""

    def __init__(self, cfg: MotionConfig) -> None:
        super().__init__()
        inputs = 2 * cfg.lip_context + 1
        self.net = nn.Sequential(nn.Linear(inputs, cfg.lip_hidden), nn.GELU(),
                                 nn.Linear(cfg.lip_hidden, cfg.lip_hidden), nn.GELU(),
                                 nn.Linear(cfg.lip_hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` ``(F, 2 * context + 1)`` -> openings ``(F,)`` in 0..1."""
        return torch.sigmoid(self.net(features)).squeeze(-1)


def lip_features(envelope: np.ndarray, context: int = LIP_CONTEXT) -> np.ndarray:
    """Per-frame inputs of :class:`LipModel`: the log loudness of frames ``t - context .. t + context``.

    ``envelope``: RMS level per video frame (``engine.io.audio.envelope_per_frame``). Levels are divided by
    the clip's 95th percentile (so a quiet and a loud recording of the same speech move the lips alike),
    floored at :data:`LIP_LEVEL_FLOOR` and taken as ``log10``. Frames past either end read as silence.
    """
    env = np.asarray(envelope, np.float64).reshape(-1)
    ref = float(np.percentile(env, LIP_REFERENCE_PERCENTILE)) if env.size else 0.0
    level = env / ref if ref > 1e-8 else np.zeros_like(env)
    logs = np.log10(np.maximum(level, LIP_LEVEL_FLOOR))
    padded = np.pad(logs, context, constant_values=np.log10(LIP_LEVEL_FLOOR))
    windows = np.stack([padded[k : k + env.size] for k in range(2 * context + 1)], axis=1)
    return windows.astype(np.float32)


_THREADS_LOCK = threading.Lock()


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run a tiny network on one thread: on a busy 2-core machine torch's thread pool makes a 3 ms call 300 ms."""
    with _THREADS_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


@dataclass
class MotionModel:
    """The trained motion MoE and lip model of a model folder, with the mean neutral face they were trained on."""

    moe: MotionMoE
    lips: LipModel
    notes: dict = field(default_factory=dict)
    #: Display colours of the custom emotions loaded from expert packs (``#rrggbb``; the six have fixed ones).
    colours: dict = field(default_factory=dict)
    #: The model folder's slider calibration of the portrait path (engine/portrait/calibration.py), if any.
    calibration: PortraitCalibration | None = None

    @property
    def cfg(self) -> MotionConfig:
        return self.moe.cfg

    @property
    def mean_shape(self) -> np.ndarray:
        """The synthetic people's mean neutral landmarks ``(68, 2)`` in face units."""
        return self.moe.shape_mean.detach().cpu().numpy().astype(np.float64)

    @property
    def shape_std(self) -> np.ndarray:
        return self.moe.shape_std.detach().cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def displacement(self, shape: np.ndarray, openings: np.ndarray, weights: np.ndarray,
                     painted: np.ndarray | None = None, alpha: np.ndarray | None = None) -> np.ndarray:
        """Displacements ``(B, 68, 2)`` (face units) for one neutral ``shape`` and B frames.

        ``openings`` (B,), ``weights`` (B, E) or (E,), ``painted`` (B, 68, E) / (68, E) or None,
        ``alpha`` (B, E) / (E,) or None.
        """
        openings = np.atleast_1d(np.asarray(openings, np.float32))
        batch = openings.shape[0]

        def rows(value: np.ndarray | None, ndim: int) -> torch.Tensor | None:
            if value is None:
                return None
            arr = np.asarray(value, np.float32)
            if arr.ndim == ndim - 1:
                arr = np.broadcast_to(arr, (batch, *arr.shape))
            return torch.from_numpy(np.array(arr, np.float32))

        shape_t = torch.from_numpy(np.broadcast_to(np.asarray(shape, np.float32), (batch, MOTION_LANDMARKS, 2)).copy())
        with single_threaded():
            out = self.moe(shape_t, torch.from_numpy(openings), rows(weights, 2), rows(painted, 3), rows(alpha, 2))
        return out.numpy().astype(np.float64)

    @torch.no_grad()
    def mouth_openings(self, envelope: np.ndarray) -> np.ndarray:
        """Mouth opening per frame (0..1) from the per-frame loudness of a clip."""
        feats = torch.from_numpy(lip_features(envelope, self.cfg.lip_context))
        if feats.shape[0] == 0:
            return np.zeros(0, np.float32)
        with single_threaded():
            return self.lips(feats).numpy().astype(np.float32)

    def fingerprint(self) -> str:
        """A short hash of the base motion model (its config with the trained emotions and first weights).

        A pack trained on one base model is refused by another: its expert reads token features that only
        this base model produces.
        """
        moe = self.moe
        base = dataclasses.replace(self.cfg, emotions=self.cfg.emotions[: moe.base_count])
        digest = hashlib.sha256(json.dumps(base.to_json(), sort_keys=True).encode())
        for tensor in (moe.token_embedding, moe.gate_local.weight):
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    def add_emotion(self, name: str, colour: str | None = None) -> int:
        """Append an untrained custom slot (see :meth:`MotionMoE.add_emotion`); returns its index."""
        index = self.moe.add_emotion(name)
        if colour:
            self.colours[name] = colour
        return index

    def save_expert_pack(self, emotion: str, path: str | Path, extra: dict[str, str] | None = None) -> Path:
        """Write the custom slot ``emotion`` to a motion expert pack (safetensors, atomically); returns the path.

        The pack holds the slot's expert (``expert.*``), latent tokens and gate column, and metadata
        (``format`` :data:`MOTION_EXPERT_FORMAT`, the emotion's name and colour, the base model's fingerprint).
        """
        from safetensors.torch import save as save_bytes

        from engine.io.atomic import atomic_write_bytes

        if emotion not in self.cfg.emotions[self.moe.base_count:]:
            raise CheckpointError(f"the motion model has no custom emotion called {emotion!r}")
        expert, latents, gate = self.moe.slot_modules(self.cfg.emotions.index(emotion))
        tensors = {f"expert.{k}": v for k, v in expert.state_dict().items()}
        tensors.update({PACK_LATENTS: latents, PACK_GATE_WEIGHT: gate.weight, PACK_GATE_BIAS: gate.bias})
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
        metadata = {"format": MOTION_EXPERT_FORMAT, "format_version": str(MOTION_EXPERT_FORMAT_VERSION),
                    "emotion": emotion, "colour": self.colours.get(emotion, ""),
                    "base_fingerprint": self.fingerprint(), **(extra or {})}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save_bytes(tensors, metadata=metadata))
        return path

    def load_expert_pack(self, path: str | Path) -> str:
        """Add a custom emotion from a motion expert pack (a new slider); returns its name.

        Refuses (:class:`CheckpointError`) a pixel-model pack, a pack of another base model, an emotion the
        model already has, or damaged tensors. Safetensors only: nothing is unpickled.
        """
        from safetensors.torch import load_file

        path = Path(path)
        metadata = read_motion_expert_metadata(path)
        if metadata.get("base_fingerprint") != self.fingerprint():
            raise CheckpointError(f"{path} was trained for another motion model (fingerprint "
                                  f"{metadata.get('base_fingerprint')}, this model is {self.fingerprint()}); "
                                  "train the emotion again on this model (moee train expert --model FOLDER)")
        name = metadata.get("emotion", "").strip()
        if not name:
            raise CheckpointError(f"{path}: the pack names no emotion")
        if name in self.cfg.emotions:
            raise CheckpointError(f"{path}: the model already has an emotion called {name!r}")
        tensors = load_file(str(path))
        expert = EmotionExpert(self.cfg.width, self.cfg.emotion_dim, self.cfg.heads)
        expected = {f"expert.{k}": tuple(v.shape) for k, v in expert.state_dict().items()}
        expected.update({PACK_LATENTS: (1, self.cfg.emotion_tokens, self.cfg.emotion_dim),
                         PACK_GATE_WEIGHT: (1, self.cfg.width), PACK_GATE_BIAS: (1,)})
        found = {k: tuple(v.shape) for k, v in tensors.items()}
        if found != expected:
            wrong = sorted(set(found.items()) ^ set(expected.items()))
            raise CheckpointError(f"{path} does not hold a motion expert of this model's sizes "
                                  f"(first difference: {wrong[0][0]})")
        for key, tensor in tensors.items():
            if not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"{path}: the tensor {key} holds NaN or infinite values; the pack is damaged")
        index = self.add_emotion(name, metadata.get("colour") or None)
        slot_expert, latents, gate = self.moe.slot_modules(index)
        with torch.no_grad():
            slot_expert.load_state_dict({k[len("expert."):]: v for k, v in tensors.items() if k.startswith("expert.")})
            latents.copy_(tensors[PACK_LATENTS])
            gate.weight.copy_(tensors[PACK_GATE_WEIGHT])
            gate.bias.copy_(tensors[PACK_GATE_BIAS])
        self.moe.eval()
        return name

    def save(self, folder: str | Path) -> None:
        """Write ``motion.safetensors`` + ``motion.json`` into ``folder`` (atomically)."""
        from safetensors.torch import save as save_bytes

        from engine.io.atomic import atomic_write_bytes, atomic_write_text

        if len(self.moe.custom_gates):
            raise CheckpointError("a motion model with custom emotions is saved as its base model plus expert packs "
                                  "(save_expert_pack), not as one folder")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"moe.{k}": v.detach().cpu().contiguous() for k, v in self.moe.state_dict().items()}
        tensors.update({f"lips.{k}": v.detach().cpu().contiguous() for k, v in self.lips.state_dict().items()})
        atomic_write_bytes(folder / MOTION_WEIGHTS, save_bytes(tensors))
        meta = {"format_version": MOTION_FORMAT_VERSION, "config": self.cfg.to_json(), "notes": self.notes}
        atomic_write_text(folder / MOTION_CONFIG, json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: str | Path, calibration: bool = True) -> MotionModel:
        """Read a motion model from a model folder (safetensors only: nothing is unpickled), with the folder's
        portrait slider calibration unless ``calibration`` is False (a bad calibration file: CheckpointError)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        config_path, weights_path = folder / MOTION_CONFIG, folder / MOTION_WEIGHTS
        meta, cfg = _read_motion_meta(folder)
        try:
            tensors = load_file(str(weights_path))
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"{weights_path}: not a readable safetensors file ({exc})") from exc
        _check_weights(cfg, tensors, weights_path, config_path)
        moe, lips = MotionMoE(cfg), LipModel(cfg)
        for prefix, module in (("moe.", moe), ("lips.", lips)):
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            problem = _state_problem(module, state, prefix)
            if problem:
                raise CheckpointError(f"{weights_path} does not fit {config_path}: {problem}")
            module.load_state_dict(state, strict=True)
        moe.eval()
        lips.eval()
        return cls(moe, lips, dict(meta.get("notes") or {}),
                   calibration=load_portrait_calibration(folder) if calibration else None)


def _check_weights(cfg: MotionConfig, tensors: dict[str, torch.Tensor], weights_path: Path, config_path: Path) -> None:
    """Refuse (CheckpointError) weights holding NaN or infinity, or whose sizes are not the config's."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{weights_path}: the tensor {name} holds NaN or infinite values; the motion model "
                                  "is damaged: restore the file or train it again (moee train-motion)")
    for name, expected in cfg.weight_shapes().items():
        found = tensors.get(name)
        if found is None:
            raise CheckpointError(f"{weights_path}: the tensor {name} is missing; not a motion model of this version")
        if tuple(found.shape) != expected:
            raise CheckpointError(
                f"{weights_path} does not fit {config_path}: {name} is {'x'.join(map(str, found.shape))} in the "
                f"weights but {'x'.join(map(str, expected))} by the config (width {cfg.width}, "
                f"{len(cfg.emotions)} emotions, {cfg.emotion_tokens} tokens of {cfg.emotion_dim}, lip_hidden "
                f"{cfg.lip_hidden}, lip_context {cfg.lip_context}): use the motion.json written with these weights")


def _state_problem(module: nn.Module, state: dict[str, torch.Tensor], prefix: str) -> str | None:
    """The first way ``state`` does not fit ``module`` (missing, unexpected or mis-shaped tensor), or None."""
    expected = module.state_dict()
    missing = sorted(expected.keys() - state.keys())
    if missing:
        return f"the tensor {prefix}{missing[0]} is missing ({len(missing)} in all)"
    unexpected = sorted(state.keys() - expected.keys())
    if unexpected:
        return f"the weights hold {prefix}{unexpected[0]}, which the config has no place for ({len(unexpected)} in all)"
    for key in sorted(expected):
        if tuple(state[key].shape) != tuple(expected[key].shape):
            return (f"{prefix}{key} is {'x'.join(map(str, state[key].shape))} in the weights but "
                    f"{'x'.join(map(str, expected[key].shape))} by the config")
    return None


def _read_motion_meta(folder: Path) -> tuple[dict, MotionConfig]:
    """``motion.json`` of a model folder as read (format checked) and its checked :class:`MotionConfig`."""
    config_path, weights_path = folder / MOTION_CONFIG, folder / MOTION_WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        missing = MOTION_CONFIG if not config_path.is_file() else MOTION_WEIGHTS
        raise CheckpointError(
            f"{folder} has no motion model ({missing} is missing); train one with `moee train-motion --out FOLDER` "
            "or render the model-size crop with --frame crop")
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not a readable JSON file ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != MOTION_FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: unsupported motion model format "
                              f"(expected format_version {MOTION_FORMAT_VERSION})")
    return meta, MotionConfig.from_json(meta.get("config"), str(config_path))


def read_motion_config(folder: str | Path) -> MotionConfig:
    """The checked :class:`MotionConfig` of a model folder's ``motion.json`` (the weights are not read):
    what ``moee render`` checks before anything loads. Raises :class:`CheckpointError`."""
    return _read_motion_meta(Path(folder))[1]


def read_motion_expert_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a motion expert pack, checked for kind and version (the weights are not read).

    A pack of the pixel model (``format`` ``moee-expert``) is refused with a message saying which renderer
    it belongs to. Raises :class:`CheckpointError`.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"expert pack {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors expert pack: {exc}") from exc
    kind = metadata.get("format")
    if kind == "moee-expert":
        raise CheckpointError(f"{path} is an expert pack of the pixel model (--renderer pixel / --frame crop); the "
                              "portrait renderer needs a motion expert pack: train one with `moee train expert`")
    if kind != MOTION_EXPERT_FORMAT:
        raise CheckpointError(f"{path} is not a MoEE motion expert pack (its format is {kind!r})")
    if metadata.get("format_version") != str(MOTION_EXPERT_FORMAT_VERSION):
        raise CheckpointError(f"{path} has motion expert-pack version {metadata.get('format_version')}; this MoEE "
                              f"Studio reads version {MOTION_EXPERT_FORMAT_VERSION}")
    return metadata
