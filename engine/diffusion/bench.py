"""``moee bench``: speed and memory of the engine, each beside a naive baseline run in the same process.

Figures (JSON):
* ``preview_latency_ms``: one frame rendered after a slider (global weight) change, ``prepare`` cached;
* ``naive_preview_latency_ms``: the same without the prepare/render split (portrait, ReferenceNet,
  audio features and emotion tokens recomputed for every frame) and with every expert computed;
* ``speedup``: naive median / cached median (target >= 3 on the demo config);
* ``clip_fps`` and ``ms_per_frame`` for clips of 1x, 2x and 4x length (should stay flat);
* ``peak_rss_mb`` during each clip (flat memory: frames are streamed, not kept);
* ``latency_by_active_experts_ms``: preview cost with 0..E experts switched on (zero-weight ones are skipped).
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine.benchmark import check_counts, peak_rss, slider_sequence, summary
from engine.diffusion.config import get_config
from engine.diffusion.pipeline import Animator, PreparedInputs
from engine.io.resources import DEFAULT_MODEL_DIR, demo_audio, demo_portrait
from engine.moee import GateControl

DEMO_PORTRAIT = demo_portrait()
DEMO_AUDIO = demo_audio()
SYNTHETIC_AUDIO_SECONDS = 6.0


def _inputs(tmp: Path, size: int) -> tuple[object, object]:
    """The bundled demo portrait and speech, or a generated stand-in when they are absent."""
    if DEMO_PORTRAIT.is_file() and DEMO_AUDIO.is_file():
        return str(DEMO_PORTRAIT), str(DEMO_AUDIO)
    import soundfile

    rng = np.random.default_rng(0)
    image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    rate = 16_000
    t = np.arange(int(SYNTHETIC_AUDIO_SECONDS * rate)) / rate
    speech = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    path = tmp / "speech.wav"
    soundfile.write(path, speech.astype(np.float32), rate)
    return image, str(path)


def _bench_animator(model_dir: str | None, config: str | None, device: str,
                    keep_background: bool | None) -> tuple[Animator, str]:
    """The animator to measure (an untrained ``config`` or the model folder) and how the report names it."""
    from engine.diffusion.config import override_sampling

    torch.manual_seed(0)
    if config is not None:
        animator = Animator.from_config(get_config(config), device=device)
        source = f"untrained {config} config"
    else:
        animator = Animator.from_pretrained(model_dir, device=device)
        source = str(model_dir or DEFAULT_MODEL_DIR)
    animator.cfg.sampling = override_sampling(animator.cfg.sampling,
                                              (("keep_background", "--keep-background", keep_background),))
    return animator, source


def _cached_latencies(animator: Animator, prepared: PreparedInputs, sliders: list[np.ndarray], steps: int) -> list[float]:
    """Seconds per preview frame after each slider move, the prepared portrait and audio cached."""
    times = []
    for weights in sliders:
        start = time.perf_counter()
        animator.render_frame(prepared, 0, GateControl(weights), steps=steps)
        times.append(time.perf_counter() - start)
    return times


def _naive_latencies(animator: Animator, portrait: object, audio: object, crop: str, sliders: list[np.ndarray],
                     steps: int) -> list[float]:
    """The same with nothing cached: every frame prepares the portrait and audio again, every expert runs."""
    times = []
    animator.use_cache = False
    try:
        for weights in sliders:
            start = time.perf_counter()
            fresh = animator.prepare(portrait, audio, crop=crop)
            animator.render_frame(fresh, 0, GateControl(weights), steps=steps)
            times.append(time.perf_counter() - start)
    finally:
        animator.use_cache = True
    return times


def _latency_by_active_experts(animator: Animator, prepared: PreparedInputs, repeats: int, steps: int) -> dict[str, float]:
    """Median preview milliseconds with 0, 1, ... E experts on (equal weights), keyed by the count."""
    num = len(animator.emotions)
    by_experts = {}
    for active in range(num + 1):
        weights = np.zeros(num, np.float32)
        weights[:active] = 1.0 / max(active, 1)
        times = []
        for _ in range(max(3, repeats // 2)):
            start = time.perf_counter()
            animator.render_frame(prepared, 0, GateControl(weights), steps=steps)
            times.append(time.perf_counter() - start)
        by_experts[str(active)] = round(statistics.median(times) * 1000, 2)
    return by_experts


def _clip_throughput(animator: Animator, prepared: PreparedInputs, mix: GateControl, frames: int,
                     steps: int) -> dict[str, dict]:
    """Clips of 1x, 2x and 4x ``frames``: frames rendered, seconds, fps, ms per frame and peak memory."""
    clips = {}
    for factor in (1, 2, 4):
        length = min(frames * factor, prepared.num_frames)
        with peak_rss() as memory:
            start = time.perf_counter()
            count = sum(1 for _ in animator.render_clip(prepared, mix, steps=steps, stop=length))
            elapsed = time.perf_counter() - start
        clips[f"{factor}x"] = {"frames": count, "seconds": round(elapsed, 3),
                               "clip_fps": round(count / elapsed, 3),
                               "ms_per_frame": round(elapsed / count * 1000, 2),
                               "peak_rss_mb": round(memory["peak_mb"], 1)}
    return clips


def run_benchmarks(model_dir: str | None = None, config: str | None = None, device: str = "auto",
                   steps: int = 8, repeats: int = 7, frames: int = 8, crop: str = "auto",
                   keep_background: bool | None = None) -> dict:
    """Run the measurements (module docstring). ``crop`` is the portrait crop of ``Animator.prepare`` and
    ``keep_background`` overrides the model's sampling setting (None: the model's); "none" and False
    leave MediaPipe out (its face detection and person matte), e.g. on a GPU machine without it."""
    check_counts(steps=steps, repeats=repeats, frames=frames)
    animator, source = _bench_animator(model_dir, config, device, keep_background)
    cfg = animator.cfg
    rng = np.random.default_rng(0)
    num = len(animator.emotions)
    with tempfile.TemporaryDirectory() as tmp:
        portrait, audio = _inputs(Path(tmp), cfg.image_size)
        prepared = animator.prepare(portrait, audio, crop=crop)
        animator.render_frame(prepared, 0, GateControl(np.full(num, 0.5, np.float32)), steps=steps)  # warm-up
        cached = _cached_latencies(animator, prepared, slider_sequence(repeats, num, rng), steps)
        naive = _naive_latencies(animator, portrait, audio, crop, slider_sequence(repeats, num, rng), steps)
        by_experts = _latency_by_active_experts(animator, prepared, repeats, steps)
        mix = GateControl(slider_sequence(1, num, rng)[0])
        clips = _clip_throughput(animator, prepared, mix, frames, steps)

    cached_s, naive_s = summary(cached), summary(naive)
    return {
        "model": source,
        "config": cfg.name,
        "image_size": cfg.image_size,
        "device": str(animator.device),
        "dtype": str(animator.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "steps": steps,
        "crop": crop,
        "keep_background": cfg.sampling.keep_background,
        "preview_latency_ms": cached_s,
        "naive_preview_latency_ms": naive_s,
        "speedup": round(naive_s["median"] / cached_s["median"], 2),
        "latency_by_active_experts_ms": by_experts,
        "clips": clips,
        "clip_fps": clips["1x"]["clip_fps"],
        "peak_rss_mb": max(c["peak_rss_mb"] for c in clips.values()),
        "targets": {"preview_latency_median_ms_max": 300, "speedup_min": 3.0},
    }
