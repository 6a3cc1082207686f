"""Reading user clips safely and writing results, through PyAV (FFmpeg's libraries, bundled in its wheels). Torch-free.

Every way a clip can be unusable (missing, empty, too big, undecodable, sound only, too long, too many frames) ends
in an `InputError` that names the clip and says what to do. Frames are decoded already scaled to the output size.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from nstdiff.errors import InputError
from nstdiff.settings import Settings, get_settings

READABLE = "MP4, WebM, MOV, MKV or GIF"
# FFmpeg may only guess these formats for an upload (the clips we read, and single pictures, to name them): a playlist
# (HLS, concat, …) would make it read other files of the server, named inside the upload
DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,gif,png_pipe,jpeg_pipe,webp_pipe,bmp_pipe,tiff_pipe"
# audio codecs each container takes as they are; any other track is re-encoded to the first one named
COPYABLE_AUDIO = {".mp4": ("aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"), ".webm": ("opus", "vorbis")}
VIDEO_CODEC = {".mp4": ("libx264", {"crf": "18", "preset": "veryfast"}),
               ".webm": ("libvpx-vp9", {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"})}
FALLBACK_FPS = Fraction(25)


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    fps: Fraction
    has_audio: bool
    cut_at: float | None = None  # seconds where the clip was cut short (by a limit asked for); None: all of it
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.frames) / float(self.fps)


def frame_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) with the long side `side`, both even: H.264 and VP9 in 4:2:0 need even sides."""
    scale = side / max(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def open_upload(path: Path):
    """`path` opened for reading, FFmpeg's format guess limited to `DEMUXERS`."""
    import av

    return av.open(str(path), options={"format_whitelist": DEMUXERS})


def read_clip(path: str | Path, size: int, fps: float | None = None, max_seconds: float | None = None,
              max_frames: int | None = None, settings: Settings | None = None) -> Clip:
    """Decode `path`'s first video stream at long side `size`, at `fps` (None: the clip's rate), up to `max_seconds`
    and `max_frames` (None: all, within the settings' limits)."""
    import av

    settings = settings or get_settings()
    path = Path(path)
    what = f"video '{path.name}'"
    _check_request(what, size, max_seconds, max_frames, settings)
    if not path.is_file():
        raise InputError(f"{what} does not exist or is not a file")
    bytes_ = path.stat().st_size
    if bytes_ == 0:
        raise InputError(f"{what} is empty (0 bytes); upload the clip again")
    if bytes_ > settings.max_input_bytes:
        raise InputError(f"{what} is {bytes_ / 2**20:.1f} MiB, over the limit of "
                         f"{settings.max_input_bytes / 2**20:.0f} MiB; use a shorter clip or raise "
                         "NSTDIFF_MAX_INPUT_BYTES")
    try:
        container = open_upload(path)
    except (av.FFmpegError, OSError, ValueError):
        raise InputError(f"{what} is not a readable video; use {READABLE}") from None
    with container:
        if container.format.name.endswith("_pipe"):  # FFmpeg reads stills too
            raise InputError(f"{what} is a still picture, not a clip; use `nstdiff stylize` (or the Image style tab) "
                             f"for pictures, and {READABLE} here")
        if not container.streams.video:
            kind = "only sound" if container.streams.audio else "no video stream"
            raise InputError(f"{what} holds {kind}; upload a video clip ({READABLE})"
                             + ("; for sound use `nstdiff audio` or the Audio tab" if container.streams.audio else ""))
        stream = container.streams.video[0]
        duration = _duration(container, stream)
        limit = max_seconds or settings.max_video_seconds
        if max_seconds is None and duration is not None and duration > settings.max_video_seconds + 1e-3:
            raise InputError(f"{what} is {duration:.1f} s long, over the limit of {settings.max_video_seconds:g} s; "
                             f"stylize its first N seconds (--max-seconds N) or trim it")
        if stream.width * stream.height > settings.max_input_pixels:
            raise InputError(f"{what} is {stream.width}x{stream.height}, over the limit of "
                             f"{settings.max_input_pixels / 1e6:.3g} MP a frame (NSTDIFF_MAX_INPUT_PIXELS)")
        source_fps = _rate(stream, duration)
        out_fps = Fraction(fps).limit_denominator(1001) if fps else source_fps
        count = max_frames or settings.max_video_frames
        try:
            frames, complete = _decode(container, stream, size, out_fps if fps else None, limit, count + 1)
        except (av.FFmpegError, OSError, ValueError):
            raise InputError(f"{what} could not be decoded (damaged?); re-export it as {READABLE}") from None
        if not frames:
            raise InputError(f"{what} holds no video frames; upload a clip with pictures in it")
        if max_frames is None and len(frames) > settings.max_video_frames:
            raise InputError(f"{what} has more than {settings.max_video_frames} frames at {float(out_fps):.3g} fps; "
                             "lower the frame rate (--fps) or the length (--max-seconds), or raise "
                             "NSTDIFF_MAX_VIDEO_FRAMES")
        complete = complete and len(frames) <= count
        frames = frames[:count]
        seconds = len(frames) / float(out_fps)
        notes = [] if complete else [f"video: stylized the first {seconds:.2f} s"
                                     + (f" of {duration:.2f} s" if duration else "")]
        if fps and out_fps != source_fps:
            notes.append(f"video: {float(source_fps):.3g} fps resampled to {float(out_fps):.3g} fps")
        return Clip(np.stack(frames), out_fps, bool(container.streams.audio), None if complete else seconds, notes)


def _check_request(what: str, size: int, max_seconds: float | None, max_frames: int | None,
                   settings: Settings) -> None:
    if size > settings.max_video_side:
        raise InputError(f"size {size} is over the video limit of {settings.max_video_side} px; use a smaller size "
                         "or raise NSTDIFF_MAX_VIDEO_SIDE")
    if max_seconds is not None and max_seconds > settings.max_video_seconds:
        raise InputError(f"max_seconds {max_seconds:g} is over the limit of {settings.max_video_seconds:g} s "
                         f"for {what}; ask for less or raise NSTDIFF_MAX_VIDEO_SECONDS")
    if max_frames is not None and max_frames > settings.max_video_frames:
        raise InputError(f"frames {max_frames} is over the limit of {settings.max_video_frames}; ask for fewer or "
                         "raise NSTDIFF_MAX_VIDEO_FRAMES")


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / 1e6 if container.duration else None


def _rate(stream, duration: float | None) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate
    if rate and 0 < rate <= 240:
        return Fraction(rate)
    if stream.frames and duration:
        return Fraction(stream.frames / duration).limit_denominator(1001)
    return FALLBACK_FPS


def _decode(container, stream, size: int, fps: Fraction | None, seconds: float,
            count: int) -> tuple[list[np.ndarray], bool]:
    """Frames as RGB arrays until `seconds` or `count`; with `fps`, one per 1/fps (the latest shown by then); and
    whether the stream ended before either."""
    width, height = frame_size(stream.width, stream.height, size)
    frames: list[np.ndarray] = []
    next_time = 0.0
    stream.thread_type = "AUTO"
    for index, frame in enumerate(container.decode(stream)):
        shown = frame.time if frame.time is not None else index / float(fps or FALLBACK_FPS)
        if shown >= seconds - 1e-6 or len(frames) >= count:
            return frames, False
        picture = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
        if fps is None:
            frames.append(picture)
            continue
        while next_time <= shown + 1e-6 and next_time < seconds - 1e-6 and len(frames) < count:
            frames.append(picture)
            next_time = len(frames) / float(fps)
    return frames, True


def write_video(part: Path, suffix: str, frames: np.ndarray, fps: Fraction, source: Path, audio_until: float | None,
                comment: str) -> None:
    """Encode `frames` into `part` as the container `suffix` names, with `source`'s first audio track (up to
    `audio_until` seconds; None: all): its packets copied unchanged where the container takes the codec, re-encoded
    otherwise."""
    import av

    codec, options = VIDEO_CODEC[suffix]
    with av.open(str(part), "w", format=suffix.lstrip(".")) as out:
        out.metadata["comment"] = comment
        video = out.add_stream(codec, rate=fps, options=options)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        with _audio_source(source) as audio_in:
            copier = _AudioCopier(out, audio_in, suffix, audio_until) if audio_in is not None else None
            for index, array in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                frame.pts, frame.time_base = index, 1 / fps
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            if copier is not None:
                copier.run()


@contextmanager
def _audio_source(source: Path):
    """The source opened again for its audio track; None when it has none."""
    with open_upload(source) as container:
        yield container if container.streams.audio else None


class _AudioCopier:
    """Adds the output's audio stream at once (a muxer wants every stream before its header), fills it in `run`."""

    def __init__(self, out, source, suffix: str, until: float | None):
        self.source, self.until, self.out = source, float("inf") if until is None else until, out
        self.stream_in = source.streams.audio[0]
        self.copy = self.stream_in.codec_context.name in COPYABLE_AUDIO[suffix]
        if self.copy:
            self.stream_out = out.add_stream_from_template(self.stream_in)
        else:
            name = COPYABLE_AUDIO[suffix][0]
            rate = 48000 if name == "opus" else self.stream_in.rate
            self.stream_out = out.add_stream("libopus" if name == "opus" else name, rate=rate)
            self.stream_out.layout = "stereo" if self.stream_in.layout.nb_channels > 1 else "mono"

    def run(self) -> None:
        if self.copy:
            for packet in self.source.demux(self.stream_in):
                if packet.dts is None or packet.pts is None:
                    continue  # the demuxer's flush packet
                if packet.pts * packet.time_base >= self.until:
                    break
                packet.stream = self.stream_out
                self.out.mux(packet)
            return
        import av

        resampler = av.AudioResampler(format=self.stream_out.format, layout=self.stream_out.layout,
                                      rate=self.stream_out.rate)
        for frame in self.source.decode(self.stream_in):
            if frame.time is not None and frame.time >= self.until:
                break
            for chunk in resampler.resample(frame):
                chunk.pts = None
                self.out.mux(self.stream_out.encode(chunk))
        self.out.mux(self.stream_out.encode(None))
