"""``moee bench --portrait IMG``: speed and memory of the full-resolution path on a user's portrait (JSON).

Figures:
* ``prepare_ms``: face mesh, rig and lip track, once per portrait + audio;
* ``preview_latency_ms``: one frame after a slider change, split into ``motion_ms`` (the motion MoE) and
  ``transfer_ms`` (mesh warp + mouth interior) — targets: preview median <= 300 ms, transfer <= 40 ms;
* ``brush_latency_ms``: the same with a painted stroke (a second motion pass and the feathered blend);
* ``clip_fps``: an MP4 export with the audio, frames per second (target >= 4 at 512 px on 2 cores);
* ``peak_rss_mb`` during the export.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.benchmark import check_counts, peak_rss, slider_sequence, speech_signal, summary
from engine.moee import GateControl
from engine.portrait.animator import PortraitAnimator

BENCH_MAX_SIZE = 512
DEFAULT_CLIP_SECONDS = 4.0


def run_portrait_benchmarks(portrait: str | os.PathLike[str], model_dir: str | None = None,
                            max_size: int = BENCH_MAX_SIZE, repeats: int = 7,
                            clip_seconds: float = DEFAULT_CLIP_SECONDS) -> dict:
    """Run the measurements of the module docstring on ``portrait`` (long side capped at ``max_size``)."""
    check_counts(repeats=repeats)
    from engine.export import export_clip
    from engine.io.face import region_mask

    animator = PortraitAnimator.from_pretrained(model_dir)
    start = time.perf_counter()
    prepared = animator.prepare(portrait, speech_signal(clip_seconds), max_size=max_size)
    prepare_s = time.perf_counter() - start
    num = len(animator.emotions)
    rng = np.random.default_rng(0)
    animator.render_frame(prepared, 0, GateControl(np.full(num, 0.5, np.float32)))  # warm-up

    total, motion, transfer = [], [], []
    for weights in slider_sequence(repeats, num, rng):
        gates = GateControl(weights)
        t0 = time.perf_counter()
        animator.control_targets(prepared, gates, 0)
        t1 = time.perf_counter()
        animator.render_frame(prepared, 0, gates)
        t2 = time.perf_counter()
        motion.append(t1 - t0)
        total.append(t2 - t1)
        transfer.append(max(0.0, (t2 - t1) - (t1 - t0)))

    h, w = prepared.portrait.shape[:2]
    masks = np.zeros((num, h, w), np.float32)
    masks[num - 1] = region_mask(prepared.rig.mesh, "brows", h, w)
    alpha = np.zeros(num, np.float32)
    alpha[num - 1] = 1.0
    brush = []
    for weights in slider_sequence(repeats, num, rng):
        t0 = time.perf_counter()
        animator.render_frame(prepared, 0, GateControl(weights, masks, alpha))
        brush.append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp, peak_rss() as memory:
        out = Path(tmp) / "clip.mp4"
        t0 = time.perf_counter()
        export_clip(animator, prepared, out, gates=GateControl(np.eye(num, dtype=np.float32)[2]))
        export_s = time.perf_counter() - t0
    return {
        "portrait": str(portrait),
        "size": [int(w), int(h)],
        "cpu_threads": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "prepare_ms": round(prepare_s * 1000, 1),
        "preview_latency_ms": summary(total),
        "motion_ms": summary(motion),
        "transfer_ms": summary(transfer),
        "brush_latency_ms": summary(brush),
        "clip_frames": prepared.num_frames,
        "clip_fps": round(prepared.num_frames / export_s, 2),
        "peak_rss_mb": round(memory["peak_mb"], 1),
        "targets": {"preview_median_ms": 300, "transfer_ms": 40, "clip_fps": 4},
    }
