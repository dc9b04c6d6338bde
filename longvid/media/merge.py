"""Merge segments into one H.264 MP4 with transitions at the seams.

Segment i contributes `frames` to the timeline. When a seam is a crossfade (or a fade through
black), segment i carries `tail_frames` more, which are blended with the first `head_frames`
of segment i+1; anything a provider generated beyond that is trimmed. So the output has
exactly sum(frames) frames.

Speed: re-encoding a whole minute of video costs tens of seconds, yet only the few frames
at each seam change. So, for each segment whose H.264 parameters match our encoder's, the
whole GOPs that no transition touches are stream-copied, and only the frames between them
(the seam windows) are decoded, blended and re-encoded, each window by a fresh encoder so
it starts with an IDR. The preview renderer puts IDR frames exactly where the copy ranges
start and end, which shrinks each window to the transition itself, and the runtime
normalises provider clips into the same form as they arrive (normalise.py). A segment from
another encoder that reaches the merge anyway (another resolution, frame rate or codec) is
decoded, resampled and re-encoded whole.

Memory: one segment's packet index (a few MB) and a transition's frames at a time.

Audio (decode, crossfade, AAC encode) runs on its own thread beside the video: PyAV releases
the GIL inside the codecs, and with the video mostly copied, AAC encoding would otherwise be
most of the merge's time. timeline.py runs the merge in timeline order as segments arrive
(merge_segments is that, given every segment at once).

It reads packets itself rather than through media/frames.py: stream copy needs the packets,
and the seam windows are decoded from a keyframe inside the file, not from its start.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.bitstream import BitStreamFilterContext

from ..spec import Transition
from .encoding import DEFAULT_H264, PIXEL_FORMAT, H264Settings, open_encoder, parameter_sets


@dataclass(frozen=True)
class MergeInput:
    path: Path
    frames: int
    head_frames: int = 0
    head_transition: Transition = Transition.CUT
    tail_frames: int = 0


@dataclass(frozen=True)
class MergeStats:
    frames: int
    copied_frames: int
    encoded_frames: int
    copied_segments: int
    audio: bool
    # Merging work in all. For a merge ahead (runtime/merge_ahead.py): the picture's and the
    # sound's work done before the generate step ended (`ahead_s`, the two threads summed)
    # plus the wall time of finishing it after (`seconds - ahead_s`).
    seconds: float
    ahead_s: float = 0.0
    merged_ahead: bool = False  # final.mp4 came from the merge ahead (False: merged from scratch)


def blend(previous: np.ndarray, following: np.ndarray, alpha: float, transition: Transition, black: np.ndarray) -> np.ndarray:
    """One transition frame on yuv420p planes; alpha runs 0 (all previous) to 1 (all following).
    YUV is an affine map of RGB, so a linear blend here equals one in RGB."""
    a = previous.astype(np.float32)
    b = following.astype(np.float32)
    if transition is Transition.FADE:
        out = a + (black - a) * (2 * alpha) if alpha < 0.5 else black + (b - black) * (2 * alpha - 1)
    else:
        out = a + (b - a) * alpha
    return (out + 0.5).astype(np.uint8)


def transition_alpha(k: int, length: int) -> float:
    # Strictly between 0 and 1: the seam frames are real blends of both sides.
    return (k + 1) / (length + 1)


@dataclass
class _Packet:
    packet: av.Packet
    index: int  # local frame index of its presentation time
    keyframe: bool


class _Segment:
    """A segment file opened for merging: its video packets indexed by frame."""

    def __init__(self, source: MergeInput, fps: int, width: int, height: int, reference: frozenset[bytes]):
        self.source, self.fps, self.width, self.height = source, fps, width, height
        self.container = av.open(str(source.path))
        if not self.container.streams.video:
            raise ValueError(f"{source.path} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.time_base = self.stream.time_base
        packets = [p for p in self.container.demux(self.stream) if p.size and p.pts is not None]
        self.start_pts = min((p.pts for p in packets), default=0)
        rate = float(self.stream.average_rate or fps)
        self.packets = [
            _Packet(p, int(round(float((p.pts - self.start_pts) * self.time_base) * rate)), p.is_keyframe) for p in packets
        ]
        cc = self.stream.codec_context
        self.copyable = (
            cc.name == "h264"
            and cc.width == width
            and cc.height == height
            and cc.pix_fmt == PIXEL_FORMAT
            and self.stream.average_rate == fps
            and parameter_sets(cc.extradata) == reference
            and len(self.packets) >= source.frames + source.tail_frames
        )

    def close(self) -> None:
        self.container.close()

    def copy_range(self) -> tuple[int, int, int, int] | None:
        """(first frame, end frame, first packet, end packet) of whole closed GOPs inside the
        untouched body [head_frames, frames), or None when there is nothing to copy."""
        if not self.copyable:
            return None
        head, body_end = self.source.head_frames, self.source.frames
        keys = [(pos, p.index) for pos, p in enumerate(self.packets) if p.keyframe]
        starts = [(pos, idx) for pos, idx in keys if idx >= head]
        if not starts:
            return None
        first_pos, first = starts[0]
        ends = [(pos, idx) for pos, idx in keys if first < idx <= body_end]
        if len(self.packets) == body_end:  # the stream's end closes the last GOP too
            ends.append((len(self.packets), body_end))
        if not ends:
            return None
        end_pos, end = max(ends, key=lambda e: e[1])
        chunk = self.packets[first_pos:end_pos]
        if sorted(p.index for p in chunk) != list(range(first, end)):
            return None  # an open GOP or a gap: decoding is the safe path
        return first, end, first_pos, end_pos

    def frames(self, lo: int, hi: int) -> Iterator[np.ndarray]:
        """yuv420p arrays at the output size for local output frames [lo, hi), resampled to
        the output rate by presentation time and padded with the last frame if short."""
        if hi <= lo:
            return
        start = 0
        for pos, p in enumerate(self.packets):  # decode from the last keyframe at or before lo
            if p.keyframe and p.index <= lo:
                start = pos
        decoder = self.stream.codec_context
        decoder.flush_buffers()
        wanted = lo
        current: av.VideoFrame | None = None
        pixels: np.ndarray | None = None
        # Slot j shows the latest frame presented at or before j/fps (half a frame of slack).
        for frame in self._decode(decoder, start):
            t = float((frame.pts - self.start_pts) * self.time_base) if frame.pts is not None else 0.0
            while wanted < hi and t > (wanted + 0.5) / self.fps:
                if current is None:
                    current = frame
                if pixels is None:
                    pixels = self._normalise(current)
                yield pixels
                wanted += 1
            if wanted >= hi:
                return
            current, pixels = frame, None
        if current is None:
            raise ValueError(f"{self.source.path} has no decodable frames")
        if pixels is None:
            pixels = self._normalise(current)
        while wanted < hi:
            yield pixels
            wanted += 1

    def _decode(self, decoder, start: int) -> Iterator[av.VideoFrame]:
        for item in self.packets[start:]:
            yield from decoder.decode(item.packet)
        yield from decoder.decode(None)

    def _normalise(self, frame: av.VideoFrame) -> np.ndarray:
        if frame.width != self.width or frame.height != self.height or frame.format.name != PIXEL_FORMAT:
            frame = frame.reformat(width=self.width, height=self.height, format=PIXEL_FORMAT)
        return frame.to_ndarray()


class _VideoWriter:
    """Appends re-encoded runs and copied GOPs to one output stream, in timeline order."""

    def __init__(self, container, stream, width: int, height: int, fps: int, settings: H264Settings,
                 lock: threading.Lock):
        self.container, self.stream, self.lock = container, stream, lock
        self.width, self.height, self.fps, self.settings = width, height, fps, settings
        self.encoder: av.CodecContext | None = None
        self.next_index = 0
        self.encoded = 0
        self.copied = 0

    def write(self, pixels: np.ndarray) -> None:
        if self.encoder is None:
            self.encoder = open_encoder(self.width, self.height, self.fps, self.settings)
        frame = av.VideoFrame.from_ndarray(pixels, format=PIXEL_FORMAT)
        frame.pts = self.next_index
        self._mux(self.encoder.encode(frame))
        self.next_index += 1
        self.encoded += 1

    def end_run(self) -> None:
        if self.encoder is not None:
            self._mux(self.encoder.encode(None))
            self.encoder = None

    def copy(self, segment: _Segment, first: int, end: int, first_pos: int, end_pos: int) -> None:
        self.end_run()
        tb = segment.time_base
        key_pts = segment.packets[first_pos].packet.pts
        shift = int(round(Fraction(self.next_index, self.fps) / tb)) - key_pts
        # Our output track takes Annex B, as the encoder makes it; MP4 packets are
        # length-prefixed, so they pass through the standard converter first.
        to_annexb = BitStreamFilterContext("h264_mp4toannexb", in_stream=segment.stream)
        for item in segment.packets[first_pos:end_pos]:
            pts, dts = item.packet.pts, item.packet.dts  # the filter takes the packet's data
            for packet in to_annexb.filter(item.packet):
                packet.pts = pts + shift
                packet.dts = dts + shift if dts is not None else None
                packet.time_base = tb
                packet.stream = self.stream
                with self.lock:
                    self.container.mux(packet)
        self.next_index += end - first
        self.copied += end - first

    def _mux(self, packets) -> None:
        for packet in packets:
            packet.stream = self.stream
            with self.lock:
                self.container.mux(packet)


def merge_segments(
    inputs: Sequence[MergeInput],
    output: Path,
    fps: int,
    width: int,
    height: int,
    settings: H264Settings = DEFAULT_H264,
    stream_copy: bool = True,
    audio_pcm: Path | None = None,
) -> MergeStats:
    """Merge `inputs` in order into `output` (written to a temporary name, then renamed,
    so a reader never sees a half-written file): a TimelineMerge (timeline.py) given them all.
    `audio_pcm`: the audio goes there as raw PCM, for the soundtrack step to mix (timeline.py)."""
    from .timeline import TimelineMerge

    merge = TimelineMerge(len(inputs), output, fps, width, height, settings, stream_copy, audio_pcm)
    try:
        for position, source in enumerate(inputs):
            merge.add(position, source)
        return merge.finish()
    except BaseException:
        merge.abort()
        raise
