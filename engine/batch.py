"""``moee batch``: many clips from one manifest, each portrait prepared once, resumable, on all cores or a Ray cluster.

A **manifest** lists one job per row, as CSV (a header row names the columns) or JSON lines (one object a
line): :data:`COLUMNS` says which columns there are. Paths are relative to the manifest's folder; an
output name is relative to the output folder and stays inside it. The emotion of a row is a mix
(``emotion``), a description (``text``) or a studio project (``project``: its keyframes, masks and life
settings; its portrait when the row names none). A row's ``fps``, ``blinks``, ``head_motion``, ``gaze`` and
``seed`` win over the project's, which win over the command line's.

The whole manifest is checked before anything is written (:func:`plan_batch`): every problem of every row
is reported at once (:class:`ManifestError`). Then each job renders with :func:`engine.export.export_clip`
(outputs are atomic: complete or absent); a job that fails is written to the report
(:data:`REPORT_FILE`, JSON lines) and the others go on.

**Resume**: each finished job appends its key (a hash of the contents of its inputs, the model and its
options) with the output's size and time to :data:`STATE_FILE` in the output folder. Running the same
command again skips every job whose output is still there, unchanged, with the same key, and renders the rest.

**Scale**: :class:`JobRunner` renders jobs in one process with the motion model loaded once and each portrait
prepared once (its face found once; a job costs its audio and the rig). ``workers`` > 1 runs a
:class:`concurrent.futures.ProcessPoolExecutor` with one runner per process; ``ray`` hands the same jobs
to Ray tasks (``pip install moee-studio[cluster]``), whose worker processes keep their runner between tasks.
Inputs and the output folder must then be at the same paths on every node (a shared file system).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import MoEEError, OutputError

#: The manifest's columns. ``output`` is required, and ``portrait`` unless a project names one; ``audio`` or
#: ``duration`` (seconds of a silent clip) sets the length; at most one of ``emotion``, ``text``, ``project``.
COLUMNS = ("portrait", "audio", "output", "emotion", "text", "project", "duration", "fps", "blinks",
           "head_motion", "gaze", "seed", "face")
#: Files of the batch itself in the output folder (no job may write them).
STATE_FILE = "moee-batch-state.jsonl"
REPORT_FILE = "moee-batch-report.jsonl"
#: Bumped when what a key covers changes (every earlier state then counts as not done).
STATE_VERSION = 1
#: Suffix given to an output name without one.
DEFAULT_SUFFIX = ".mp4"
#: Problems printed in full before "... and N more".
MAX_PROBLEMS_SHOWN = 200
#: Portraits a runner keeps prepared (least recently used dropped first).
PORTRAIT_CACHE = 16
#: Bytes read at a time when hashing a file.
HASH_CHUNK = 1 << 20
#: Exit code of a batch where some job failed (the others are written).
EXIT_JOBS_FAILED = 1
#: How often a process-pool batch looks at its stop event (seconds).
POLL_SECONDS = 0.2
#: Ray tasks in flight per CPU of the cluster (enough to keep every CPU busy; cancelling stays cheap).
RAY_TASKS_PER_CPU = 2


class ManifestError(MoEEError):
    """The manifest has problems; :attr:`problems` lists every one (row and what is wrong)."""

    def __init__(self, manifest: str | os.PathLike[str], problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        more = len(self.problems) - len(shown)
        lines = "\n".join(f"  {p}" for p in shown) + (f"\n  ... and {more} more" if more else "")
        super().__init__(f"{manifest}: {len(self.problems)} problem(s); nothing was rendered:\n{lines}")


@dataclass(frozen=True)
class BatchDefaults:
    """Settings of every job unless its row (or its project) says otherwise: the command line's flags."""

    model_dir: str | None = None
    max_size: int = 512
    fps: int | None = None
    blinks: float | None = None
    head_motion: float = 1.0
    gaze: float = 1.0
    seed: int = 0
    max_duration: float | None = None


@dataclass(frozen=True)
class Job:
    """One clip to render, checked and with every setting decided."""

    line: int  # the manifest's line
    name: str  # the output, relative to the output folder (the key of the state)
    output: str  # absolute
    portrait: str
    audio: str | None
    duration: float | None
    weights: tuple[float, ...] | None  # from ``emotion`` or ``text``; None with a project
    project: str | None
    fps: int
    blinks: float
    head_motion: float
    gaze: float
    seed: int
    face: int | None
    max_size: int
    max_duration: float
    model_dir: str
    key: str = ""  # the content hash of inputs, model and options (:func:`job_key`)


@dataclass
class JobResult:
    """What became of one job."""

    line: int  # the manifest's line
    output: str  # relative name
    status: str  # "done", "failed", "cancelled"
    message: str = ""
    seconds: float = 0.0
    frames: int = 0
    size: int = 0
    mtime_ns: int = 0


@dataclass
class BatchPlan:
    """A checked manifest: the jobs, where they go, and which of them an earlier run already finished."""

    manifest: Path
    out_dir: Path
    jobs: list[Job]
    done: set[str] = field(default_factory=set)

    @property
    def pending(self) -> list[Job]:
        """The jobs to render, grouped by portrait (each worker then meets a portrait in one stretch)."""
        todo = [job for job in self.jobs if job.name not in self.done]
        return sorted(todo, key=lambda job: (job.portrait, job.face or 0, job.line))


@dataclass
class BatchSummary:
    """The outcome of :func:`run_batch`."""

    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    left: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    results: list[JobResult] = field(default_factory=list)


# ------------------------------------------------------------------ manifest
def _column(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def read_manifest(path: str | os.PathLike[str]) -> list[tuple[int, dict[str, Any]]]:
    """The rows of a CSV or JSON-lines manifest as ``(line, {column: value})`` (blank values dropped).

    JSON lines when the suffix is ``.jsonl`` / ``.ndjson`` or the first non-blank character is ``{``; CSV
    otherwise. Lines starting with ``#`` and blank lines are skipped. Raises :class:`ManifestError` when the
    file cannot be read or parsed (every broken line named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(path, ["the manifest file does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [f"cannot read the manifest ({exc})"]) from None
    rows: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    if path.suffix.lower() in (".jsonl", ".ndjson") or text.lstrip().startswith("{"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(item, dict):
                problems.append(f"line {number}: a row must be a JSON object, not {type(item).__name__}")
                continue
            rows.append((number, {_column(k): v for k, v in item.items() if v not in (None, "")}))
    else:
        lines = [line for line in text.splitlines(keepends=True)]
        reader = csv.reader(lines)
        header: list[str] | None = None
        for fields in reader:
            number = reader.line_num
            if not fields or all(not f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [_column(f) for f in fields]
                continue
            if len(fields) > len(header):
                problems.append(f"line {number}: {len(fields)} values but the header names {len(header)} columns "
                                "(quote a value that holds a comma: \"surprise=0.4,fear=0.3\")")
                continue
            rows.append((number, {h: f.strip() for h, f in zip(header, fields, strict=False) if f.strip()}))
        if header is None:
            problems.append("the manifest is empty: a CSV manifest starts with a header row naming its columns "
                            f"({', '.join(COLUMNS)})")
    if not rows and not problems:
        problems.append("the manifest lists no jobs")
    if problems:
        raise ManifestError(path, problems)
    return rows


class _RowReader:
    """Reads one row's values, collecting its problems instead of stopping at the first."""

    def __init__(self, line: int, row: dict[str, Any], base: Path) -> None:
        self.line, self.row, self.base = line, row, base
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(f"line {self.line}: {message}")

    def text(self, name: str) -> str | None:
        value = self.row.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(f"{name} must be text, not {value!r}")
            return None
        value = str(value).strip()
        return value or None

    def file(self, name: str) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        path = (self.base / Path(value).expanduser()).resolve()
        if not path.is_file():
            self.problem(f"{name} {value}: " + ("is a folder, not a file" if path.is_dir() else "file not found")
                         + (f" (looked for {path})" if not Path(value).is_absolute() else ""))
            return None
        if not os.access(path, os.R_OK):
            self.problem(f"{name} {value}: the file is not readable (permissions)")
            return None
        return str(path)

    def number(self, name: str, low: float, high: float, integer: bool = False,
               low_open: bool = False) -> float | None:
        value = self.row.get(name)
        if value is None:
            return None
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        whole = math.isfinite(number) and number == int(number)
        too_low = number <= low if low_open else number < low
        if not math.isfinite(number) or (integer and not whole) or too_low or number > high:
            kind = "a whole number" if integer else "a number"
            bounds = f"above {low:g}" if low_open else f"from {low:g}"
            self.problem(f"{name} must be {kind} {bounds} to {high:g}, not {value!r}")
            return None
        return int(number) if integer else number


def plan_batch(manifest: str | os.PathLike[str], out_dir: str | os.PathLike[str],
               defaults: BatchDefaults | None = None,
               rows: Sequence[tuple[int, dict[str, Any]]] | None = None) -> BatchPlan:
    """Check every row of the manifest (or the given ``rows``) and decide each job's settings.

    Reports every problem at once (:class:`ManifestError`): unknown columns, missing or unreadable files,
    emotions that do not parse, project files that do not read, numbers out of range, two jobs writing one
    output, an output that is an input or escapes the output folder. Nothing is written.
    """
    from engine.emotions import mix_to_vector, parse_mix
    from engine.io.audio import DEFAULT_MAX_DURATION
    from engine.io.paths import check_output_name, check_outputs_spare_inputs
    from engine.io.resources import DEFAULT_MODEL_DIR
    from engine.io.video import GIF_SUFFIXES, MP4_SUFFIXES
    from engine.limits import MAX_FPS
    from engine.portrait.animator import DEFAULT_FPS
    from engine.portrait.motion import MOTION_CONFIG, read_motion_config
    from engine.portrait.performance import DEFAULT_BLINKS_PER_MINUTE, LIFE_RANGES
    from engine.project_file import read_project

    defaults = defaults or BatchDefaults()
    manifest = Path(manifest)
    out = Path(out_dir).expanduser().resolve()
    base = manifest.resolve().parent
    rows = read_manifest(manifest) if rows is None else list(rows)
    problems: list[str] = []
    if out.exists() and not out.is_dir():
        problems.append(f"the output folder {out_dir} is a file")
    model_dir = Path(defaults.model_dir) if defaults.model_dir else DEFAULT_MODEL_DIR
    try:
        if not (model_dir / MOTION_CONFIG).is_file():
            raise MoEEError(f"the model folder {model_dir} has no motion model ({MOTION_CONFIG})")
        emotions = list(read_motion_config(model_dir).emotions)
    except MoEEError as exc:
        raise ManifestError(manifest, [str(exc)]) from None
    max_duration = defaults.max_duration or DEFAULT_MAX_DURATION
    projects: dict[str, Any] = {}
    texts: dict[str, tuple[float, ...] | str] = {}
    writers: dict[str, int] = {}
    reserved = {os.path.normcase(str(out / STATE_FILE)), os.path.normcase(str(out / REPORT_FILE))}
    jobs: list[Job] = []
    for line, row in rows:
        reader = _RowReader(line, row, base)
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            reader.problem(f"unknown column(s) {', '.join(unknown)}; the columns are {', '.join(COLUMNS)}")
        project = None
        project_path = reader.file("project")
        if project_path is not None:
            if project_path not in projects:
                try:
                    projects[project_path] = read_project(project_path, emotions)
                except MoEEError as exc:
                    projects[project_path] = str(exc)
            project = projects[project_path]
            if isinstance(project, str):
                reader.problem(project)
                project = None
        portrait = reader.file("portrait")
        if portrait is None and "portrait" not in row:
            if project is not None and project.portrait is not None and project.portrait.is_file():
                portrait = str(project.portrait)
            else:
                reader.problem("no portrait: give the portrait column" + (" (the project names none, or its "
                                                                           "portrait is missing)" if project else ""))
        audio = reader.file("audio")
        duration = reader.number("duration", 0.0, max_duration, low_open=True)
        if "audio" not in row and "duration" not in row:
            reader.problem("no audio: give an audio file, or a duration in seconds for a silent clip")
        elif "audio" in row and "duration" in row:
            reader.problem("give an audio file or a duration, not both (the audio sets the clip's length)")
        chosen = [name for name in ("emotion", "text", "project") if name in row]
        if len(chosen) > 1:
            reader.problem(f"give one of emotion, text or project, not {' and '.join(chosen)}")
        weights: tuple[float, ...] | None = None
        emotion = reader.text("emotion")
        if emotion is not None:
            try:
                weights = tuple(mix_to_vector(parse_mix(emotion, emotions), emotions))
            except MoEEError as exc:
                reader.problem(f"emotion {emotion!r}: {exc}")
        text = reader.text("text")
        if text is not None:
            if text not in texts:
                texts[text] = _text_weights(text, emotions)
            if isinstance(texts[text], str):
                reader.problem(f"text {text!r}: {texts[text]}")
            else:
                weights = texts[text]  # type: ignore[assignment]
        if weights is None and project is None:
            weights = (0.0,) * len(emotions)
        settings = project.render if project is not None else {}
        fps = reader.number("fps", 1, MAX_FPS, integer=True)
        blinks = reader.number("blinks", *LIFE_RANGES["blinks_per_minute"])
        head = reader.number("head_motion", *LIFE_RANGES["head_motion"])
        gaze = reader.number("gaze", *LIFE_RANGES["gaze"])
        seed = reader.number("seed", 0, 2**63 - 1, integer=True)
        face = reader.number("face", 1, 1000, integer=True)
        name = reader.text("output")
        output = None
        if name is None:
            reader.problem("no output: give the output file name (relative to the output folder)")
        else:
            relative = Path(name)
            if not relative.suffix:
                relative = relative.with_name(relative.name + DEFAULT_SUFFIX)
            target = (out / relative).resolve()
            if relative.is_absolute() or (target != out and out not in target.parents):
                reader.problem(f"output {name}: must be a file name inside the output folder (no absolute path, "
                               "no '..')")
            elif relative.suffix.lower() not in MP4_SUFFIXES | GIF_SUFFIXES:
                reader.problem(f"output {name}: use a .mp4 or .gif name")
            elif os.path.normcase(str(target)) in reserved:
                reader.problem(f"output {name}: that name is the batch's own {target.name}")
            else:
                output = str(target)
                label = f"line {line}'s output"
                try:
                    check_output_name(label, target)
                    check_outputs_spare_inputs([(label, target)], [
                        ("the manifest", manifest), ("the portrait", portrait), ("the audio", audio),
                        ("the project", project_path), ("the model folder", model_dir)])
                except OutputError as exc:
                    reader.problem(str(exc))
                key = os.path.normcase(str(target))
                if key in writers:
                    reader.problem(f"output {name}: line {writers[key]} writes it too; give each job its own output")
                else:
                    writers[key] = line
        if reader.problems:
            problems += reader.problems
            continue
        assert output is not None and portrait is not None
        jobs.append(Job(
            line=line, name=Path(output).relative_to(out).as_posix(), output=output, portrait=portrait,
            audio=audio, duration=duration, weights=weights, project=project_path,
            fps=int(_first(fps, settings.get("fps"), defaults.fps, DEFAULT_FPS)),
            blinks=float(_first(blinks, settings.get("blinks_per_minute"), defaults.blinks,
                                DEFAULT_BLINKS_PER_MINUTE)),
            head_motion=float(_first(head, settings.get("head_motion"), defaults.head_motion)),
            gaze=float(_first(gaze, settings.get("gaze"), defaults.gaze)),
            seed=int(_first(seed, settings.get("seed"), defaults.seed)),
            face=None if face is None else int(face), max_size=int(defaults.max_size), max_duration=max_duration,
            model_dir=str(model_dir.resolve())))
    if problems:
        raise ManifestError(manifest, problems)
    hasher = _Hasher()
    jobs = [replace(job, key=job_key(job, hasher)) for job in jobs]
    plan = BatchPlan(manifest, out, jobs)
    plan.done = completed_jobs(out, jobs)
    return plan


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _text_weights(text: str, emotions: Sequence[str]) -> tuple[float, ...] | str:
    """The sliders of a description, or why it is not understood."""
    from engine.emotion_text import emotion_weights_from_text
    from engine.emotions import mix_to_vector

    try:
        return tuple(mix_to_vector(emotion_weights_from_text(text), emotions))
    except MoEEError as exc:
        return str(exc)


# ------------------------------------------------------------------ keys and state
class _Hasher:
    """SHA-256 of files, each read once per run (a portrait shared by a thousand jobs is hashed once)."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, int, int], str] = {}

    def file(self, path: str | None) -> str | None:
        if path is None:
            return None
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in self.known:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
                    digest.update(chunk)
            self.known[key] = digest.hexdigest()
        return self.known[key]

    def model(self, model_dir: str) -> str:
        from engine.portrait.motion import MOTION_CONFIG, MOTION_WEIGHTS

        return "".join(self.file(str(Path(model_dir) / name)) or "" for name in (MOTION_CONFIG, MOTION_WEIGHTS))


def job_key(job: Job, hasher: _Hasher | None = None) -> str:
    """A hash of everything that decides a job's output: its inputs' contents, the model's, its options."""
    hasher = hasher or _Hasher()
    options = {k: v for k, v in asdict(job).items()
               if k not in ("line", "output", "portrait", "audio", "project", "model_dir", "key")}
    record = {"version": STATE_VERSION, "portrait": hasher.file(job.portrait), "audio": hasher.file(job.audio),
              "project": hasher.file(job.project), "model": hasher.model(job.model_dir), "options": options}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def read_state(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The latest state entry of each output name (a torn last line, from a crash, is ignored)."""
    entries: dict[str, dict[str, Any]] = {}
    try:
        text = (Path(out_dir) / STATE_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return entries
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read the batch state {Path(out_dir) / STATE_FILE} ({exc}); move it away to "
                          "render every job again") from None
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and isinstance(item.get("output"), str):
            entries[item["output"]] = item
    return entries


def completed_jobs(out_dir: Path, jobs: Iterable[Job]) -> set[str]:
    """Names of the jobs an earlier run finished: same key, the output still there with its size and time."""
    state = read_state(out_dir)
    done = set()
    for job in jobs:
        entry = state.get(job.name)
        if not entry or entry.get("key") != job.key:
            continue
        try:
            stat = os.stat(job.output)
        except OSError:
            continue
        if stat.st_size == entry.get("size") and stat.st_mtime_ns == entry.get("mtime_ns"):
            done.add(job.name)
    return done


def _ends_torn(path: Path) -> bool:
    """Whether a file ends without a newline (its last line was cut short by a crash)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except OSError:
        return False


class _Ledger:
    """The output folder's state (appended per finished job) and this run's report (one line per job)."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        torn = _ends_torn(out_dir / STATE_FILE)
        self.state = open(out_dir / STATE_FILE, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)
        if torn:  # a line torn by a crash ends here, so the next entry reads whole
            self.state.write("\n")
        self.report = open(out_dir / REPORT_FILE, "w", encoding="utf-8")  # noqa: SIM115

    def record(self, job: Job, result: JobResult) -> None:
        self.report.write(json.dumps({**asdict(result), "portrait": job.portrait,
                                      "audio": job.audio}) + "\n")
        self.report.flush()
        if result.status == "done":
            self.state.write(json.dumps({"output": job.name, "key": job.key, "size": result.size,
                                         "mtime_ns": result.mtime_ns, "line": job.line,
                                         "finished": time.time()}) + "\n")
            self.state.flush()
            os.fsync(self.state.fileno())

    def close(self) -> None:
        self.state.close()
        self.report.close()


# ------------------------------------------------------------------ rendering
class _StopFlag:
    """A cancel token (``.cancelled``) for export_clip, read from a shared event (or never set)."""

    def __init__(self, event: Any = None) -> None:
        self.event = event

    @property
    def cancelled(self) -> bool:
        return self.event is not None and self.event.is_set()


class JobRunner:
    """Renders jobs in one process: the motion model loaded once, each portrait's face found once."""

    def __init__(self, model_dir: str | os.PathLike[str]) -> None:
        from engine.portrait.animator import PortraitAnimator
        from engine.portrait.motion import MotionModel

        # MotionModel.load, not PortraitAnimator.from_pretrained: a worker never imports the pixel model's modules.
        self.animator = PortraitAnimator(MotionModel.load(Path(model_dir)))
        self.portraits: OrderedDict[tuple[str, int, int | None], Any] = OrderedDict()
        self.projects: dict[str, Any] = {}
        #: Portraits prepared so far (their face found) by this runner.
        self.prepared_portraits = 0

    def portrait(self, job: Job) -> tuple[Any, Any]:
        """(image at the job's size, its face's MediaPipe points), found once per portrait; a portrait whose
        face is refused raises the same error for each of its jobs."""
        from engine.io.face import detect_landmarks
        from engine.io.image import load_image
        from engine.portrait.animator import fit_to_max_size
        from engine.portrait.rig import check_face

        key = (job.portrait, job.max_size, job.face)
        if key not in self.portraits:
            try:
                image = fit_to_max_size(load_image(job.portrait, max_side=job.max_size), job.max_size)
                points = detect_landmarks(image, face=job.face).points
                check_face(points, image.shape)
                self.portraits[key] = (image, points)
            except MoEEError as exc:
                self.portraits[key] = exc
            self.prepared_portraits += 1
            while len(self.portraits) > PORTRAIT_CACHE:
                self.portraits.popitem(last=False)
        self.portraits.move_to_end(key)
        entry = self.portraits[key]
        if isinstance(entry, MoEEError):
            raise entry
        return entry

    def gates(self, job: Job) -> Any:
        from engine.moee import GateControl
        from engine.project_file import read_project

        if job.project is None:
            return GateControl(list(job.weights or ()))
        if job.project not in self.projects:
            self.projects[job.project] = read_project(job.project, self.animator.emotions).gates
        return self.projects[job.project]

    def render(self, job: Job, cancel: Any = None) -> JobResult:
        """Render one job; a user-facing error becomes a failed result (KeyboardInterrupt passes)."""
        from engine.errors import CancelledError
        from engine.export import export_clip
        from engine.io.audio import num_video_frames
        from engine.portrait.performance import LifeConfig

        start = time.perf_counter()
        result = JobResult(job.line, job.name, "failed")
        try:
            if cancel is not None and cancel.cancelled:
                raise CancelledError("stopped before it started")
            image, points = self.portrait(job)
            life = LifeConfig(blinks_per_minute=job.blinks, head_motion=job.head_motion, gaze=job.gaze,
                              seed=job.seed)
            frames = num_video_frames(job.duration, job.fps) if job.duration is not None else None
            prepared = self.animator.prepare(image, job.audio, fps=job.fps, num_frames=frames,
                                             max_size=job.max_size, mesh=points, max_duration=job.max_duration,
                                             life=life)
            Path(job.output).parent.mkdir(parents=True, exist_ok=True)
            export_clip(self.animator, prepared, job.output, gates=self.gates(job), cancel=cancel,
                        duration=job.duration)
            stat = os.stat(job.output)
            result = replace(result, status="done", frames=prepared.num_frames, size=stat.st_size,
                             mtime_ns=stat.st_mtime_ns)
        except CancelledError:
            result = replace(result, status="cancelled", message="stopped")
        except MoEEError as exc:
            result = replace(result, message=str(exc))
        except (OSError, ValueError, RuntimeError, MemoryError) as exc:  # a broken file or codec: one job only
            result = replace(result, message=f"{type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - start
        return result


#: The runner of a worker process (a pool worker or a Ray worker), made on its first job.
_RUNNER: JobRunner | None = None
_STOP: _StopFlag = _StopFlag()


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _init_worker(stop_event: Any) -> None:
    """A pool worker: Ctrl-C is the main process's to handle (it sets ``stop_event``); SIGTERM unwinds the
    job in progress (its temporary file is removed)."""
    global _STOP
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    _STOP = _StopFlag(stop_event)


def run_job(job: Job) -> JobResult:
    """Render one job with this process's runner (made on the first job: the model loads once per process)."""
    global _RUNNER
    if _STOP.cancelled:
        return JobResult(job.line, job.name, "cancelled", "stopped before it started")
    if _RUNNER is None:
        _RUNNER = JobRunner(job.model_dir)
    return _RUNNER.render(job, _STOP)


# ------------------------------------------------------------------ running a plan
ProgressCallback = Callable[[JobResult, "BatchSummary"], None]


def run_batch(plan: BatchPlan, workers: int = 1, ray_address: str | None = None, limit: int | None = None,
              on_result: ProgressCallback | None = None, stop_event: Any = None,
              runner: JobRunner | None = None) -> BatchSummary:
    """Render the plan's pending jobs (at most ``limit``): in this process (``workers`` 1), in a process
    pool, or on Ray (``ray_address``: an address, ``auto`` for a running cluster, ``local`` for one started
    here with ``workers`` CPUs). ``on_result`` is called with each result as it arrives; ``stop_event``
    (``.is_set()``) stops the batch after the frames in progress (the studio's cancel).

    A KeyboardInterrupt (Ctrl-C, SIGTERM) stops every worker within a frame; the unfinished outputs are
    not written, the finished ones stay recorded; it is raised again once everything has stopped.
    """
    pending = plan.pending[:limit] if limit is not None else plan.pending
    summary = BatchSummary(total=len(plan.jobs), skipped=len(plan.done), left=len(pending))
    if not pending:
        return summary
    ledger = _Ledger(plan.out_dir)
    by_name = {job.name: job for job in pending}
    start = time.perf_counter()

    def record(result: JobResult) -> None:
        job = by_name[result.output]
        if result.status == "cancelled":
            return
        ledger.record(job, result)
        summary.results.append(result)
        summary.left -= 1
        if result.status == "done":
            summary.done += 1
        else:
            summary.failed += 1
        summary.seconds = time.perf_counter() - start
        if on_result is not None:
            on_result(result, summary)

    try:
        if ray_address is not None:
            _run_on_ray(pending, ray_address, workers, record)
        elif workers > 1:
            _run_in_pool(pending, workers, record, stop_event)
        else:
            runner = runner or JobRunner(pending[0].model_dir)
            flag = _StopFlag(stop_event)
            for job in pending:
                if flag.cancelled:
                    summary.interrupted = True
                    break
                record(runner.render(job, flag))
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        summary.seconds = time.perf_counter() - start
        ledger.close()
    if stop_event is not None and stop_event.is_set():
        summary.interrupted = True
    return summary


def _run_in_pool(jobs: Sequence[Job], workers: int, record: Callable[[JobResult], None], stop_event: Any) -> None:
    """The jobs on a process pool (spawned processes: the parent may hold threads of torch or MediaPipe)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context, initializer=_init_worker,
                               initargs=(stop,))
    futures = {pool.submit(run_job, job): job for job in jobs}
    running = set(futures)

    def stop_and_keep_finished() -> None:
        stop.set()  # the workers stop within a frame; their unfinished outputs are removed
        pool.shutdown(wait=True, cancel_futures=True)
        for future in running:  # a job that finished as the stop came is kept
            if future.done() and not future.cancelled() and future.exception() is None:
                record(future.result())

    try:
        while running:
            finished, running = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in finished:
                job = futures[future]
                if future.cancelled():
                    continue
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    result = JobResult(job.line, job.name, "failed", f"a worker process died ({exc})")
                record(result)
            if stop_event is not None and stop_event.is_set():
                stop_and_keep_finished()
                break
    except BaseException:
        stop_and_keep_finished()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray_job(job: Job) -> JobResult:  # pragma: no cover - runs inside Ray workers
    return run_job(job)


def _run_on_ray(jobs: Sequence[Job], address: str, workers: int, record: Callable[[JobResult], None]) -> None:
    """The jobs as Ray tasks; Ray schedules them, its worker processes keep their runner between tasks."""
    from engine.errors import MissingDependencyError

    try:
        import ray
    except ImportError:
        raise MissingDependencyError("--ray needs Ray: pip install 'moee-studio[cluster]' (or pip install "
                                     "'ray[default]')") from None
    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    task = ray.remote(num_cpus=1, max_retries=1)(_ray_job)
    window = max(1, int(ray.cluster_resources().get("CPU", 1)) * RAY_TASKS_PER_CPU)
    queue: Iterator[Job] = iter(jobs)
    running: dict[Any, Job] = {}
    try:
        for job in queue:
            running[task.remote(job)] = job
            if len(running) >= window:
                break
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job = running.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # a task that died (RayTaskError, worker lost)
                    result = JobResult(job.line, job.name, "failed", f"the Ray task failed ({type(exc).__name__}: "
                                                                    f"{str(exc).splitlines()[0] if str(exc) else ''})")
                record(result)
                following = next(queue, None)
                if following is not None:
                    running[task.remote(following)] = following
    except BaseException:
        for ref in running:
            ray.cancel(ref)  # a running task gets KeyboardInterrupt: its atomic writer removes the temporary file
        raise
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------ the command
def add_arguments(p: Any) -> None:
    """The ``moee batch`` arguments (engine/cli.py registers the subcommand)."""
    from engine.cli import MAX_SEED, add_life_arguments, number_flag
    from engine.io.audio import DEFAULT_MAX_DURATION
    from engine.limits import MAX_FPS
    from engine.portrait.performance import DEFAULT_BLINKS_PER_MINUTE

    p.add_argument("manifest", help="CSV (with a header row) or JSON-lines file, one job per row; columns: "
                                    + ", ".join(COLUMNS))
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="folder for the clips (created), with the batch's state and report")
    p.add_argument("--workers", type=number_flag("--workers", low=1, high=1024, integer=True), default=1,
                   help="processes on this machine (default 1); with --ray local, the CPUs of the local Ray")
    p.add_argument("--ray", default=None, metavar="ADDRESS|auto|local",
                   help="run the jobs on a Ray cluster: its address, 'auto' (the running cluster) or 'local' "
                        "(start one here); needs pip install 'moee-studio[cluster]'")
    p.add_argument("--limit", type=number_flag("--limit", low=1, integer=True), default=None, metavar="N",
                   help="render at most N of the pending jobs this run (the rest stay for the next run)")
    p.add_argument("--check", action="store_true", help="check the manifest and list what would render; "
                                                          "render nothing")
    p.add_argument("--model", default=None, help="model folder (default: the bundled demo model)")
    p.add_argument("--max-size", type=number_flag("--max-size", low=64, high=8192, integer=True), default=1024,
                   help="cap of the outputs' long side in pixels (default 1024)")
    p.add_argument("--max-duration", type=number_flag("--max-duration", low=0, low_open=True),
                   default=DEFAULT_MAX_DURATION, metavar="SECONDS", help="longest audio clip accepted")
    p.add_argument("--fps", type=number_flag("--fps", low=1, high=MAX_FPS, integer=True), default=None,
                   help="frames per second of rows and projects that set none (default 25)")
    add_life_arguments(p, {"blinks_per_minute": f"blinks per minute (default {DEFAULT_BLINKS_PER_MINUTE:g})",
                           "head_motion": "head motion of rows and projects that set none (default 1)",
                           "gaze": "eye movements of rows and projects that set none (default 1)"},
                       defaults={"head_motion": 1.0, "gaze": 1.0})
    p.add_argument("--seed", type=number_flag("--seed", low=0, high=MAX_SEED, integer=True), default=0)


def run_command(args: Any) -> int:
    """``moee batch``: check the manifest, then render what is not done yet, with a progress bar."""
    from tqdm import tqdm

    if args.ray is None and args.workers > (os.cpu_count() or 1) * 4:
        print(f"note: --workers {args.workers} is far more than this machine's {os.cpu_count()} CPUs",
              file=sys.stderr)
    defaults = BatchDefaults(model_dir=args.model, max_size=args.max_size, fps=args.fps, blinks=args.blinks,
                             head_motion=args.head_motion, gaze=args.gaze, seed=args.seed,
                             max_duration=args.max_duration)
    plan = plan_batch(args.manifest, args.output, defaults)
    pending = plan.pending[:args.limit] if args.limit is not None else plan.pending
    portraits = len({job.portrait for job in plan.jobs})
    print(f"{len(plan.jobs)} jobs over {portraits} portrait(s): {len(plan.done)} already done, "
          f"{len(pending)} to render" + (f" (--limit {args.limit})" if args.limit is not None else ""))
    if args.check or not pending:
        return 0
    bar = tqdm(total=len(pending), unit="job", desc="batch", dynamic_ncols=True)

    def on_result(result: JobResult, summary: BatchSummary) -> None:
        bar.update(1)
        bar.set_postfix_str(f"done {summary.done} failed {summary.failed} left {summary.left}")
        if result.status == "failed":
            bar.write(f"failed: line {result.line} -> {result.output}: {result.message}")

    try:
        summary = run_batch(plan, workers=args.workers, ray_address=args.ray, limit=args.limit,
                            on_result=on_result)
    except KeyboardInterrupt as exc:
        bar.close()
        print(f"interrupted: the finished clips are kept (state in {plan.out_dir / STATE_FILE}), no partial clip "
              "was written; run the same command again to render the rest", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", signal.SIGINT))
    finally:
        bar.close()
    rate = 60.0 * (summary.done + summary.failed) / summary.seconds if summary.seconds > 0 else 0.0
    print(f"done {summary.done}, failed {summary.failed}, skipped {summary.skipped}, left "
          f"{len(plan.pending) - summary.done - summary.failed} in {summary.seconds:.1f} s ({rate:.1f} jobs/min); "
          f"report: {plan.out_dir / REPORT_FILE}")
    return EXIT_JOBS_FAILED if summary.failed else 0
