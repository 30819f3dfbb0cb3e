"""Atomic file and folder writes: complete result or nothing, clear OutputError messages."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from engine.errors import OutputError
from engine.io import atomic
from engine.io.atomic import atomic_directory, atomic_path, atomic_write_bytes, atomic_write_text

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_bytes_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    atomic_write_text(tmp_path / "b.txt", "héllo")
    assert target.read_bytes() == b"two"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert _leftovers(tmp_path) == []


def test_atomic_path_keeps_suffix_and_hides_temp(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".clip.") and tmp.name.endswith(".tmp.mp4")
        assert not target.exists()
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert _leftovers(tmp_path) == []


def test_exception_leaves_nothing_and_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_missing_folder_is_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        atomic_write_bytes(tmp_path / "nope" / "x.bin", b"x")


def test_read_only_folder_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic.os, "access", lambda *_args, **_kw: False)
    with pytest.raises(OutputError, match="folder is read-only"):
        atomic_write_bytes(tmp_path / "x.bin", b"x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(IS_ROOT or os.name == "nt", reason="root ignores folder permissions")
def test_read_only_folder_real(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="read-only"):
            atomic_write_bytes(folder / "x.bin", b"x")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    ("code", "message"),
    [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only"), (errno.EACCES, "read-only")],
)
def test_os_errors_while_writing_become_output_error(tmp_path: Path, code: int, message: str) -> None:
    with pytest.raises(OutputError, match=message), atomic_path(tmp_path / "big.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise OSError(code, os.strerror(code))
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_propagate(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "x.bin"):
        raise FileNotFoundError(errno.ENOENT, "gone")
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_creates_and_replaces_only_what_it_may(tmp_path: Path) -> None:
    target = tmp_path / "frames"
    with atomic_directory(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".frames.")
        (tmp / "a.txt").write_text("1")
    with pytest.raises(OutputError, match=r"not empty \(a.txt\)"), atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with atomic_directory(target, replaceable=lambda _folder: None) as tmp:  # its owner says yes
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    (tmp_path / "empty").mkdir()
    with atomic_directory(tmp_path / "empty") as tmp:  # an empty folder is always fine
        (tmp / "c.txt").write_text("3")
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["c.txt"]
    assert _leftovers(tmp_path) == []


def test_atomic_directory_rechecks_before_the_swap(tmp_path: Path) -> None:
    """A file saved into the destination while the export ran is not swept away with the old folder."""
    target = tmp_path / "frames"
    target.mkdir()
    with pytest.raises(OutputError, match="thesis.txt"), atomic_directory(target) as tmp:
        (tmp / "a.png").write_bytes(b"png")
        (target / "thesis.txt").write_text("years of work")
    assert (target / "thesis.txt").read_text() == "years of work"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("where", [".", "cwd", "parent"])
def test_atomic_directory_never_replaces_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            where: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.txt").write_text("keep")
    monkeypatch.chdir(work)
    target = {".": Path("."), "cwd": work, "parent": tmp_path}[where]
    with pytest.raises(OutputError, match="current folder.*subfolder"), \
            atomic_directory(target, replaceable=lambda _folder: None):
        pass
    assert (work / "thesis.txt").read_text() == "keep"


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".out.{dead_pid}.abcd1234.tmp.mp4"
    legacy = tmp_path / ".out.zz_9abcd.tmp.mp4"
    live = tmp_path / f".out.{os.getppid()}.abcd1234.tmp.mp4"  # a running process's file
    other = tmp_path / f".other.{dead_pid}.abcd1234.tmp.mp4"  # another output's
    user = tmp_path / ".out.notes.tmp.mp4"  # not our pattern
    for path in (stale, legacy, live, other, user):
        path.write_bytes(b"x")
        os.utime(path, (atomic.PROCESS_START - 60, atomic.PROCESS_START - 60))
    fresh = tmp_path / f".out.{dead_pid}.efgh5678.tmp.mp4"  # changed after we started: left alone
    fresh.write_bytes(b"x")
    atomic_write_bytes(tmp_path / "out.mp4", b"video")
    assert not stale.exists() and not legacy.exists()
    assert live.exists() and other.exists() and user.exists() and fresh.exists()


def test_atomic_directory_exception_keeps_old(tmp_path: Path) -> None:
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(ValueError), atomic_directory(target, replaceable=lambda _folder: None) as tmp:
        (tmp / "new.txt").write_text("new")
        raise ValueError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert _leftovers(tmp_path) == []


def test_atomic_directory_refuses_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "frames").write_text("file")
    with pytest.raises(OutputError, match="file with that name"), atomic_directory(tmp_path / "frames"):
        pass


def test_finished_files_and_folders_get_ordinary_permissions(tmp_path: Path) -> None:
    """Not the private 0600 / 0700 of the temporary names: what open() / mkdir() give under the umask."""
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "project.moee", "{}")
        with atomic_directory(tmp_path / "frames") as folder:
            (folder / "0000.png").write_bytes(b"png")
        assert (tmp_path / "project.moee").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "frames").stat().st_mode & 0o777 == 0o755
        (tmp_path / "project.moee").chmod(0o640)  # a replaced file keeps the permissions its owner gave it
        atomic_write_text(tmp_path / "project.moee", "{\"v\": 2}")
        assert (tmp_path / "project.moee").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)
