"""Video output and input: MP4 (H.264 + AAC), PNG sequences (optionally RGBA) and GIF.

Writers stream: each frame is encoded as it arrives, so memory stays flat however long the clip.
Each writes through :mod:`engine.io.atomic` (a hidden temporary file or folder beside the target,
renamed at the end), so an interrupted or failed export never leaves a half-written file::

    with open_writer("out/clip.mp4", fps=25, audio=clip) as writer:
        for image in frames:
            writer.write(image)          # uint8 H x W x 3

:func:`probe_video` reports what a file holds and :func:`read_frames` decodes it back to RGB arrays.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import av
import numpy as np
from PIL import Image

from engine.errors import MoEEError, OutputError
from engine.io.atomic import (
    atomic_directory,
    atomic_path,
    check_directory_target,
    check_writable_folder,
    few_names,
    output_error_from,
)
from engine.io.audio import AudioClip, resample
from engine.limits import MAX_FPS

#: Default H.264 constant rate factor (lower = better quality, bigger file; 18 ~ visually lossless).
DEFAULT_CRF = 18
#: x264 speed/size trade-off.
DEFAULT_PRESET = "medium"
#: Pixel format of the H.264 stream (the one every player decodes).
MP4_PIXEL_FORMAT = "yuv420p"
#: ProRes 4444 (QuickTime .mov) for compositing: FFmpeg's prores_ks encoder, its 4444 profile, and a
#: pixel format with alpha (an RGBA frame keeps its alpha; an RGB frame is opaque).
PRORES_ENCODER = "prores_ks"
PRORES_4444_PROFILE = "4"
PRORES_PIXEL_FORMAT = "yuva444p10le"
#: Video codecs of :class:`Mp4Writer`: H.264 in an MP4, or ProRes 4444 in a QuickTime .mov.
VIDEO_CODECS = ("h264", "prores4444")
#: AAC bit rates (bits per second): a mono track, and each stereo pair of a track with more channels
#: (a mono channel left over from the pairs gets the mono rate).
AAC_MONO_BIT_RATE = 96_000
AAC_STEREO_PAIR_BIT_RATE = 128_000
#: Sample rates AAC stores (Hz); a recording at another rate is exported at the next one up (at most the last).
AAC_SAMPLE_RATES = (7_350, 8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 64_000,
                    88_200, 96_000)
#: Channel layouts of the exported AAC track, by channel count (the WAV / FFmpeg channel order); a recording
#: with more channels is folded to stereo (even channels to the left, odd ones to the right).
AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1"}
STEREO = 2
#: Sample rate of the silent track of a clip without audio (Hz).
SILENT_TRACK_RATE = 48_000
#: Time-base ticks per video frame: the last frame of an MP4 ends the clip to 1/1000 of a frame.
VIDEO_TICKS_PER_FRAME = 1000
#: Largest denominator used when turning a float frame rate (29.97) into a fraction.
FPS_MAX_DENOMINATOR = 1001
#: Name pattern of the files of a PNG sequence, and the audio file written beside them.
PNG_FRAME_PATTERN = "frame_{:05d}.png"
PNG_AUDIO_NAME = "audio.wav"
#: Marker file inside every PNG sequence folder this tool writes: a folder holding it and nothing but
#: our frames and audio is ours to replace (with ``overwrite``); any other folder is never replaced.
FRAMES_MARKER = ".moee-frames"
FRAMES_MARKER_TEXT = "A PNG sequence written by MoEE Studio; `moee render --overwrite` may replace this folder.\n"
#: Names of the files a PNG sequence folder of ours may hold.
_OUR_FRAME_NAME = re.compile(r"frame_\d{5,}\.png")
#: zlib level of PNG frames (1 = fast; PNG is lossless at every level).
PNG_COMPRESS_LEVEL = 3
#: GIF palette size and loop count (0 = forever).
GIF_COLOURS = 256
GIF_LOOP_FOREVER = 0
#: Suffixes of the single-file formats.
MP4_SUFFIXES = frozenset({".mp4", ".m4v", ".mov"})
GIF_SUFFIXES = frozenset({".gif"})
#: Format names accepted by :func:`open_writer`.
MP4_FORMATS = frozenset({"mp4", "m4v", "mov"})
PRORES_FORMATS = frozenset({"prores", "prores4444"})
GIF_FORMATS = frozenset({"gif"})
PNG_FORMATS = frozenset({"png", "pngs", "png-sequence", "png-alpha"})
RGB_CHANNELS = 3
RGBA_CHANNELS = 4
OPAQUE = 255


class FrameError(MoEEError):
    """A frame handed to a writer has the wrong type, shape or size."""


class VideoReadError(MoEEError):
    """A video file cannot be opened or decoded."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found in a file (audio fields are None/0 without an audio track)."""

    width: int
    height: int
    fps: float
    frames: int
    duration: float
    video_codec: str
    audio_codec: str | None
    audio_duration: float | None
    audio_sample_rate: int | None


def _fps_fraction(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction (25 -> 25/1, 29.97 -> 30000/1001)."""
    try:
        rate = Fraction(fps).limit_denominator(FPS_MAX_DENOMINATOR)
    except (ValueError, OverflowError, TypeError) as exc:
        raise OutputError(f"frame rate must be a finite number, got {fps!r}") from exc
    if not 0 < rate <= MAX_FPS:
        raise OutputError(f"frame rate must be above 0 and at most {MAX_FPS} frames per second, got {fps}")
    return rate


def _check_duration(seconds: float | None) -> float | None:
    """A clip duration in seconds (positive and finite), or None."""
    if seconds is None:
        return None
    try:
        value = float(seconds)
    except (TypeError, ValueError) as exc:
        raise OutputError(f"clip duration must be a number of seconds, got {seconds!r}") from exc
    if not math.isfinite(value) or value <= 0:
        raise OutputError(f"clip duration must be a positive number of seconds, got {seconds!r}")
    return value


def check_frames_folder(folder: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Raise :class:`OutputError` unless the existing, non-empty ``folder`` may be replaced by a PNG sequence.

    Only a folder holding this tool's marker (:data:`FRAMES_MARKER`) and nothing but its frames and
    audio may be replaced, and only with ``overwrite``; anything else in it is someone's work, so the
    folder is refused with a few of the foreign names.
    """
    folder = Path(folder)
    names = [entry.name for entry in folder.iterdir()]
    ours = FRAMES_MARKER in names
    foreign = [name for name in names if not (ours and _is_sequence_file(folder / name))]
    if foreign:
        raise OutputError(
            f"{folder} holds files this tool did not write ({few_names(foreign)}); a PNG sequence is only "
            f"written to a new or empty folder, or over an earlier one of ours: choose another folder"
        )
    if not overwrite:
        raise OutputError(
            f"{folder} holds an earlier PNG sequence; pass --overwrite to replace it, or choose another folder"
        )


def _is_sequence_file(path: Path) -> bool:
    """Whether ``path`` is one of the files a PNG sequence of ours consists of (marker, frames, audio)."""
    if path.is_symlink() or not path.is_file():
        return False
    return path.name in (FRAMES_MARKER, PNG_AUDIO_NAME) or _OUR_FRAME_NAME.fullmatch(path.name) is not None


def _check_frame(frame: np.ndarray, channels: tuple[int, ...], writer: str) -> np.ndarray:
    """Validate a frame: uint8 ``H x W x C`` with C in ``channels``."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"{writer}: a frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise FrameError(f"{writer}: a frame must be uint8 (0..255), got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] not in channels or frame.shape[0] == 0 or frame.shape[1] == 0:
        allowed = " or ".join(f"H x W x {c}" for c in channels)
        raise FrameError(f"{writer}: a frame must be {allowed}, got shape {tuple(frame.shape)}")
    return np.ascontiguousarray(frame)


_W = TypeVar("_W", bound="_Writer")


class _Writer:
    """Shared context-manager and frame-size bookkeeping of the writers."""

    channels: tuple[int, ...] = (RGB_CHANNELS,)

    def __init__(self, path: str | os.PathLike[str], fps: float | Fraction) -> None:
        self.path = Path(path)
        self.fps = _fps_fraction(fps)
        self.frames_written = 0
        self._shape: tuple[int, ...] | None = None
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self: _W) -> _W:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc_type, exc, tb)

    def open(self) -> None:
        """Start writing (called by ``with``)."""
        raise NotImplementedError

    def write(self, frame: np.ndarray) -> None:
        """Add one frame."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the file and move it into place; on failure nothing appears at the destination."""
        if self._stack is None:
            return
        if self.frames_written == 0:
            self.abort()
            raise OutputError(f"no frames were written to {self.path}; nothing was saved")
        try:
            self._complete()
        except OSError as exc:
            self.abort(type(exc), exc, exc.__traceback__)
            raise (output_error_from(exc, self.path) or exc) from exc
        except BaseException as exc:
            self.abort(type(exc), exc, exc.__traceback__)
            raise
        self._finish()

    def _complete(self) -> None:
        """Write what remains (flush encoders, side files) before the rename (subclasses)."""

    def abort(self, exc_type: type[BaseException] | None = None, exc: BaseException | None = None,
              tb: TracebackType | None = None) -> None:
        """Discard everything written so far; nothing appears at the destination."""
        self._release()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            err = exc if exc is not None else OutputError(f"writing {self.path} was aborted")
            with contextlib.suppress(BaseException):
                stack.__exit__(type(err), err, tb)

    def _release(self) -> None:
        """Close encoder resources without finishing (subclasses)."""

    def _validate(self, frame: np.ndarray) -> np.ndarray:
        if self._stack is None:
            raise OutputError(f"{self.path}: the writer is not open; use it in a 'with' block")
        frame = _check_frame(frame, self.channels, type(self).__name__)
        if self._shape is None:
            self._shape = frame.shape
        elif frame.shape != self._shape:
            raise FrameError(
                f"{type(self).__name__}: frame {self.frames_written} has shape {tuple(frame.shape)}, "
                f"but the first frame had {self._shape}; all frames must have the same size"
            )
        return frame

    def _finish(self) -> None:
        """Leave the atomic context successfully (the rename happens here)."""
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()


class _ContainerWriter(_Writer):
    """A writer that muxes encoded packets into one PyAV output container (MP4, GIF)."""

    _container: av.container.OutputContainer | None = None

    def _mux(self, packets: list[av.Packet]) -> None:
        assert self._container is not None
        try:
            self._container.mux(packets)
        except OSError as exc:
            raise (output_error_from(exc, self.path) or exc) from exc

    def _flush(self) -> None:
        """Drain the encoders (subclasses)."""

    def _complete(self) -> None:
        assert self._container is not None
        self._flush()
        self._container.close()
        self._container = None

    def _release(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            with contextlib.suppress(Exception):
                container.close()


def aac_bit_rate(channels: int) -> int:
    """AAC bit rate of a track with ``channels`` channels (:data:`AAC_STEREO_PAIR_BIT_RATE` per pair)."""
    pairs, single = divmod(int(channels), STEREO)
    return pairs * AAC_STEREO_PAIR_BIT_RATE + single * AAC_MONO_BIT_RATE


def aac_track(clip: AudioClip) -> tuple[np.ndarray, int]:
    """The sound an MP4 export carries: ``(samples (n, channels) float32, rate)``.

    The recording as it was (:meth:`AudioClip.export_samples`): its channels (folded to stereo beyond
    :data:`AAC_LAYOUTS`) and its rate, or the next rate AAC stores (:data:`AAC_SAMPLE_RATES`).
    """
    samples, rate = clip.export_samples(), clip.export_rate
    if samples.shape[1] not in AAC_LAYOUTS:
        samples = np.stack([samples[:, 0::2].mean(axis=1), samples[:, 1::2].mean(axis=1)], axis=1)
    if rate not in AAC_SAMPLE_RATES:
        target = next((r for r in AAC_SAMPLE_RATES if r >= rate), AAC_SAMPLE_RATES[-1])
        samples = np.stack([resample(channel, rate, target) for channel in samples.T], axis=1)
        rate = target
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False), int(rate)


class Mp4Writer(_ContainerWriter):
    """Stream frames into an MP4 file: H.264 (yuv420p) video, optional AAC audio.

    The audio is the recording as it was (its sample rate and channels, :func:`aac_track`), at
    :func:`aac_bit_rate`; the analysis copy (16 kHz mono) is never exported.

    Both tracks last the clip's ``duration`` (default: the audio's) at any frame rate: the last frame is
    shown until the clip ends (a 1.61 s clip at 1 fps is two frames, of 1 s and 0.61 s), and the audio is
    trimmed, or padded with silence, to the video. When the frames written do not fit the clip (more
    than a frame more or fewer than it needs), the frames decide: the video lasts ``frames / fps``.
    ``silent_audio``: without ``audio``, carry a silent AAC track of the video's length (what video
    editors expect of a clip); without either, the file has no audio stream.

    Odd frame sizes are padded by one edge pixel to even ones. Audio is interleaved with the video as
    frames arrive; one frame is held back until the next arrives (the last one's length is known at the end).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | Fraction, audio: AudioClip | None = None,
                 crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET, duration: float | None = None,
                 silent_audio: bool = False, codec: str = "h264", bit_rate: int | None = None) -> None:
        super().__init__(path, fps)
        if codec not in VIDEO_CODECS:
            raise OutputError(f"unknown video codec {codec!r}; choose one of {', '.join(VIDEO_CODECS)}")
        if bit_rate is not None and int(bit_rate) <= 0:
            raise OutputError(f"the video bit rate must be positive, got {bit_rate}")
        self.codec = codec
        self.bit_rate = None if bit_rate is None else int(bit_rate)  # H.264: a target bit rate instead of crf
        if codec == "prores4444":
            self.channels = (RGB_CHANNELS, RGBA_CHANNELS)  # RGBA keeps its alpha
        self.audio = audio
        self.crf = int(crf)
        self.preset = preset
        self.duration = _check_duration(duration if duration is not None else (audio.duration if audio else None))
        self.silent_audio = bool(silent_audio) and audio is None
        self._container: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio: av.AudioStream | None = None
        self._track: np.ndarray | None = None  # (n, channels) float32 at the AAC stream's rate
        self._layout = AAC_LAYOUTS[1]
        self._audio_rate = 0
        self._audio_cursor = 0
        # Video timing: ticks of 1 / (fps numerator * VIDEO_TICKS_PER_FRAME) s, so the last frame can end anywhere.
        self._ticks = self.fps.denominator * VIDEO_TICKS_PER_FRAME  # ticks per frame
        self._time_base = Fraction(1, self.fps.numerator * VIDEO_TICKS_PER_FRAME)
        self._held_frame: av.VideoFrame | None = None
        self._held_packet: av.Packet | None = None
        self._frames_encoded = 0
        self._last_pts: int | None = None
        self._last_ticks = self._ticks

    def open(self) -> None:
        """Create the temporary file beside the destination."""
        stack = contextlib.ExitStack()
        tmp = stack.enter_context(atomic_path(self.path))
        self._stack = stack
        try:
            self._container = av.open(str(tmp), mode="w", format="mov" if self.codec == "prores4444" else "mp4")
        except (av.error.FFmpegError, OSError) as exc:
            self.abort(type(exc), exc, None)
            translated = output_error_from(exc, self.path) if isinstance(exc, OSError) else None
            raise translated or OutputError(f"cannot create {self.path}: {exc}") from exc

    def _start_streams(self, height: int, width: int) -> None:
        assert self._container is not None
        if self.codec == "prores4444":
            video = self._container.add_stream(PRORES_ENCODER, rate=self.fps)
            video.pix_fmt = PRORES_PIXEL_FORMAT
            video.codec_context.options = {"profile": PRORES_4444_PROFILE}
        else:
            video = self._container.add_stream("libx264", rate=self.fps)
            video.pix_fmt = MP4_PIXEL_FORMAT
            if self.bit_rate is not None:
                video.bit_rate = self.bit_rate
                video.codec_context.options = {"preset": self.preset}
            else:
                video.codec_context.options = {"crf": str(self.crf), "preset": self.preset}
        video.width, video.height = width + width % 2, height + height % 2
        video.time_base = video.codec_context.time_base = self._time_base
        self._video = video
        if self.audio is not None:
            samples, rate = aac_track(self.audio)
        elif self.silent_audio:
            samples, rate = np.zeros((0, 1), np.float32), SILENT_TRACK_RATE
        else:
            return
        self._track, self._layout, self._audio_rate = samples, AAC_LAYOUTS[samples.shape[1]], rate
        audio = self._container.add_stream("aac", rate=rate)
        audio.layout = self._layout
        audio.bit_rate = aac_bit_rate(samples.shape[1])
        audio.time_base = Fraction(1, rate)
        self._audio = audio

    def write(self, frame: np.ndarray) -> None:
        """Encode one ``H x W x 3`` uint8 RGB frame (the one before it, in fact: the newest is held back)."""
        frame = self._validate(frame)
        if self._video is None:
            self._start_streams(frame.shape[0], frame.shape[1])
        assert self._video is not None and self._container is not None
        if frame.shape[0] % 2 or frame.shape[1] % 2:
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgba" if frame.shape[2] == RGBA_CHANNELS else "rgb24")
        video_frame.pts = self.frames_written * self._ticks
        self.frames_written += 1
        if self._held_frame is not None:
            self._encode_video(self._held_frame)
            self._write_audio_until(self._frames_encoded * self._ticks * self._time_base)
        self._held_frame = video_frame

    def _clip_end(self) -> Fraction:
        """When the video ends (seconds): the clip's duration if the frames written fit it, else ``frames / fps``."""
        frames = Fraction(self.frames_written) / self.fps
        if self.duration is not None:
            end = Fraction(self.duration).limit_denominator(self.fps.numerator * VIDEO_TICKS_PER_FRAME)
            if frames - 1 / self.fps < end < frames + 1 / self.fps:
                return max(end, frames - 1 / self.fps + self._time_base)
        return frames

    def _encode_video(self, frame: av.VideoFrame | None) -> None:
        assert self._video is not None
        if frame is not None:
            self._frames_encoded += 1
        self._mux_video(self._video.encode(frame))

    def _mux_video(self, packets: list[av.Packet]) -> None:
        """Mux the packets but the newest (held until the next: the last one's duration ends the track)."""
        for packet in packets:
            packet.duration = self._last_ticks if packet.pts == self._last_pts else self._ticks
            if self._held_packet is not None:
                self._mux([self._held_packet])
            self._held_packet = packet

    def _write_audio_until(self, seconds: Fraction) -> None:
        """Encode the audio that plays during the first ``seconds`` of the video (silence past its end)."""
        if self._audio is None or self._track is None:
            return
        rate = self._audio_rate
        end = int(round(seconds * rate))
        if end <= self._audio_cursor:
            return
        chunk = np.zeros((self._track.shape[1], end - self._audio_cursor), dtype=np.float32)
        source = self._track[self._audio_cursor : end]
        chunk[:, : len(source)] = source.T
        audio_frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self._layout)
        audio_frame.sample_rate = rate
        audio_frame.pts = self._audio_cursor
        audio_frame.time_base = Fraction(1, rate)
        self._mux(self._audio.encode(audio_frame))
        self._audio_cursor = end

    def _flush(self) -> None:
        assert self._video is not None and self._held_frame is not None
        end = self._clip_end()
        last = self._held_frame
        self._last_pts = int(last.pts)
        self._last_ticks = int(round((end - (self.frames_written - 1) / self.fps) / self._time_base))
        self._encode_video(last)
        self._encode_video(None)
        if self._held_packet is not None:  # the last packet in decoding order takes the last frame's slot
            packet, self._held_packet = self._held_packet, None
            packet.duration = self._last_ticks
            self._mux([packet])
        self._write_audio_until(end)
        if self._audio is not None:
            self._mux(self._audio.encode(None))


class PngSequenceWriter(_Writer):
    """Write ``frame_00000.png, ...`` into a folder that appears complete at the end (or not at all).

    Frames may be RGB (``H x W x 3``) or RGBA (``H x W x 4``, for alpha export). When ``audio`` is
    given it is saved beside the frames as ``audio.wav``, and the marker :data:`FRAMES_MARKER` marks the
    folder as ours. The destination must be new or empty; an earlier sequence of ours is replaced as a
    whole only with ``overwrite``; a folder holding anything else is never replaced (:func:`check_frames_folder`).
    """

    channels = (RGB_CHANNELS, RGBA_CHANNELS)

    def __init__(self, folder: str | os.PathLike[str], fps: float | Fraction = 25,
                 audio: AudioClip | None = None, compress_level: int = PNG_COMPRESS_LEVEL,
                 overwrite: bool = False) -> None:
        super().__init__(folder, fps)
        self.audio = audio
        self.compress_level = compress_level
        self.overwrite = bool(overwrite)
        self._tmp: Path | None = None

    @property
    def replaceable(self) -> functools.partial[None]:
        """The check an existing destination folder must pass before it is replaced."""
        return functools.partial(check_frames_folder, overwrite=self.overwrite)

    def open(self) -> None:
        """Create the temporary folder beside the destination, with our marker in it."""
        stack = contextlib.ExitStack()
        self._tmp = stack.enter_context(atomic_directory(self.path, self.replaceable))
        self._stack = stack
        try:
            (self._tmp / FRAMES_MARKER).write_text(FRAMES_MARKER_TEXT)
        except OSError as exc:
            self.abort(type(exc), exc, None)
            raise (output_error_from(exc, self.path) or exc) from exc

    def write(self, frame: np.ndarray) -> None:
        """Save one RGB or RGBA uint8 frame as the next PNG."""
        frame = self._validate(frame)
        assert self._tmp is not None
        target = self._tmp / PNG_FRAME_PATTERN.format(self.frames_written)
        try:
            Image.fromarray(frame).save(target, format="PNG", compress_level=self.compress_level)
        except OSError as exc:
            raise (output_error_from(exc, self.path) or exc) from exc
        self.frames_written += 1

    def _complete(self) -> None:
        """Save the audio track beside the frames."""
        if self.audio is not None:
            import soundfile

            assert self._tmp is not None
            soundfile.write(str(self._tmp / PNG_AUDIO_NAME), self.audio.export_samples(),
                            self.audio.export_rate, subtype="PCM_16")


def _quantise(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median-cut an RGB frame to (palette indices ``H x W`` uint8, ARGB palette ``256 x 4`` uint8)."""
    quantised = Image.fromarray(frame).quantize(GIF_COLOURS, method=Image.Quantize.MEDIANCUT)
    rgb = np.frombuffer(bytes(quantised.getpalette() or []), np.uint8)
    rgb = rgb[: GIF_COLOURS * RGB_CHANNELS].reshape(-1, RGB_CHANNELS)
    palette = np.zeros((GIF_COLOURS, RGBA_CHANNELS), np.uint8)
    palette[:, 0] = OPAQUE
    palette[: len(rgb), 1:] = rgb
    return np.asarray(quantised, dtype=np.uint8), palette


class GifWriter(_ContainerWriter):
    """Stream frames into a looping GIF (PyAV's GIF encoder).

    Each frame gets its own 256-colour median-cut palette (written as a local GIF palette), so colour
    changes over the clip (e.g. an emotion timeline) are kept.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | Fraction = 25, loop: int = GIF_LOOP_FOREVER,
                 audio: AudioClip | None = None) -> None:
        super().__init__(path, fps)
        self.loop = int(loop)
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None

    def open(self) -> None:
        """Create the temporary file beside the destination."""
        stack = contextlib.ExitStack()
        tmp = stack.enter_context(atomic_path(self.path))
        self._stack = stack
        try:
            self._container = av.open(str(tmp), mode="w", format="gif", options={"loop": str(self.loop)})
        except (av.error.FFmpegError, OSError) as exc:
            self.abort(type(exc), exc, None)
            raise OutputError(f"cannot create {self.path}: {exc}") from exc

    def write(self, frame: np.ndarray) -> None:
        """Quantise one ``H x W x 3`` uint8 RGB frame to its own 256-colour palette and encode it."""
        frame = self._validate(frame)
        assert self._container is not None
        if self._stream is None:
            stream = self._container.add_stream("gif", rate=self.fps)
            stream.width, stream.height = frame.shape[1], frame.shape[0]
            stream.pix_fmt = "pal8"
            stream.time_base = 1 / self.fps
            self._stream = stream
        indices, palette = _quantise(frame)
        gif_frame = av.VideoFrame.from_ndarray((indices, palette), format="pal8")
        gif_frame.pts = self.frames_written
        self._mux(self._stream.encode(gif_frame))
        self.frames_written += 1

    def _flush(self) -> None:
        assert self._stream is not None
        self._mux(self._stream.encode(None))


VideoWriter = Mp4Writer | PngSequenceWriter | GifWriter


def open_writer(path_or_dir: str | os.PathLike[str], fps: float | Fraction, audio: AudioClip | None = None,
                format: str | None = None, *, fmt: str | None = None, alpha: bool = False,
                overwrite: bool = False, duration: float | None = None, silent_audio: bool = False,
                **options: object) -> VideoWriter:
    """Make the writer for a destination: ``.mp4``/``.m4v``/``.mov`` -> MP4, ``.gif`` -> GIF, a folder
    (no suffix, or an existing folder) -> PNG sequence.

    ``format`` (or its alias ``fmt``): "mp4", "prores" (ProRes 4444 in a QuickTime .mov, RGBA frames keep
    their alpha), "gif", "png" or "png-alpha" overrides the guess. ``alpha=True`` asks for RGBA frames,
    which a PNG sequence and ProRes 4444 store. ``duration`` (seconds; default:
    the audio's) and ``silent_audio`` (a silent AAC track when there is no audio) shape an MP4
    (:class:`Mp4Writer`); the other formats ignore them. Extra keyword ``options`` go to the writer
    (e.g. ``crf``). Use the result in a ``with`` block.

    The destination is checked here, before anything is rendered (:func:`check_output`); a PNG sequence
    replaces an earlier one of ours only with ``overwrite``, and never a folder holding anything else.
    """
    path = Path(path_or_dir)
    kind = check_output(path, format or fmt, alpha=alpha, overwrite=overwrite)
    if kind in PRORES_FORMATS:
        return Mp4Writer(path, fps, audio, duration=duration, silent_audio=silent_audio, codec="prores4444",
                         **options)  # type: ignore[arg-type]
    if kind in MP4_FORMATS:
        return Mp4Writer(path, fps, audio, duration=duration, silent_audio=silent_audio,
                         **options)  # type: ignore[arg-type]
    if kind in GIF_FORMATS:
        return GifWriter(path, fps, audio=audio, **options)  # type: ignore[arg-type]
    return PngSequenceWriter(path, fps, audio=audio, overwrite=overwrite, **options)  # type: ignore[arg-type]


def check_output(path_or_dir: str | os.PathLike[str], format: str | None = None, *,
                 alpha: bool = False, overwrite: bool = False) -> str:
    """Check a destination before a render and return its format kind ("mp4", "gif", "png", ...).

    Raises :class:`OutputError` for an unknown format, a missing or read-only folder, a file output
    where a folder is, or a folder output that may not be replaced (see :func:`check_frames_folder`;
    never the current folder or one above it).
    """
    path = Path(path_or_dir)
    requested = format
    kind = (requested or "").lower().lstrip(".")
    if not kind:
        suffix = path.suffix.lower()
        if suffix in MP4_SUFFIXES:
            kind = "mp4"
        elif suffix in GIF_SUFFIXES:
            kind = "gif"
        elif path.is_dir() or not suffix:
            kind = "png"
        else:
            raise OutputError(
                f"cannot tell the video format of {path}: use a .mp4 or .gif file name, or a folder for PNG frames"
            )
    if kind not in MP4_FORMATS | GIF_FORMATS | PNG_FORMATS | PRORES_FORMATS:
        raise OutputError(f"unknown video format {requested!r}; choose mp4, prores, gif or png")
    if alpha and kind not in PNG_FORMATS | PRORES_FORMATS:
        raise OutputError(f"{kind} cannot store transparency; export a PNG sequence or ProRes 4444 for alpha")
    if kind in PNG_FORMATS:
        check_directory_target(path, functools.partial(check_frames_folder, overwrite=overwrite))
    elif path.is_dir():
        raise OutputError(f"cannot write the video file {path}: a folder with that name already exists")
    check_writable_folder(path.parent if str(path.parent) else Path("."))
    return kind


# ==================================================================================================
# Reading
# ==================================================================================================


def _open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoReadError(f"video file not found: {path}")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoReadError(f"{path} is not a readable video file ({exc})") from exc


def _stream_duration(stream: av.stream.Stream, container: av.container.InputContainer) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe a video file: size, frame rate, frame count, durations and codecs (via PyAV).

    The frame count is read from the container when it is stored, else by counting packets.
    """
    path = Path(path)
    container = _open_input(path)
    try:
        if not container.streams.video:
            raise VideoReadError(f"{path} has no video stream")
        video = container.streams.video[0]
        # An MP4's last frame may be shorter or longer than the others (it ends the clip): its average
        # rate is not the frame rate; a GIF's guessed rate is its 1/100 s time base.
        guessed = video.guessed_rate if "mp4" in container.format.name.split(",") else None
        rate = guessed or video.average_rate or video.guessed_rate or video.base_rate
        frames = int(video.frames or 0)
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_info = (
            (audio.codec_context.name, _stream_duration(audio, container), int(audio.codec_context.sample_rate))
            if audio is not None else (None, None, None)
        )
        duration = _stream_duration(video, container)
        if frames == 0:
            frames = sum(1 for packet in container.demux(video) if packet.size)
        if duration is None and rate:
            duration = frames / float(rate)
        return VideoInfo(
            width=int(video.codec_context.width),
            height=int(video.codec_context.height),
            fps=float(rate) if rate else 0.0,
            frames=frames,
            duration=float(duration or 0.0),
            video_codec=video.codec_context.name,
            audio_codec=audio_info[0],
            audio_duration=audio_info[1],
            audio_sample_rate=audio_info[2],
        )
    except av.error.FFmpegError as exc:
        raise VideoReadError(f"{path} could not be read ({exc})") from exc
    finally:
        container.close()


def read_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Decode a video file (or a PNG-sequence folder) to ``H x W x 3`` uint8 RGB frames, one at a time."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.png"))
        if not files:
            raise VideoReadError(f"{path} holds no PNG frames")
        for file in files:
            with Image.open(file) as image:
                yield np.asarray(image.convert("RGB"), dtype=np.uint8)
        return
    container = _open_input(path)
    try:
        if not container.streams.video:
            raise VideoReadError(f"{path} has no video stream")
        try:
            for frame in container.decode(container.streams.video[0]):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise VideoReadError(f"{path} could not be decoded ({exc})") from exc
    finally:
        container.close()
