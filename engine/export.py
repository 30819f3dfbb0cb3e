"""Render a clip straight into a video writer: frames stream from the sampler to the encoder."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.io.video import open_writer

if TYPE_CHECKING:  # the renderer-neutral contract only: export never names a renderer
    from engine.animator import Animator, CancelToken
    from engine.moee import GateSpec


def export_clip(
    animator: Animator,
    prepared: Any,
    output: str | Path,
    gates: GateSpec = None,
    steps: int | None = None,
    seed: int | None = None,
    start: int = 0,
    stop: int | None = None,
    sampler: str | None = None,
    guidance_scale: float | None = None,
    strength: float | None = None,
    format: str | None = None,
    cancel: CancelToken | None = None,
    on_frame: Callable[[int, float], None] | None = None,
    frames_dir: str | Path | None = None,
    overwrite: bool = False,
    duration: float | None = None,
    writer_options: Mapping[str, Any] | None = None,
) -> Path:
    """Render frames ``start..stop-1`` into ``output`` (``.mp4`` with the audio, ``.gif``, or a PNG folder).

    The file is complete or absent: the writer renames a temporary file only when every frame is in.
    ``on_frame(index, progress)`` is called after each frame (progress bars). ``frames_dir`` also
    writes every frame as a PNG sequence there, from the same render. A PNG-sequence folder replaces an
    earlier one of ours only with ``overwrite``, and never a folder holding anything else; both
    destinations are checked before the first frame is rendered.

    The MP4 lasts as long as the audio under the frames; a clip without audio (an emotion-only clip) lasts
    ``duration`` seconds (None: ``num_frames / fps``) and carries a silent AAC track of that length,
    which video editors expect of a clip. ``writer_options`` go to the output's writer (``crf``,
    ``bit_rate``; ``alpha=True`` for RGBA frames in a PNG sequence or ProRes 4444, see ``open_writer``).

    ``steps``, ``seed``, ``sampler``, ``guidance_scale``, ``strength``: reach the renderer only where its
    :class:`engine.animator.Capabilities` say it reads them (:func:`engine.animator.render_options`; the portrait
    renderer has no sampling and refuses them); None: the renderer's own default.
    """
    from engine.animator import render_options

    options = render_options(animator, steps=steps, seed=seed, sampler=sampler, guidance_scale=guidance_scale,
                             strength=strength)
    audio = prepared.audio
    if audio is not None and (start != 0 or (stop is not None and stop != prepared.num_frames)):
        audio = _audio_slice(prepared, start, stop)
    length = None if audio is not None else _silent_length(prepared, start, stop, duration)
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(open_writer(output, prepared.fps, audio, format=format, overwrite=overwrite,
                                                   duration=length, silent_audio=audio is None,
                                                   **dict(writer_options or {})))]
        if frames_dir is not None:
            writers.append(stack.enter_context(open_writer(frames_dir, prepared.fps, format="png",
                                                           overwrite=overwrite)))
        for result in animator.render_clip(prepared, gates, start=start, stop=stop, cancel=cancel, **options):
            for writer in writers:
                writer.write(result.image)
            if on_frame is not None:
                on_frame(result.index, result.progress)
    return Path(output)


def _audio_slice(prepared: Any, start: int, stop: int | None):
    """The part of the track under frames ``start..stop-1`` (so a partial export stays in sync)."""
    return prepared.audio.between(start / prepared.fps, None if stop is None else stop / prepared.fps)


def _silent_length(prepared: Any, start: int, stop: int | None, duration: float | None) -> float | None:
    """Seconds under frames ``start..stop-1`` of a clip without audio that lasts ``duration`` seconds."""
    if duration is None:
        return None
    end = duration if stop is None or stop >= prepared.num_frames else stop / prepared.fps
    return end - start / prepared.fps
