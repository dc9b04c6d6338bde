"""Normalise a provider's clip into the house format, so the merge can stream-copy it.

Providers encode with their own settings: other presets (so other H.264 parameter sets),
GOPs longer than the clip, other sizes and frame rates, AAC at other rates. The merge can
copy packets only when they decode with the parameter sets of its own encoder and when
IDR frames sit where its copy ranges start and end. So each segment is re-encoded once,
as it arrives and while others still generate, into:

- H.264 from `encoding.py`'s settings, at the output size and frame rate (frames resampled by
  presentation time, as the merge does), exactly `frames` long;
- IDR frames at the given indices (the segment's seam boundaries) besides frame 0;
- audio, when the clip has any, as AAC 48 kHz stereo of the same length (the merge lays
  silence under segments that have none).

`house_format_problem` tells, from the packets alone (nothing decoded), whether a clip
already is in that format, e.g. one from the preview renderer, which encodes it that way.

Memory: one decoded frame at a time, plus the clip's audio as PCM (a few MB for 10 s).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from .audio import CHANNELS, SAMPLE_RATE, use_intermediate_aac
from .encoding import DEFAULT_H264, PIXEL_FORMAT, H264Settings, add_h264_stream, h264_reference, parameter_sets
from .frames import Source, open_video

AUDIO_FRAME = 1024  # AAC's frame size in samples


@dataclass(frozen=True)
class HouseFormat:
    """What a normalised segment looks like: `frames` frames of width x height at `fps`,
    with IDR frames at `keyframes` (frame 0 always is one)."""

    width: int
    height: int
    fps: int
    frames: int
    keyframes: tuple[int, ...] = ()
    settings: H264Settings = field(default=DEFAULT_H264)

    @property
    def idr_frames(self) -> tuple[int, ...]:
        return tuple(sorted({0, *(k for k in self.keyframes if 0 <= k < self.frames)}))


@functools.lru_cache(maxsize=16)
def _reference(width: int, height: int, fps: int, settings: H264Settings) -> frozenset[bytes]:
    return h264_reference(width, height, fps, settings)


def house_format_problem(source: Source, fmt: HouseFormat) -> str | None:
    """Why the clip is not in the house format (a short phrase), or None when it is.
    Reads the stream headers and the packets' keyframe flags only."""
    with open_video(source) as container:
        if not container.streams.video:
            return "no video stream"
        stream = container.streams.video[0]
        cc = stream.codec_context
        if cc.name != "h264":
            return f"codec {cc.name}"
        if (cc.width, cc.height) != (fmt.width, fmt.height):
            return f"size {cc.width}x{cc.height}"
        if cc.pix_fmt != PIXEL_FORMAT:
            return f"pixel format {cc.pix_fmt}"
        if stream.average_rate != fmt.fps:
            return f"frame rate {stream.average_rate}"
        if parameter_sets(cc.extradata) != _reference(fmt.width, fmt.height, fmt.fps, fmt.settings):
            return "another encoder's H.264 parameters"
        for audio in container.streams.audio[:1]:
            if audio.codec_context.name != "aac" or audio.rate != SAMPLE_RATE or audio.channels != CHANNELS:
                return f"audio {audio.codec_context.name} {audio.rate} Hz x{audio.channels}"
        packets = [p for p in container.demux(stream) if p.size and p.pts is not None]
    if len(packets) < fmt.frames:
        return f"{len(packets)} frames, {fmt.frames} needed"
    start = min(p.pts for p in packets)
    keys = {int(round(float((p.pts - start) * stream.time_base) * fmt.fps)) for p in packets if p.is_keyframe}
    missing = [k for k in fmt.idr_frames if k not in keys]
    return f"no IDR frame at {missing}" if missing else None


def _timeline_frames(container, fmt: HouseFormat) -> Iterator[av.VideoFrame]:
    """`fmt.frames` frames at the output size and rate: slot j shows the latest source frame
    presented at or before j/fps (half a frame of slack, the merge's rule); a short clip is
    padded with its last frame."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    wanted, start = 0, None
    current: av.VideoFrame | None = None
    scaled: av.VideoFrame | None = None

    def fit(frame: av.VideoFrame) -> av.VideoFrame:
        if frame.width == fmt.width and frame.height == fmt.height and frame.format.name == PIXEL_FORMAT:
            return frame
        return frame.reformat(width=fmt.width, height=fmt.height, format=PIXEL_FORMAT)

    for frame in container.decode(stream):
        if start is None:
            start = frame.pts or 0
        t = float((frame.pts - start) * stream.time_base) if frame.pts is not None else 0.0
        while wanted < fmt.frames and t > (wanted + 0.5) / fmt.fps:
            scaled = scaled or fit(current or frame)
            yield scaled
            wanted += 1
        if wanted >= fmt.frames:
            return
        current, scaled = frame, None
    if current is None:
        raise ValueError("the clip has no decodable video frames")
    scaled = scaled or fit(current)
    while wanted < fmt.frames:
        yield scaled
        wanted += 1


def _audio_pcm(source: Source, samples: int) -> np.ndarray | None:
    """The clip's first audio track as 48 kHz stereo float32, trimmed or padded with silence
    to `samples`; None when it has no audio."""
    with open_video(source) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    pcm = np.concatenate(chunks, axis=1).astype(np.float32) if chunks else np.zeros((CHANNELS, 0), np.float32)
    if pcm.shape[1] < samples:
        pcm = np.pad(pcm, ((0, 0), (0, samples - pcm.shape[1])))
    return np.ascontiguousarray(pcm[:, :samples])


class _AudioTrack:
    """Encodes a PCM buffer as AAC, as far as the video has got, so the two interleave."""

    def __init__(self, container, pcm: np.ndarray):
        self.container, self.pcm, self.done = container, pcm, 0
        self.stream = container.add_stream("aac", rate=SAMPLE_RATE)
        self.stream.layout = "stereo"
        self.stream.format = "fltp"
        use_intermediate_aac(self.stream)  # the merge decodes it again

    def until(self, sample: int, final: bool = False) -> None:
        sample = min(sample, self.pcm.shape[1])
        while self.done + AUDIO_FRAME <= sample or (final and self.done < sample):
            chunk = np.ascontiguousarray(self.pcm[:, self.done : min(self.done + AUDIO_FRAME, sample)])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = SAMPLE_RATE, self.done
            self.done += chunk.shape[1]
            self.container.mux(self.stream.encode(frame))
        if final:
            self.container.mux(self.stream.encode(None))


def normalise_clip(source: Source, fmt: HouseFormat) -> bytes:
    """The clip re-encoded into the house format, as the bytes of an MP4."""
    samples = int(round(fmt.frames * SAMPLE_RATE / fmt.fps))
    pcm = _audio_pcm(source, samples)
    idr = set(fmt.idr_frames)
    out = io.BytesIO()
    with open_video(source) as container, av.open(out, "w", format="mp4") as output:
        video = add_h264_stream(output, fmt.width, fmt.height, fmt.fps, fmt.settings)
        audio = _AudioTrack(output, pcm) if pcm is not None else None
        for index, frame in enumerate(_timeline_frames(container, fmt)):
            # The same decoded frame may fill several slots: its timing and type are set per slot.
            frame.pts, frame.time_base = index, Fraction(1, fmt.fps)
            frame.pict_type = av.video.frame.PictureType.I if index in idr else av.video.frame.PictureType.NONE
            output.mux(video.encode(frame))
            if audio is not None:
                audio.until(int(round((index + 1) * SAMPLE_RATE / fmt.fps)))
        output.mux(video.encode(None))
        if audio is not None:
            audio.until(samples, final=True)
    return out.getvalue()
