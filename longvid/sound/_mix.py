"""The mix: each source measured, set to its level, ducked and faded, and summed, a block
at a time."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _pcm
from ._envelopes import Span, duck_gain, fade_gain, merge_spans, speech_spans_from_levels
from ._loudness import LoudnessMeter, gain

LEVEL_HOP_S = 0.05  # narration level resolution for finding speech without cues
MAX_BOOST_DB = 30.0  # a near-silent source is not blown up into its noise floor
LOOP_SEAM_S = 0.05


@dataclass(frozen=True)
class Measured:
    path: Path  # the scratch copy of the decoded samples when one was kept, else the file
    loudness_lufs: float  # -inf when silent
    samples: int  # decoded length at 48 kHz, counted up to `limit` + 1
    levels_db: tuple[float, ...] = ()  # per LEVEL_HOP_S, narration only
    peak: float = 0.0  # largest sample magnitude: 0 when the file holds only zeros (or no audio)
    damaged_s: tuple[float, ...] = ()  # where packets the decoder refused were (played as silence)

    @property
    def audible(self) -> bool:
        return self.peak > 0

    @property
    def seconds(self) -> float:
        return self.samples / _pcm.RATE


def measure(path: Path, limit: int, with_levels: bool = False, keep_in: Path | None = None, raw: bool = False) -> Measured:
    """Loudness of the first `limit` samples of a file's audio, its length (a file longer
    than `limit` reads as limit + 1, and is not decoded further) and, when asked, its level
    every 50 ms. With `keep_in`, those samples as decoded (48 kHz stereo float32) are also
    written there, and the result points at that copy: the mix reads it back instead of
    decoding the file a second time. `raw`: the file already is such a copy (write_raw's
    format), read as it is."""
    meter = LoudnessMeter(_pcm.RATE)
    hop = int(LEVEL_HOP_S * _pcm.RATE)
    levels: list[float] = []
    samples = 0
    peak = 0.0
    carry = np.zeros((_pcm.CHANNELS, 0), np.float32)
    damaged: list[float] = []
    with open(keep_in, "wb") if keep_in is not None else contextlib.nullcontext() as kept:
        for piece in (_pcm.raw_pieces(path) if raw else _pcm.rebatched(_pcm.decoded(path, damaged=damaged))):
            decoded = piece.shape[1]
            piece = piece[:, : limit - samples]
            samples += piece.shape[1]
            peak = max(peak, float(np.abs(piece).max(initial=0.0)))
            meter.add(piece)
            if kept is not None:
                _pcm.write_raw(kept, piece)
            if with_levels:
                carry = np.concatenate([carry, piece], axis=1)
                whole = carry.shape[1] // hop
                if whole:
                    power = (carry[:, : whole * hop] ** 2).reshape(_pcm.CHANNELS, whole, hop).mean(axis=(0, 2))
                    levels.extend(10 * math.log10(v) if v > 0 else -math.inf for v in power)
                    carry = carry[:, whole * hop :]
            if piece.shape[1] < decoded:
                samples = limit + 1  # longer than needed: the rest is never used
                break
    return Measured(keep_in or path, meter.integrated(), samples, tuple(levels), peak, tuple(damaged))


@dataclass(frozen=True)
class Track:
    """One source as it goes into the mix."""

    path: Path  # its decoded samples, as measure kept them (a scratch file of float32 frames)
    gain: float  # linear
    duck_db: float  # 0: not ducked
    loop_length: int = 0  # > 0: the file repeats every this many samples
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0


def level_gain(measured: Measured, level_lufs: float) -> float:
    if not math.isfinite(measured.loudness_lufs):
        return 1.0
    return gain(min(MAX_BOOST_DB, level_lufs - measured.loudness_lufs))


def speech_spans(narration: Measured | None, cue_spans: Sequence[Span], bridge_s: float) -> list[Span]:
    """Where the voice is: the cues when there are any, else read from the narration's level."""
    if cue_spans:
        return merge_spans(cue_spans, bridge_s)
    if narration is None:
        return []
    return speech_spans_from_levels(narration.levels_db, LEVEL_HOP_S, floor_db=-30.0, bridge_s=bridge_s)


def mixed_blocks(tracks: Sequence[Track], total: int, spans: Sequence[Span], attack_s: float, release_s: float) -> Iterator[np.ndarray]:
    rate = _pcm.RATE
    readers = []
    for track in tracks:
        if track.loop_length:
            pieces = _pcm.looped_pieces(functools.partial(_pcm.raw_pieces, track.path), track.loop_length, int(LOOP_SEAM_S * rate))
        else:
            pieces = _pcm.raw_pieces(track.path)
        readers.append(_pcm.blocks(pieces, total))
    start = 0
    while start < total:
        n = min(_pcm.BLOCK, total - start)
        mix = np.zeros((_pcm.CHANNELS, n), np.float32)
        for track, reader in zip(tracks, readers):
            block = next(reader) * np.float32(track.gain)
            if track.duck_db:
                block *= duck_gain(start, n, rate, spans, track.duck_db, attack_s, release_s)
            if track.fade_in_s or track.fade_out_s:
                block *= fade_gain(start, n, rate, total, track.fade_in_s, track.fade_out_s)
            mix += block
        yield mix
        start += n

