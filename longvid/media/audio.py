"""Audio for the merged video: each segment's track laid on the video's timeline, crossfaded
where the picture crossfades, silence where a segment has none, encoded as AAC.

Segments are at most a few seconds, so one segment's PCM is held at a time.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

SAMPLE_RATE = 48_000
CHANNELS = 2
# AAC that is decoded again (a normalised segment's track, which the merge mixes): FFmpeg's
# "fast" coder takes a third of the default's time or less, on the critical path for the last
# segment to arrive, and a high bit rate keeps what the next encoding adds inaudible.
INTERMEDIATE_AAC_BITRATE = 256_000
INTERMEDIATE_AAC_OPTIONS = {"aac_coder": "fast"}


def write_raw_pcm(handle: BinaryIO, pcm: np.ndarray) -> None:
    """Append (2, n) samples to a raw PCM scratch file: interleaved float32 frames, 48 kHz
    stereo. The one format the merge hands the soundtrack step (sound/_pcm.py reads it)."""
    np.ascontiguousarray(pcm.T, dtype=np.float32).tofile(handle)


def use_intermediate_aac(stream) -> None:
    stream.bit_rate = INTERMEDIATE_AAC_BITRATE
    stream.codec_context.options = dict(INTERMEDIATE_AAC_OPTIONS)


def has_audio(path: Path) -> bool:
    with av.open(str(path)) as container:
        return bool(container.streams.audio)


def decode_audio(path: Path) -> np.ndarray:
    """The file's first audio track as float32 (channels, samples) at 48 kHz stereo."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return np.zeros((CHANNELS, 0), np.float32)
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    return np.concatenate(chunks, axis=1).astype(np.float32) if chunks else np.zeros((CHANNELS, 0), np.float32)


class AudioMixer:
    """Lays segments' audio on the timeline and encodes it into `container` as AAC, or, with
    `raw`, writes it there as raw PCM instead (write_raw_pcm), for a track that is mixed again."""

    def __init__(self, container, fps: int, lock=None, raw: BinaryIO | None = None):
        self.fps = fps
        self.lock = lock or contextlib.nullcontext()  # the container's, when video is muxed from another thread
        self.raw = raw
        self.stream = None
        if raw is None:
            self.stream = container.add_stream("aac", rate=SAMPLE_RATE)
            self.stream.layout = "stereo"
            self.stream.format = "fltp"
        self.frame_size = 1024
        self.pending = np.zeros((CHANNELS, 0), np.float32)
        self.carry = np.zeros((CHANNELS, 0), np.float32)
        self.frames_done = 0
        self.samples_written = 0
        self.container = container

    def _samples_at(self, frame_index: int) -> int:
        # Cumulative boundaries, so rounding never drifts over a long video.
        return int(round(frame_index * SAMPLE_RATE / self.fps))

    def add(self, path: Path, frames: int, head_frames: int, tail_frames: int) -> None:
        start = self._samples_at(self.frames_done)
        body = self._samples_at(self.frames_done + frames) - start
        tail = self._samples_at(self.frames_done + frames + tail_frames) - start - body
        pcm = decode_audio(path)
        want = body + tail
        if pcm.shape[1] < want:
            pcm = np.pad(pcm, ((0, 0), (0, want - pcm.shape[1])))
        pcm = pcm[:, :want].copy()
        overlap = min(self.carry.shape[1], pcm.shape[1], self._samples_at(head_frames))
        if overlap:
            ramp = np.linspace(0, 1, overlap, dtype=np.float32)
            pcm[:, :overlap] = self.carry[:, :overlap] * (1 - ramp) + pcm[:, :overlap] * ramp
        self._emit(pcm[:, :body])
        self.carry = pcm[:, body:]
        self.frames_done += frames

    def _emit(self, pcm: np.ndarray) -> None:
        if self.raw is not None:
            write_raw_pcm(self.raw, pcm)
            self.samples_written += pcm.shape[1]
            return
        self.pending = np.concatenate([self.pending, pcm], axis=1)
        while self.pending.shape[1] >= self.frame_size:
            self._encode(self.pending[:, : self.frame_size])
            self.pending = self.pending[:, self.frame_size :]

    def _encode(self, chunk: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.samples_written
        self.samples_written += chunk.shape[1]
        packets = self.stream.encode(frame)
        with self.lock:
            self.container.mux(packets)

    def finish(self) -> None:
        if self.raw is not None:
            self.raw.flush()
            return
        if self.pending.shape[1]:
            self._encode(self.pending)
            self.pending = self.pending[:, :0]
        packets = self.stream.encode(None)
        with self.lock:
            self.container.mux(packets)
