"""Quiet third-party logging: the lines MediaPipe's C++ side prints when it starts a graph.

The first ``process()`` of a MediaPipe graph (Face Mesh, selfie segmentation; :mod:`engine.io.face`) opens
its TensorFlow Lite models, and the C++ code writes straight to file descriptor 2::

    INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    W0000 00:00:... inference_feedback_manager.cc:114] Feedback manager requires a model with a single ...

and protobuf's Python side warns ``SymbolDatabase.GetPrototype() is deprecated``. None of it is ours or
actionable, and every ``moee`` command that finds a face printed it.

The environment variables that quiet glog / TensorFlow (``GLOG_minloglevel``, ``TF_CPP_MIN_LOG_LEVEL``,
``ABSL_MIN_LOG_LEVEL``) were measured to change nothing with mediapipe 0.10.14 (absl logging before
``InitializeLog`` ignores them), and ``sys.stderr`` never sees these lines. So :func:`quiet_native_logs`
filters at the file-descriptor level, narrowly: only around the start of a graph, and only the lines
that match :data:`NATIVE_LOG_SPAM`; every other line written meanwhile (ours, another thread's) is
passed through unchanged.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress

#: The lines MediaPipe / TensorFlow Lite / absl print on their own when a graph starts (a line is dropped
#: when one of these matches at its start).
NATIVE_LOG_SPAM: tuple[re.Pattern[bytes], ...] = (
    re.compile(rb"INFO: Created TensorFlow Lite \w+ delegate"),
    re.compile(rb"WARNING: All log messages before absl::InitializeLog\(\) is called"),
    # absl's own format: severity letter + date (W0000 00:00:...), thread id, file:line] message.
    re.compile(rb"[IWE]\d{4} [\d:.]+ +\d+ inference_feedback_manager\.cc:\d+\]"),
)
#: protobuf's deprecation warning, raised from MediaPipe's Python wrapper on every graph's outputs.
PROTOBUF_WARNING = r"SymbolDatabase\.GetPrototype\(\) is deprecated"

#: One filter at a time: file descriptor 2 belongs to the whole process.
_lock = threading.RLock()
_depth = 0


def is_spam(line: bytes) -> bool:
    """Whether a line written to stderr is one of :data:`NATIVE_LOG_SPAM`."""
    return any(pattern.match(line) for pattern in NATIVE_LOG_SPAM)


def ignore_protobuf_warning() -> None:
    """Hide protobuf's ``SymbolDatabase.GetPrototype`` deprecation warning (MediaPipe calls it, not us)."""
    warnings.filterwarnings("ignore", message=PROTOBUF_WARNING, category=UserWarning)


def _pass_through(read_fd: int, write_fd: int) -> None:
    """Copy lines from ``read_fd`` to ``write_fd`` until end of file, dropping :func:`is_spam` lines."""
    pending = b""
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        _write(write_fd, b"".join(line + b"\n" for line in lines if not is_spam(line)))
    if not is_spam(pending):
        _write(write_fd, pending)


def _write(fd: int, data: bytes) -> None:
    """Write all of ``data``; a stderr that cannot take it loses it (the pipe must keep draining)."""
    with suppress(OSError):
        while data:
            data = data[os.write(fd, data):]


@contextmanager
def quiet_native_logs() -> Iterator[None]:
    """While the block runs, lines matching :data:`NATIVE_LOG_SPAM` written to file descriptor 2 are dropped.

    File descriptor 2 is pointed at a pipe whose reader thread passes every other line on to the real
    stderr (a line without its newline yet waits for it or for the end of the block). A nested use shares
    the filter; another thread's use waits for the block to end. Where stderr has no file descriptor (a GUI launched without a console), the
    block runs unfiltered.
    """
    global _depth
    with _lock:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, AttributeError, ValueError):
            yield
            return
        try:
            read_fd, write_fd = os.pipe()
        except OSError:
            os.close(saved)
            yield
            return
        reader = threading.Thread(target=_pass_through, args=(read_fd, saved), name="quiet-native-logs",
                                  daemon=True)
        reader.start()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        _depth = 1
        try:
            yield
        finally:
            _depth = 0
            with suppress(OSError, AttributeError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)  # the pipe's last writer is gone: the reader sees the end and finishes
            reader.join()
            os.close(read_fd)
            os.close(saved)
