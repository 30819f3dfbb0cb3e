"""``moee batch``: a manifest checked whole, jobs on a process pool and on Ray, resume after a stop."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from engine.batch import REPORT_FILE, STATE_FILE, BatchDefaults, plan_batch, read_state, run_batch
from engine.cli import EXIT_INTERRUPTED, EXIT_USER_ERROR, main
from engine.project_file import ProjectFileError, read_project

ROOT = Path(__file__).resolve().parents[2]
EMOTIONS = ["happiness", "sadness", "anger", "disgust", "fear", "surprise"]
RATE = 16000
#: Faces smaller than this long side are refused by the rig; the astronaut's is big enough at 512.
MAX_SIZE = "512"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The astronaut portrait, four 1 s speech-like clips and a project with keyframes and a painted mask."""
    from skimage import data

    folder = tmp_path_factory.mktemp("batch_inputs")
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    t = np.arange(RATE) / RATE
    for i in range(4):
        voice = 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t) * (np.sin(2 * np.pi * (3 + i) * t) > 0)
        sf.write(folder / f"line{i}.wav", voice.astype(np.float32), RATE)
    mask = np.zeros((64, 64), np.uint16)
    mask[30:50, 10:54] = 65535
    png = io.BytesIO()
    Image.fromarray(mask).save(png, format="PNG")
    masks = {"height": 64, "width": 64, "alpha": [1.0] * 6, "ids": [0, None, None, None, None, None]}
    project = {"format": "moee-project", "version": 2, "portrait": "astronaut.png", "emotions": EMOTIONS,
               "weights": [0.0] * 6, "normalise": False, "masks": None,
               "keyframes": [{"frame": 0, "weights": [0, 0, 0, 0, 0, 0.8], "masks": None},
                             {"frame": 20, "weights": [0.9, 0, 0, 0, 0, 0], "masks": masks}],
               "mask_pool": [base64.b64encode(png.getvalue()).decode()],
               "render": {"fps": 20, "seed": 3, "blinks_per_minute": 30.0, "head_motion": 0.5}}
    (folder / "hero.moee").write_text(json.dumps(project))
    return folder


def write_manifest(folder: Path, name: str, rows: list[str]) -> Path:
    path = folder / name
    path.write_text("\n".join(rows) + "\n")
    return path


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_project_reads_without_qt_and_its_keyframes_blend(inputs):
    project = read_project(inputs / "hero.moee", EMOTIONS)
    assert project.portrait == (inputs / "astronaut.png").resolve()
    assert project.render == {"fps": 20, "seed": 3, "blinks_per_minute": 30.0, "head_motion": 0.5}
    start, middle, end = (project.gates(frame) for frame in (0, 10, 40))
    assert start.global_weights[5] == pytest.approx(0.8) and end.global_weights[0] == pytest.approx(0.9)
    assert 0 < middle.global_weights[0] < 0.9  # smoothstep between the keys
    assert end.local_masks is not None and end.local_alpha[0] == 1.0 and end.local_masks[0].max() == 1.0
    with pytest.raises(ProjectFileError, match="no slider for"):
        read_project(inputs / "hero.moee", EMOTIONS[:5])  # surprise has weight at frame 0


def test_a_manifest_with_five_broken_rows_reports_all_five_and_writes_nothing(inputs, tmp_path, capsys):
    manifest = write_manifest(inputs, "broken.csv", [
        "portrait,audio,output,emotion,fps",
        "astronaut.png,line0.wav,fine.mp4,happiness=0.5,",
        "missing.png,line0.wav,a.mp4,,",  # 3: no such portrait
        "astronaut.png,nope.wav,b.mp4,,",  # 4: no such audio
        "astronaut.png,line1.wav,c.mp4,joyful=0.5,",  # 5: unknown emotion
        "astronaut.png,line2.wav,d.mp4,,500",  # 6: fps out of range
        "astronaut.png,line3.wav,fine.mp4,,",  # 7: the output of line 2 again
    ])
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "-o", str(out)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "5 problem(s); nothing was rendered" in err
    for line, words in ((3, "missing.png"), (4, "nope.wav"), (5, "joyful"), (6, "fps"), (7, "line 2 writes it")):
        assert f"line {line}: " in err and words in err, (line, err)
    assert not out.exists()
    with pytest.raises(Exception, match="inside the output folder"):
        plan_batch(write_manifest(inputs, "escape.jsonl", [json.dumps(
            {"portrait": "astronaut.png", "audio": "line0.wav", "output": "../x.mp4"})]), out)


def test_jobs_render_on_two_worker_processes(inputs, tmp_path, capsys):
    manifest = write_manifest(inputs, "three.jsonl", [json.dumps(row) for row in (
        {"portrait": "astronaut.png", "audio": "line0.wav", "output": "hero/l0", "emotion": "happiness=0.6"},
        {"portrait": "astronaut.png", "audio": "line1.wav", "output": "hero/l1.mp4", "text": "very sad"},
        {"audio": "line2.wav", "output": "hero/l2.mp4", "project": "hero.moee", "blinks": 0},
    )])
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "-o", str(out), "--workers", "2", "--max-size", MAX_SIZE]) == 0
    assert "done 3, failed 0" in capsys.readouterr().out
    assert frame_count(out / "hero" / "l0.mp4") == 25 and frame_count(out / "hero" / "l1.mp4") == 25
    assert frame_count(out / "hero" / "l2.mp4") == 20  # the project's 20 fps
    report = [json.loads(line) for line in (out / REPORT_FILE).read_text().splitlines()]
    assert sorted(r["output"] for r in report) == ["hero/l0.mp4", "hero/l1.mp4", "hero/l2.mp4"]
    assert all(r["status"] == "done" for r in report)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def _as_from_a_terminal() -> None:
    """The child starts with Ctrl-C's default action, as from a terminal: a process inherits an ignored SIGINT
    (the test process's can be ignored for a moment, e.g. while a library runs a shell command), and Python then
    never turns SIGINT into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_stopped_batch_resumes_with_only_the_rest(inputs, tmp_path):
    """SIGINT after the first clip: exit 130, no partial clip; the re-run renders only the others, and a
    changed input makes only its own job render again."""
    for i in range(3):  # this test's own takes (it records a new one), 4 s each: the stop lands mid-batch
        line, rate = sf.read(inputs / f"line{i}.wav", dtype="float32")
        sf.write(tmp_path / f"take{i}.wav", np.tile(line, 4), rate)
    manifest = write_manifest(tmp_path, "resume.csv", ["portrait,audio,output,emotion"] + [
        f"{inputs / 'astronaut.png'},take{i}.wav,clip{i}.mp4,surprise=0.{i + 2}" for i in range(3)])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "engine.cli", "batch", str(manifest), "-o", str(out),
                                "--max-size", MAX_SIZE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=_as_from_a_terminal)
    deadline = time.monotonic() + 60
    while not read_state(out) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED, err.decode()
    finished = set(read_state(out))
    assert 1 <= len(finished) < 3, finished
    assert {p.name for p in out.iterdir()} == finished | {STATE_FILE, REPORT_FILE}  # no partial clip, no temp
    times = {name: (out / name).stat().st_mtime_ns for name in finished}

    plan = plan_batch(manifest, out, BatchDefaults(max_size=int(MAX_SIZE)))
    assert plan.done == finished
    summary = run_batch(plan)
    assert summary.done == 3 - len(finished) and summary.skipped == len(finished) and summary.failed == 0
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in times.items())

    sf.write(tmp_path / "take1.wav", np.zeros(RATE // 2, np.float32) + 0.01, RATE)  # a new take of line 1
    again = plan_batch(manifest, out, BatchDefaults(max_size=int(MAX_SIZE)))
    assert [job.name for job in again.pending] == ["clip1.mp4"]
    (out / "clip2.mp4").unlink()
    assert [job.name for job in plan_batch(manifest, out, BatchDefaults(max_size=int(MAX_SIZE))).pending] == [
        "clip1.mp4", "clip2.mp4"]


def test_a_failed_job_is_reported_and_the_others_render(inputs, tmp_path):
    Image.new("RGB", (300, 300), (120, 90, 60)).save(inputs / "wall.png")  # no face in it
    manifest = write_manifest(inputs, "one_bad.csv", ["portrait,audio,output",
                                                      "wall.png,line0.wav,wall.mp4",
                                                      "astronaut.png,line0.wav,ok.mp4"])
    out = tmp_path / "out"
    summary = run_batch(plan_batch(manifest, out, BatchDefaults(max_size=int(MAX_SIZE))))
    assert (summary.done, summary.failed) == (1, 1)
    report = {r["output"]: r for r in map(json.loads, (out / REPORT_FILE).read_text().splitlines())}
    assert report["wall.mp4"]["status"] == "failed" and "face" in report["wall.mp4"]["message"]
    assert (out / "ok.mp4").is_file() and not (out / "wall.mp4").exists()
    assert list(read_state(out)) == ["ok.mp4"]


def test_jobs_render_on_a_local_ray_cluster(inputs, tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional 'cluster' extra")
    manifest = write_manifest(inputs, "ray.csv", ["portrait,audio,output,emotion",
                                                  "astronaut.png,line0.wav,r0.mp4,anger=0.7",
                                                  "astronaut.png,line3.wav,r1.mp4,fear=0.5"])
    out = tmp_path / "out"
    summary = run_batch(plan_batch(manifest, out, BatchDefaults(max_size=int(MAX_SIZE))), workers=2,
                        ray_address="local")
    assert (summary.done, summary.failed) == (2, 0)
    assert frame_count(out / "r0.mp4") == 25 and frame_count(out / "r1.mp4") == 25
    assert plan_batch(manifest, out, BatchDefaults(max_size=int(MAX_SIZE))).pending == []


def test_the_batch_benchmark_reports_jobs_per_minute_and_overhead(inputs):
    from engine.batch_bench import run_batch_benchmark

    result = run_batch_benchmark(3, inputs / "astronaut.png", max_size=int(MAX_SIZE), loops=0)
    batch = result["batch"]
    assert batch["jobs"] == 3 and batch["jobs_per_minute"] > 0 and batch["per_job_s"] > 0
    assert batch["overhead_per_job_ms"] == pytest.approx(1000 * (batch["per_job_s"] - batch["render_only_s"]), abs=1)
    assert "render_loop" not in result  # loops=0: no moee render process
