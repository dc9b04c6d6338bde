"""Gain curves for the mix, as pure functions of time: music fades, and ducking under
speech. Each returns the gain (linear) for the samples [start, start + n) at `rate`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Span = tuple[float, float]  # seconds, start and end of speech


def merge_spans(spans: Sequence[Span], bridge_s: float) -> list[Span]:
    """Sorted spans, with those closer than `bridge_s` joined: the music should not swell
    back up in the breath between two phrases."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= bridge_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def speech_spans_from_levels(levels_db: Sequence[float], hop_s: float, floor_db: float, bridge_s: float) -> list[Span]:
    """Where speech is, from a narration's level per hop (dBFS): hops within `floor_db` of
    the loudest one."""
    levels = np.asarray(levels_db, dtype=np.float64)
    if not levels.size or not np.isfinite(levels.max()):
        return []
    loud = levels >= levels.max() + floor_db
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    return merge_spans([(float(a * hop_s), float(b * hop_s)) for a, b in zip(edges[::2], edges[1::2])], bridge_s)


def duck_gain(start: int, n: int, rate: int, spans: Sequence[Span], depth_db: float, attack_s: float, release_s: float) -> np.ndarray:
    """Gain that goes down by `depth_db` over `attack_s` before each span starts (so the
    music is already down when the voice comes in), stays down through it, and comes back
    over `release_s` after it ends."""
    t = (start + np.arange(n)) / rate
    depth = np.zeros(n)
    t0, t1 = t[0] if n else 0.0, t[-1] if n else 0.0
    for a, b in spans:
        if b + release_s < t0 or a - attack_s > t1:
            continue
        rise = np.clip((t - (a - attack_s)) / attack_s, 0, 1) if attack_s > 0 else (t >= a).astype(float)
        fall = np.clip(1 - (t - b) / release_s, 0, 1) if release_s > 0 else (t <= b).astype(float)
        np.maximum(depth, np.minimum(rise, fall), out=depth)
    return (10 ** (depth * depth_db / 20)).astype(np.float32)


def fade_gain(start: int, n: int, rate: int, total: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Linear fade in from the start and out to the end of `total` samples."""
    index = start + np.arange(n, dtype=np.float64)
    gain = np.ones(n)
    if fade_in_s > 0:
        gain = np.minimum(gain, index / (fade_in_s * rate))
    if fade_out_s > 0:
        gain = np.minimum(gain, (total - index) / (fade_out_s * rate))
    return np.clip(gain, 0, 1).astype(np.float32)
