"""Model configurations as dataclasses: ``tiny`` (tests), ``demo`` (CPU-sized, shipped) and ``sd15``.

A configuration holds everything needed to rebuild the network before weights are loaded; it is
saved as ``config.json`` beside the weights of a model folder (see :mod:`engine.diffusion.checkpoint`).
The U-Net and VAE parts are plain keyword arguments of diffusers' ``UNet2DConditionModel`` and
``AutoencoderKL``, so Stable Diffusion 1.5 weights load by key into the ``sd15`` configuration.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.diffusion.calibration import check_curves, curves_from_argument
from engine.emotions import BASIC_EMOTIONS
from engine.errors import CheckpointError, EmotionSpecError
from engine.io.audio import AudioConfig
from engine.limits import MAX_FPS

#: A model folder's configuration file, and the format name and version it must declare.
CONFIG_FILE = "config.json"
MODEL_FORMAT = "moee-model"
MODEL_FORMAT_VERSION = 1


@dataclass
class MoEEConfig:
    """The modules MoEE adds to the Stable Diffusion U-Net."""

    emotions: list[str] = field(default_factory=lambda: list(BASIC_EMOTIONS))
    emotion_tokens: int = 8  # K learnable tokens of Emotion-to-Latents
    emotion_dim: int = 64  # width of the emotion tokens (keys/values of every expert)
    expert_heads: int = 2
    audio_dim: int = 64  # width of the audio tokens the audio attention reads
    audio_tokens: int = 5  # audio tokens per video frame
    text_embedding_dim: int = 384  # all-MiniLM-L6-v2 sentence embeddings
    audio_emotion_features: int = 32  # prosodic/spectral statistics of the emotion audio clip
    reference_context_grid: int = 4  # the reference latent pooled to grid x grid cross-attention tokens
    temporal_heads: int = 2
    max_frames: int = 64  # longest window of frames the temporal attention is built for
    # Also feed the portrait latent to the denoising U-Net as extra input channels (spatially aligned
    # image conditioning, as in SD's inpainting / InstructPix2Pix U-Nets). Off for SD 1.5 (stock keys);
    # on for the CPU-sized demo model, where it makes keeping the identity learnable in CPU-hours.
    reference_concat: bool = False


@dataclass
class SchedulerConfig:
    """The training noise schedule, shared by every diffusers sampler built from it."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"


@dataclass
class SamplingConfig:
    """How a model is sampled unless a render asks otherwise."""

    # 1.0: start from pure noise. Below 1: start from the portrait's latent noised to that fraction of
    # the schedule (SDEdit, as diffusers' img2img ``strength``) and run only that fraction of the
    # steps. A talking portrait stays close to its reference, and a small model's poorest predictions
    # are those from pure noise (they set the colours), so the demo model samples at 0.75.
    strength: float = 1.0
    # Emotion guidance ``eps_0 + w (eps_g - eps_0)`` (eps_0: every slider at 0), as classifier-free
    # guidance; 1 = off. Amplifies what the experts add, at twice the U-Net passes per step.
    guidance_scale: float = 1.0
    # The guidance scale inside the portrait's mouth (None: ``guidance_scale`` everywhere). Lower than
    # ``guidance_scale`` it amplifies the experts less where the lips must follow the audio (the demo
    # model: 4 against 10 keeps lip sync above 0.7, docs/TRAINING.md). Needs face landmarks; without
    # them, uniform.
    mouth_guidance_scale: float | None = None
    # Guidance only at the noisier steps, ``t >= guidance_min_t * T`` (guidance in a limited interval,
    # Kynkaanniemi et al. 2024): the expression's layout forms at high noise; at the later steps plain
    # conditional sampling keeps the lips and details sharper and skips the neutral pass. 0 = every step.
    guidance_min_t: float = 0.0
    # Lip guidance ``eps_s + w_a (eps - eps_s)``: ``eps_s`` is the prediction with the audio replaced
    # by silence (the null audio condition), so what the audio adds, the mouth's motion, is amplified.
    # Only at the less noisy steps, ``t < audio_guidance_max_t * T``, where the mouth's detail forms
    # (guided at the noisy steps it distorts the face). 1 = off; one more U-Net pass at those steps.
    audio_guidance_scale: float = 1.0
    audio_guidance_max_t: float = 1.0
    # Keep the portrait's background: outside the person (MediaPipe selfie matte of the portrait, grown
    # for head motion and feathered) the frames show the portrait itself, so the static background
    # does not flicker with the sampler's noise. No person found: the frames are left as generated.
    keep_background: bool = False
    # Slider calibration (engine.diffusion.calibration): per emotion, the gate value at each slider value of
    # CALIBRATION_KNOTS, fitted by ``moee calibrate`` so that the rendered intensity follows the
    # renderer's ground truth and a 50/50 mix shows both emotions. None: the slider value is the gate.
    calibration: list[list[float]] | None = None
    # Mix curves (engine.diffusion.calibration.calibrate_weights): the gates of 50/50 mixes, fitted by ``moee
    # calibrate --mixes`` on the training people's two-emotion mixes, blended in by how mixed the
    # sliders are (single-emotion sliders are unaffected). None: the curves above serve mixes too.
    mix_calibration: list[list[float]] | None = None

    def __post_init__(self) -> None:
        for name in (*GUIDANCE_FIELDS, *SCHEDULE_FRACTION_FIELDS):
            problem = sampling_value_problem(name, getattr(self, name))
            if problem:
                raise EmotionSpecError(f"sampling setting {name} {problem}")
        for name in ("calibration", "mix_calibration"):
            curves = getattr(self, name)
            if curves is not None:
                check_curves(curves)
                setattr(self, name, [[float(v) for v in curve] for curve in curves])


#: Sampling settings that are guidance scales: finite and >= 0 (1 = off).
GUIDANCE_FIELDS = ("guidance_scale", "mouth_guidance_scale", "audio_guidance_scale")
#: Sampling settings that are fractions of the schedule: in [0, 1] (``strength``: in (0, 1]).
SCHEDULE_FRACTION_FIELDS = ("strength", "guidance_min_t", "audio_guidance_max_t")


def sampling_value_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the sampling setting ``name``, or None (the one rule book of
    config files and command-line flags). ``mouth_guidance_scale`` may be None (no mouth scale)."""
    if value is None and name == "mouth_guidance_scale":
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if name in GUIDANCE_FIELDS and not (number and value >= 0):
        return f"must be a finite number >= 0 (1 = off), not {value!r}"
    if name == "strength" and not (number and 0 < value <= 1):
        return f"must be a fraction of the schedule in (0, 1] (1 = from pure noise), not {value!r}"
    if name in SCHEDULE_FRACTION_FIELDS and not (number and 0 <= value <= 1):
        return f"must be a fraction of the schedule in [0, 1], not {value!r}"
    return None


def override_sampling(sampling: SamplingConfig, overrides: Iterable[tuple[str, str, Any]],
                      calibration: str | None = None) -> SamplingConfig:
    """A copy of ``sampling`` with a command line's changes; ``sampling`` itself is left as it was.

    ``overrides`` holds ``(field, flag, value)`` triples (``value`` None: keep the model's setting);
    ``flag`` names the setting in the error a bad value gets. ``calibration`` is a ``--calibration
    off|FILE`` value (None: keep the model's curves); it sets both the single and the mix curves.
    """
    changes: dict[str, Any] = {}
    for name, flag, value in overrides:
        if value is None:
            continue
        problem = sampling_value_problem(name, value)
        if problem:
            raise EmotionSpecError(f"{flag} {problem}")
        changes[name] = value
    if calibration is not None:
        changes["calibration"], changes["mix_calibration"] = curves_from_argument(calibration)
    return replace(sampling, **changes)


@dataclass
class ModelConfig:
    """Everything that defines a MoEE network's shapes."""

    name: str
    image_size: int
    fps: int
    unet: dict[str, Any]
    vae: dict[str, Any]
    moee: MoEEConfig = field(default_factory=MoEEConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    vae_scaling_factor: float = 0.18215

    @property
    def vae_downsample(self) -> int:
        """How many image pixels one latent cell covers along each side."""
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae_downsample

    @property
    def latent_channels(self) -> int:
        return int(self.vae.get("latent_channels", 4))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        data["moee"] = MoEEConfig(**data.get("moee", {}))
        data["audio"] = AudioConfig(**data.get("audio", {}))
        data["scheduler"] = SchedulerConfig(**data.get("scheduler", {}))
        data["sampling"] = SamplingConfig(**data.get("sampling", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


#: Sections of a saved configuration that are dataclasses, and the dataclass each one is read into.
CONFIG_SECTIONS: dict[str, type] = {"moee": MoEEConfig, "audio": AudioConfig, "scheduler": SchedulerConfig,
                                    "sampling": SamplingConfig}
#: Sections that are keyword arguments of diffusers' networks (checked for the fields we rely on).
NETWORK_SECTIONS = ("unet", "vae")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_int(v) and v > 0 for v in value)


def _section_problem(section: str, cls: type, values: Any) -> str | None:
    """What is wrong with one dataclass section of a saved configuration (types follow the defaults)."""
    if not isinstance(values, dict):
        return f"{section} must be a JSON object, not {type(values).__name__}"
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        return f"{section} has unknown field(s) {', '.join(unknown)}"
    defaults = cls()
    for name, value in values.items():
        default = getattr(defaults, name)
        where = f"{section}.{name}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                return f"{where} must be true or false, not {value!r}"
        elif _is_int(default):
            if not (_is_int(value) and value >= 0):
                return f"{where} must be a whole number >= 0, not {value!r}"
        elif isinstance(default, float):
            if not _is_number(value):
                return f"{where} must be a finite number, not {value!r}"
        elif isinstance(default, str):
            if not isinstance(value, str):
                return f"{where} must be a string, not {value!r}"
        elif isinstance(default, list) and not (isinstance(value, list) and all(isinstance(v, str) and v
                                                                                 for v in value)):
            return f"{where} must be a list of names, not {value!r}"
    return None


def _network_problem(section: str, values: Any) -> str | None:
    """What is wrong with the U-Net / VAE keyword arguments (the shapes we rely on)."""
    if not isinstance(values, dict):
        return f"{section} must be a JSON object, not {type(values).__name__}"
    channels = values.get("block_out_channels")
    if not _positive_int_list(channels):
        return f"{section}.block_out_channels must be a list of whole numbers > 0, not {channels!r}"
    groups = values.get("norm_num_groups", 32)
    if not (_is_int(groups) and groups > 0):
        return f"{section}.norm_num_groups must be a whole number > 0, not {groups!r}"
    uneven = [c for c in channels if c % groups]
    if uneven:
        return (f"{section}.block_out_channels {channels} do not fit {section}.norm_num_groups {groups}: "
                f"every channel count must be a multiple of it ({uneven[0]} is not)")
    for name in ("in_channels", "out_channels", "latent_channels", "layers_per_block"):
        if name in values and not (_is_int(values[name]) and values[name] > 0):
            return f"{section}.{name} must be a whole number > 0, not {values[name]!r}"
    return None


def model_config_problem(data: Any) -> str | None:
    """What is wrong with a saved model configuration (the ``config`` of ``config.json``), or None.

    The rule book of configuration files, as :func:`sampling_value_problem` is for sampling values:
    each problem names the field (``image_size``, ``vae.block_out_channels``, ...) and what it must be.
    """
    if not isinstance(data, dict):
        return f"config must be a JSON object, not {type(data).__name__}"
    missing = [name for name in ("name", "image_size", "fps", *NETWORK_SECTIONS) if name not in data]
    if missing:
        return f"config is missing {', '.join(missing)}"
    if not isinstance(data["name"], str):
        return f"name must be a string, not {data['name']!r}"
    for section in NETWORK_SECTIONS:
        problem = _network_problem(section, data[section])
        if problem:
            return problem
    for section, cls in CONFIG_SECTIONS.items():
        if section in data:
            problem = _section_problem(section, cls, data[section])
            if problem:
                return problem
    size, fps = data["image_size"], data["fps"]
    step = 2 ** (len(data["vae"]["block_out_channels"]) - 1) * 2 ** (len(data["unet"]["block_out_channels"]) - 1)
    if not (_is_int(size) and size > 0 and size % step == 0):
        return f"image_size must be a whole number of pixels > 0 and a multiple of {step}, not {size!r}"
    if not (_is_int(fps) and 1 <= fps <= MAX_FPS):
        return f"fps must be a whole number from 1 to {MAX_FPS}, not {fps!r}"
    scaling = data.get("vae_scaling_factor", 1.0)
    if not (_is_number(scaling) and scaling > 0):
        return f"vae_scaling_factor must be a finite number > 0, not {scaling!r}"
    return None


def read_model_config(folder: str | Path) -> dict[str, Any]:
    """Read and check ``config.json`` of a model folder: format, version and every field
    (:func:`config_file_problem`); a bad one is a :class:`CheckpointError` naming the file and the field."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a MoEE model folder: {CONFIG_FILE} is missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a MoEE model configuration: it holds a JSON "
                              f"{type(data).__name__}, not an object")
    if data.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path} is not a MoEE model configuration (format {data.get('format')!r})")
    if data.get("format_version") != MODEL_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {data.get('format_version')}; this MoEE Studio reads version "
            f"{MODEL_FORMAT_VERSION}. Convert it with the MoEE Studio release that wrote it."
        )
    problem = config_file_problem(data)
    if problem:
        raise CheckpointError(f"{path} is not a usable model configuration: {problem}")
    return data


def config_file_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a model folder's ``config.json`` (beyond format and version), or None."""
    problem = model_config_problem(data.get("config"))
    if problem:
        return problem
    emotions = data.get("emotions", data["config"].get("moee", {}).get("emotions"))
    if emotions is not None:
        if not (isinstance(emotions, list) and emotions and all(isinstance(e, str) and e.strip() for e in emotions)):
            return f"emotions must be a list of emotion names, not {emotions!r}"
        if len(set(emotions)) != len(emotions):
            return f"emotions names an emotion twice: {emotions}"
        slots = data["config"].get("moee", {}).get("emotions")
        if slots is not None and len(slots) != len(emotions):
            return f"emotions has {len(emotions)} names but moee.emotions {len(slots)} expert slots"
    for name in ("colours", "notes"):
        if not isinstance(data.get(name, {}), dict):
            return f"{name} must be a JSON object, not {data[name]!r}"
    return None



def _cross_attn_unet(channels: tuple[int, ...], cross_dim: int, heads: int, layers: int) -> dict[str, Any]:
    """U-Net kwargs: cross-attention in every block but the deepest down / first up (as in SD 1.5).

    diffusers' ``attention_head_dim`` of ``UNet2DConditionModel`` is, for historical reasons, the
    *number of heads* (SD 1.5's 8 = 8 heads); ``heads`` is passed there.
    """
    depth = len(channels)
    return {
        "sample_size": None,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": list(channels),
        "down_block_types": ["CrossAttnDownBlock2D"] * (depth - 1) + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (depth - 1),
        "layers_per_block": layers,
        "cross_attention_dim": cross_dim,
        "attention_head_dim": heads,
        "norm_num_groups": min(32, channels[0]),
    }


def _vae(channels: tuple[int, ...], groups: int, layers: int, image_size: int) -> dict[str, Any]:
    """AutoencoderKL kwargs: RGB <-> 4 latent channels, downsampling 2^(len(channels)-1) times."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": list(channels),
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "layers_per_block": layers,
        "norm_num_groups": groups,
        "sample_size": image_size,
    }


def tiny_config() -> ModelConfig:
    """A half-million-parameter model for tests: 32x32 images, 16x16 latents (2x VAE)."""
    unet = _cross_attn_unet((16, 32), cross_dim=16, heads=2, layers=1)
    vae = _vae((8, 8), groups=4, layers=1, image_size=32)
    moee = MoEEConfig(emotion_tokens=4, emotion_dim=16, expert_heads=1, audio_dim=16, audio_tokens=3,
                      reference_context_grid=2, temporal_heads=1, max_frames=32)
    audio = AudioConfig(n_mels=16, context_frames=1)
    return ModelConfig(name="tiny", image_size=32, fps=25, unet=unet, vae=vae, moee=moee, audio=audio)


def demo_config() -> ModelConfig:
    """The shipped model: 64x64 px through a 4x VAE (16x16 latents); trains and previews on 2 CPU cores.

    Sized so that CPU training reaches the quality targets: a 4x autoencoder at 64 px keeps brows and
    mouth corners (an 8x one at 128 px blurred them on held-out faces), and the portrait latent is also
    concatenated to the U-Net input (``reference_concat``) so identity is kept after CPU-hours of training.
    Sampled from the noised portrait (strength 0.75) with emotion guidance 10 at the noisier half of the
    schedule (4 inside the mouth, so the lips follow the audio) and lip guidance 5 (against silence) at
    the other half (measured in docs/TRAINING.md).
    """
    unet = _cross_attn_unet((64, 128, 128), cross_dim=128, heads=2, layers=1)
    vae = _vae((32, 64, 64), groups=16, layers=1, image_size=64)
    return ModelConfig(name="demo", image_size=64, fps=25, unet=unet, vae=vae,
                       moee=MoEEConfig(reference_concat=True),
                       sampling=SamplingConfig(strength=0.75, guidance_scale=10.0, mouth_guidance_scale=4.0,
                                               guidance_min_t=0.5, audio_guidance_scale=5.0, audio_guidance_max_t=0.5,
                                               keep_background=True))


def sd15_config() -> ModelConfig:
    """Full Stable Diffusion 1.5 dimensions (512x512 px, 64x64 latents); weights from a local folder."""
    unet = {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [320, 640, 1280, 1280],
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }
    vae = _vae((128, 256, 512, 512), groups=32, layers=2, image_size=512)
    moee = MoEEConfig(emotion_tokens=16, emotion_dim=768, expert_heads=8, audio_dim=768, audio_tokens=5,
                      reference_context_grid=8, temporal_heads=8, max_frames=64)
    audio = AudioConfig(n_mels=80)
    return ModelConfig(name="sd15", image_size=512, fps=25, unet=unet, vae=vae, moee=moee, audio=audio)


CONFIGS = {"tiny": tiny_config, "demo": demo_config, "sd15": sd15_config}


def get_config(name: str) -> ModelConfig:
    """Return a fresh named configuration (``tiny``, ``demo`` or ``sd15``)."""
    try:
        return CONFIGS[name]()
    except KeyError:
        raise KeyError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}") from None
