"""``moee bench --batch N``: what ``moee batch`` saves against a loop of ``moee render`` calls (JSON).

On one portrait (``--portrait``, default the bundled demo portrait at 1024 px at least) and N clips of synthetic speech:

* ``batch``: the N jobs through :func:`engine.batch.run_batch` in one process: ``startup_s`` (the motion
  model), ``first_job_s`` (its face found, MediaPipe started), ``per_job_s`` (median of the later jobs),
  ``render_only_s`` (the same clip exported from an already prepared portrait + audio: frames and encoding
  alone) and ``overhead_per_job_ms`` = per job - render only (audio, rig, state, report; target < 100 ms);
  ``plan_per_job_ms``: checking and hashing the manifest, per job;
* ``render_loop``: ``loops`` separate ``moee render`` processes on the same clips, ``per_job_s`` each (the
  Python start, the imports, the model and MediaPipe every time);
* ``jobs_per_minute`` of both, and ``speedup``.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.errors import MoEEError

#: Seconds of speech of each benchmark clip.
CLIP_SECONDS = 1.0
#: ``moee render`` processes timed by default (each costs seconds of start-up).
DEFAULT_LOOPS = 3
#: Smallest long side the bundled demo portrait is benchmarked at (its face is too small below).
DEMO_MAX_SIZE = 1024
#: The target of the per-job overhead after a portrait's first job (milliseconds).
TARGET_OVERHEAD_MS = 100.0


def run_batch_benchmark(jobs: int, portrait: str | os.PathLike[str] | None = None, model_dir: str | None = None,
                        max_size: int = 512, loops: int = DEFAULT_LOOPS) -> dict:
    """The figures of the module docstring for ``jobs`` clips (at least 2) and ``loops`` render processes."""
    import soundfile as sf

    from engine.batch import BatchDefaults, JobRunner, plan_batch, run_batch
    from engine.benchmark import speech_signal
    from engine.export import export_clip
    from engine.io.resources import demo_portrait
    from engine.moee import GateControl
    from engine.portrait.performance import LifeConfig

    jobs = max(2, int(jobs))
    if portrait is None:
        portrait, max_size = demo_portrait(), max(max_size, DEMO_MAX_SIZE)
    portrait = Path(portrait)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        samples, rate = speech_signal(CLIP_SECONDS)
        for i in range(jobs):
            sf.write(folder / f"line{i}.wav", samples * (0.6 + 0.4 * i / jobs), rate)
        manifest = folder / "manifest.csv"
        manifest.write_text("portrait,audio,output,emotion\n" + "".join(
            f"{portrait.resolve()},line{i}.wav,clip{i}.mp4,happiness={0.2 + 0.6 * i / jobs:.2f}\n"
            for i in range(jobs)))
        defaults = BatchDefaults(model_dir=model_dir, max_size=max_size)
        t0 = time.perf_counter()
        plan = plan_batch(manifest, folder / "out", defaults)
        plan_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        runner = JobRunner(plan.jobs[0].model_dir)
        startup_s = time.perf_counter() - t0
        summary = run_batch(plan, runner=runner)
        if summary.failed:
            raise MoEEError(f"the benchmark's jobs failed: {summary.results[0].message}")
        times = [r.seconds for r in summary.results]

        job = plan.jobs[-1]
        image, points = runner.portrait(job)
        life = LifeConfig(blinks_per_minute=job.blinks, head_motion=job.head_motion, gaze=job.gaze, seed=job.seed)
        prepared = runner.animator.prepare(image, job.audio, fps=job.fps, max_size=max_size, mesh=points, life=life)
        render_only = []
        for i in range(min(3, jobs)):
            t0 = time.perf_counter()
            export_clip(runner.animator, prepared, folder / f"render_only{i}.mp4", gates=GateControl(list(job.weights)))
            render_only.append(time.perf_counter() - t0)

        loop = []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                         os.environ.get("PYTHONPATH")]))}
        for i in range(max(0, int(loops))):
            command = [sys.executable, "-m", "engine.cli", "render", str(portrait), str(folder / f"line{i % jobs}.wav"),
                       "-o", str(folder / f"loop{i}.mp4"), "--max-size", str(max_size),
                       "--emotion", f"happiness={0.2 + 0.6 * (i % jobs) / jobs:.2f}"]
            if model_dir is not None:
                command += ["--model", str(model_dir)]
            t0 = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            loop.append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise MoEEError(f"moee render failed: {done.stderr.strip().splitlines()[-1:]}")

    per_job = statistics.median(times[1:])
    render = statistics.median(render_only)
    overhead_ms = 1000.0 * (per_job - render)
    result = {
        "portrait": str(portrait),
        "max_size": max_size,
        "clip_seconds": CLIP_SECONDS,
        "frames_per_clip": prepared.num_frames,
        "cpu_threads": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "batch": {
            "jobs": jobs,
            "plan_per_job_ms": round(1000.0 * plan_s / jobs, 2),
            "startup_s": round(startup_s, 3),
            "first_job_s": round(times[0], 3),
            "per_job_s": round(per_job, 4),
            "render_only_s": round(render, 4),
            "overhead_per_job_ms": round(overhead_ms, 1),
            "jobs_per_minute": round(60.0 / per_job, 1),
        },
        "targets": {"overhead_per_job_ms": TARGET_OVERHEAD_MS},
    }
    if loop:
        loop_s = statistics.median(loop)
        result["render_loop"] = {"runs": len(loop), "per_job_s": round(loop_s, 3),
                                 "jobs_per_minute": round(60.0 / loop_s, 1),
                                 "overhead_per_job_ms": round(1000.0 * (loop_s - render), 1)}
        result["speedup"] = round(loop_s / per_job, 2)
    return result
