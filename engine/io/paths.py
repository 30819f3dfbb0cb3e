"""No command writes over one of its own inputs: every output path is checked against every input path.

A command lists what it reads (portrait, audio, masks, model folders, expert packs, a folder of portraits)
and what it writes (a file, or a folder it creates or replaces) and calls :func:`check_outputs_spare_inputs`
before it loads anything. An output is refused (:class:`engine.errors.OutputError`, exit code 2) when

* it is an input: the same path once resolved (symbolic links followed, ``..`` folded), or the same file
  under another name (a hard link: same device and inode, :func:`os.path.samefile`);
* it is a folder output that would contain or replace an input (an input lies inside it);
* it is one of the files of an input *folder* (a model folder's ``config.json``, a portrait in the folder
  ``eval-portraits`` reads).

Pure path logic: nothing is opened or written. A path that does not exist is compared by its resolved name
only (a missing input is the input checks' business).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from engine.errors import OutputError

#: A path a command reads or writes, with how the user named it (a flag or an argument), for the message.
LabelledPath = tuple[str, "str | os.PathLike[str] | None"]
#: Most entries of an input folder compared one by one (a model folder holds a handful; a folder of
#: portraits a few dozen); past this the folder itself and its direct files up to the cap are compared.
MAX_FOLDER_ENTRIES = 10_000


def _resolved(path: Path) -> Path:
    """``path`` made absolute with symbolic links followed (as far as they exist)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the absolute name
        return Path(os.path.abspath(path))


def _same_file(a: Path, b: Path) -> bool:
    """Whether two existing paths are one file (hard links included); False when either is missing."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def folder_files(folder: str | os.PathLike[str], limit: int = MAX_FOLDER_ENTRIES) -> list[Path]:
    """The files directly inside ``folder`` (at most ``limit``; none if it cannot be listed)."""
    files: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if len(files) >= limit:
                    break
                if entry.is_file():
                    files.append(Path(entry.path))
    except OSError:
        return []
    return files


def expand_inputs(inputs: Iterable[LabelledPath]) -> list[tuple[str, Path]]:
    """Each given input as a Path; an input folder also brings its direct files (labelled ``LABEL's NAME``)."""
    expanded: list[tuple[str, Path]] = []
    for label, raw in inputs:
        if raw is None or str(raw) == "":
            continue
        path = Path(raw)
        expanded.append((label, path))
        if path.is_dir():
            expanded += [(f"{label} ({file.name})", file) for file in folder_files(path)]
    return expanded


def output_input_conflict(output: str | os.PathLike[str], source: str | os.PathLike[str]) -> str | None:
    """Why writing ``output`` would destroy ``source`` ("is", "contains"), or None when it would not."""
    out, src = Path(output), Path(source)
    out_real, src_real = _resolved(out), _resolved(src)
    if out_real == src_real or _same_file(out, src):
        return "is"
    if out_real in src_real.parents:
        return "contains"
    return None


def check_outputs_spare_inputs(outputs: Sequence[LabelledPath], inputs: Sequence[LabelledPath]) -> None:
    """Refuse (:class:`OutputError`) any output that is, or would contain, one of the inputs (module docstring).

    ``outputs`` and ``inputs``: ``(label, path)`` pairs, e.g. ``("-o", "out.mp4")``, ``("the portrait",
    "me.png")``; a None or empty path is skipped. The message names both paths and the flag to change.
    """
    sources = expand_inputs(inputs)
    for out_label, output in outputs:
        if output is None or str(output) == "":
            continue
        for in_label, source in sources:
            conflict = output_input_conflict(output, source)
            if conflict == "is":
                raise OutputError(f"{out_label} {output} is one of the inputs: {in_label} {source} (the same file); "
                                  f"writing it would destroy that input, so choose another {out_label} path")
            if conflict == "contains":
                raise OutputError(f"{out_label} {output} contains one of the inputs: {in_label} {source}; writing "
                                  f"that folder would replace it, so choose another {out_label} path")


#: Longest file name most file systems take (bytes), when the folder cannot be asked (os.pathconf).
DEFAULT_NAME_MAX = 255
#: Bytes a temporary name adds to an output's name (engine/io/atomic.py: ``.NAME.<pid>.<8 random>.tmp``).
TEMP_NAME_OVERHEAD = 32


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or of its nearest existing parent) takes."""
    for candidate in (folder, *folder.parents):
        try:
            return int(os.pathconf(candidate, "PC_NAME_MAX"))
        except (OSError, ValueError, AttributeError):
            continue
    return DEFAULT_NAME_MAX


def check_output_name(flag: str, path: str | os.PathLike[str]) -> None:
    """Refuse (:class:`OutputError`, naming ``flag``) an output path with a name longer than the file system
    takes, counting what the temporary name of an atomic write adds to the last part."""
    target = Path(os.path.abspath(path))
    limit = _name_max(target.parent)
    parts = target.parts[1:]
    for index, part in enumerate(parts):
        size = len(os.fsencode(part))
        last = index == len(parts) - 1
        allowed = limit - TEMP_NAME_OVERHEAD if last else limit
        if size > allowed:
            what = "file name" if last else "folder name"
            raise OutputError(f"{flag}: the {what} {part[:40]}... is {size} bytes long; at most {allowed} fit "
                              f"(the file system takes {limit}" + (f", and the temporary name of the write adds "
                                                                   f"{TEMP_NAME_OVERHEAD}" if last else "")
                              + "): choose a shorter name")
