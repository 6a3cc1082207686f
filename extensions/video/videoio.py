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
    start: float = 0.0  # the source's time of the first picture: the sound from there goes with frame 0
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
            frames, start, complete = _decode(container, stream, size, out_fps, limit, count + 1,
                                              1 / float(source_fps))
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
        return Clip(np.stack(frames), out_fps, bool(container.streams.audio), start, None if complete else seconds,
                    notes)


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


def _decode(container, stream, size: int, fps: Fraction, seconds: float, count: int,
            frame_seconds: float) -> tuple[list[np.ndarray], float, bool]:
    """Frames as RGB arrays, one per 1/`fps` from the stream's first picture, each the picture on screen at that
    moment (the latest shown by then: a stream that does not start at 0 s, or whose frames come at varying times, is
    timed by its own timestamps; the last picture stays up for `frame_seconds`), until `seconds` or `count`; the
    time of the first picture in the stream; and whether the stream ended before either limit."""
    width, height = frame_size(stream.width, stream.height, size)
    frames: list[np.ndarray] = []
    tick = 1 / float(fps)
    slack = min(tick, frame_seconds) / 4  # containers round times (Matroska to 1 ms): 0.167 s is frame 2 at 12 fps
    start: float | None = None
    shown = 0.0
    on_screen: np.ndarray | None = None  # the latest picture, not yet given to the ticks before the next one

    def fill_until(end: float) -> None:  # the ticks before `end` show the picture on screen
        while len(frames) < count and len(frames) * tick < min(end - slack, seconds - 1e-6):
            frames.append(on_screen)

    stream.thread_type = "AUTO"
    for index, frame in enumerate(container.decode(stream)):
        time = frame.time if frame.time is not None else index * frame_seconds
        start = time if start is None else start
        shown = time - start
        if on_screen is not None:
            fill_until(shown)
        if shown >= seconds - 1e-6 or len(frames) >= count:
            return frames, start, False
        on_screen = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
    if on_screen is not None:
        fill_until(shown + frame_seconds)
    return frames, start or 0.0, True


def write_video(part: Path, suffix: str, frames: np.ndarray, fps: Fraction, source: Path, audio_from: float,
                audio_until: float | None, comment: str) -> None:
    """Encode `frames` into `part` as the container `suffix` names, with `source`'s first audio track from
    `audio_from` seconds (the first frame's time in the source) for `audio_until` seconds (None: to its end): its
    packets copied unchanged where the container takes the codec, re-encoded otherwise."""
    import av

    codec, options = VIDEO_CODEC[suffix]
    with av.open(str(part), "w", format=suffix.lstrip(".")) as out:
        out.metadata["comment"] = comment
        video = out.add_stream(codec, rate=fps, options=options)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        with _audio_source(source) as audio_in:
            copier = _AudioCopier(out, audio_in, suffix, audio_from, audio_until) if audio_in is not None else None
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
    """Adds the output's audio stream at once (a muxer wants every stream before its header), fills it in `run` with
    the source's sound from `start` seconds on (moved to time 0, where the first frame is) for `length` seconds."""

    def __init__(self, out, source, suffix: str, start: float, length: float | None):
        self.source, self.out = source, out
        self.start, self.until = start, float("inf") if length is None else start + length
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
            shift = round(self.start / self.stream_in.time_base) if self.stream_in.time_base else 0
            for packet in self.source.demux(self.stream_in):
                if packet.dts is None or packet.pts is None:
                    continue  # the demuxer's flush packet
                seconds = packet.pts * packet.time_base
                if seconds < self.start - 1e-6:
                    continue  # sound from before the first picture
                if seconds >= self.until:
                    break
                packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
                packet.stream = self.stream_out
                self.out.mux(packet)
            return
        import av

        resampler = av.AudioResampler(format=self.stream_out.format, layout=self.stream_out.layout,
                                      rate=self.stream_out.rate)
        for frame in self.source.decode(self.stream_in):
            if frame.time is not None and frame.time < self.start - 1e-6:
                continue
            if frame.time is not None and frame.time >= self.until:
                break
            for chunk in resampler.resample(frame):
                chunk.pts = None  # the encoder numbers the samples from 0: the first frame's time
                self.out.mux(self.stream_out.encode(chunk))
        self.out.mux(self.stream_out.encode(None))
