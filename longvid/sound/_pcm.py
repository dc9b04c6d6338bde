"""Audio files as a stream of fixed-size float32 blocks at 48 kHz stereo, decoded and
resampled by PyAV a packet at a time, so no file is ever held whole in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np

from ..media.audio import CHANNELS, SAMPLE_RATE, write_raw_pcm

RATE = SAMPLE_RATE
BLOCK = RATE  # one second: big enough for numpy to be fast, small enough to keep memory flat


def decoded(path: Path, stream_index: int = 0, damaged: list[float] | None = None) -> Iterator[np.ndarray]:
    """(2, n) float32 pieces of the file's audio stream, resampled to 48 kHz stereo.

    A packet the decoder refuses (a file damaged in its middle) becomes silence
    of its length, so the rest keeps its place in time; its position in seconds is added to
    `damaged` when given. Any other failure to read the file is a RenderError naming it."""
    try:
        with av.open(str(path)) as container:
            if len(container.streams.audio) <= stream_index:
                return
            stream = container.streams.audio[stream_index]
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:  # InvalidDataError, or an AAC decoder's own error code
                    if damaged is not None:
                        damaged.append(float(packet.pts * packet.time_base) if packet.pts is not None else 0.0)
                    gap = int(round(float(packet.duration * packet.time_base) * RATE)) if packet.duration else 0
                    if gap:
                        yield np.zeros((CHANNELS, gap), np.float32)
                    continue
                for frame in frames:
                    for out in resampler.resample(frame):
                        yield out.to_ndarray()
            for out in resampler.resample(None):
                yield out.to_ndarray()
    except av.FFmpegError as exc:
        from ..errors import RenderError

        reason = " ".join(str(exc.strerror or type(exc).__name__).split())
        raise RenderError(f"{path}: its audio could not be decoded ({reason})") from None


write_raw = write_raw_pcm  # a (2, n) piece appended to a scratch file (media/audio.py defines the format)


def raw_pieces(path: Path, block: int = BLOCK) -> Iterator[np.ndarray]:
    """A scratch file written by write_raw, as (2, n) float32 pieces of `block` samples."""
    with open(path, "rb") as handle:
        while True:
            frames = np.fromfile(handle, np.float32, count=block * CHANNELS)
            if not frames.size:
                return
            yield frames.reshape(-1, CHANNELS).T


def rebatched(pieces: Iterator[np.ndarray], block: int = BLOCK) -> Iterator[np.ndarray]:
    """The same samples in pieces of at least `block` (the last may be shorter): numpy and
    scipy pay per call, and decoders hand out ~1000 samples at a time."""
    pending: list[np.ndarray] = []
    held = 0
    for piece in pieces:
        pending.append(piece)
        held += piece.shape[1]
        if held >= block:
            yield np.concatenate(pending, axis=1)
            pending, held = [], 0
    if pending:
        yield np.concatenate(pending, axis=1)


def blocks(pieces: Iterator[np.ndarray], total: int, block: int = BLOCK) -> Iterator[np.ndarray]:
    """Exactly `total` samples in blocks of `block` (the last may be shorter): the pieces
    cut and joined, and silence after they end."""
    pending: list[np.ndarray] = []
    held = 0
    done = 0
    for piece in pieces:
        pending.append(piece.astype(np.float32, copy=False))
        held += piece.shape[1]
        while held >= block and done < total:
            joined = np.concatenate(pending, axis=1)
            size = min(block, total - done)
            yield joined[:, :size]
            done += size
            pending, held = [joined[:, size:]], joined.shape[1] - size
        if done >= total:
            return
    rest = np.concatenate(pending, axis=1) if pending else np.zeros((CHANNELS, 0), np.float32)
    while done < total:
        size = min(block, total - done)
        out = np.zeros((CHANNELS, size), np.float32)
        take = rest[:, :size]
        out[:, : take.shape[1]] = take
        rest = rest[:, size:]
        done += size
        yield out


def looped_pieces(pieces: Callable[[], Iterator[np.ndarray]], length: int, seam: int) -> Iterator[np.ndarray]:
    """The first `length` samples of `pieces()` over and over, each repetition faded in and
    out over `seam` samples so the loop point does not click."""
    seam = min(seam, length // 2)
    ramp = np.linspace(0.0, 1.0, seam, dtype=np.float32) if seam else None
    while True:
        for position, piece in _positions(blocks(pieces(), length)):
            if ramp is not None:
                piece = piece.copy()
                _apply_edge_ramps(piece, position, length, ramp)
            yield piece


def _positions(pieces: Iterator[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
    position = 0
    for piece in pieces:
        yield position, piece
        position += piece.shape[1]


def _apply_edge_ramps(piece: np.ndarray, position: int, length: int, ramp: np.ndarray) -> None:
    seam = ramp.shape[0]
    n = piece.shape[1]
    head = max(0, min(n, seam - position))  # samples of this piece inside the fade-in
    if head:
        piece[:, :head] *= ramp[position : position + head]
    tail_start = max(0, length - seam - position)
    if tail_start < n:
        piece[:, tail_start:] *= ramp[::-1][position + tail_start - (length - seam) : position + n - (length - seam)]
