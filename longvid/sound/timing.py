"""Pictures timed to the words, by construction: scene lengths from the narration's
synthesised durations, the phrases placed inside their scenes, and the subtitle cues.

Pure arithmetic on durations: no audio, no engines, no Ray. The speak step measures each
phrase's clip, this module decides where everything goes, and the segmenter then cuts
segments inside the scene lengths it returns (`scene_frames`, exact).

The rule: a scene lasts at least its narration plus margins (SCENE_LEAD_S before the first
phrase, PHRASE_GAP_S between phrases, SCENE_TAIL_S after the last one). The requested
duration is shared among the scenes by their weights; a scene whose share is too short for
its words takes what it needs and the others share the rest. When all the narration
cannot fit the requested duration, the video is stretched to the narration's length and a
warning says so (the words are never cut or sped up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .cues import Cue

# Silence at a scene's start: a cut, or a crossfade (SegmentationRules.overlap_frames, 6
# frames: 0.25 s at 24 fps), has settled before the words. A fade through black (fade_frames,
# 12: 0.5 s at 24 fps) has not: its picture is still coming up from black for the first
# 0.2 s of the words (the scene lengths, not this lead, keep every phrase inside its scene).
SCENE_LEAD_S = 0.3
PHRASE_GAP_S = 0.25  # a breath between phrases
SCENE_TAIL_S = 0.5  # after a scene's last phrase, before the next scene (and its transition) starts
MIN_SCENE_S = 1.0  # no scene is squeezed shorter than this by its neighbours' narration
CUE_HOLD_S = 0.2  # a cue stays up this long after its phrase ends (never past the next one)


@dataclass(frozen=True)
class PlacedPhrase:
    scene: int
    text: str
    start_s: float  # from the start of the video
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class NarrationTiming:
    scene_frames: list[int]  # exact frames of each scene; they sum to the video's length
    phrases: list[PlacedPhrase]
    fps: int
    requested_s: float
    warnings: list[str] = field(default_factory=list)

    @property
    def total_frames(self) -> int:
        return sum(self.scene_frames)

    @property
    def total_s(self) -> float:
        return self.total_frames / self.fps

    @property
    def stretched(self) -> bool:
        return self.total_frames > round(self.requested_s * self.fps)

    def scene_start_s(self, scene: int) -> float:
        return sum(self.scene_frames[:scene]) / self.fps

    def scene_end_s(self, scene: int) -> float:
        return sum(self.scene_frames[: scene + 1]) / self.fps

    def cues(self) -> list[Cue]:
        """One subtitle cue per phrase: on when its words start, off shortly after they end
        (before the next phrase, and inside its scene)."""
        cues = []
        for i, phrase in enumerate(self.phrases):
            end = phrase.end_s + CUE_HOLD_S
            if i + 1 < len(self.phrases):
                end = min(end, self.phrases[i + 1].start_s)
            end = min(end, self.scene_end_s(phrase.scene))
            cues.append(Cue(round(phrase.start_s, 3), round(max(end, phrase.end_s), 3), phrase.text))
        return cues


def narration_need_s(durations: list[float]) -> float:
    """Seconds a scene needs for phrases of these durations (0 for a silent scene)."""
    if not durations:
        return 0.0
    return SCENE_LEAD_S + sum(durations) + PHRASE_GAP_S * (len(durations) - 1) + SCENE_TAIL_S


def scene_seconds(weights: list[float], needs: list[float], requested_s: float) -> list[float]:
    """Share `requested_s` by weight, giving each scene at least its need (water-filling);
    more than `requested_s` in all only when the needs add up to more."""
    if len(weights) != len(needs) or not weights:
        raise ValueError("one weight and one need per scene, and at least one scene")
    needs = [max(n, MIN_SCENE_S) for n in needs]
    if sum(needs) >= requested_s:
        return list(needs)
    fixed: set[int] = set()
    while True:
        free = [i for i in range(len(weights)) if i not in fixed]
        budget = requested_s - sum(needs[i] for i in fixed)
        total_weight = sum(weights[i] for i in free) or 1.0
        share = {i: budget * weights[i] / total_weight for i in free}
        short = {i for i in free if share[i] < needs[i]}
        if not short:
            return [needs[i] if i in fixed else share[i] for i in range(len(weights))]
        fixed |= short


@dataclass(frozen=True)
class SegmentFit:
    """What the segmenter will do with the scene lengths (segmentation.segment_fit makes it
    from the provider's durations): scenes are cut into segments of at most `capacity_s`
    each, and a video gets at least `design_count` segments in all."""

    capacity_s: float
    design_count: int


def fitted_scene_seconds(weights: list[float], needs: list[float], requested_s: float, fit: SegmentFit) -> list[float]:
    """Scene lengths that cost no more segments than the words and the design need.

    Shared by weight alone, every scene of a 45 s video can come out a little longer than
    one segment and need two: eight paid clips where six would do. So each scene first gets
    the segments its words need, the design's remaining segments go to the scenes whose
    segments would otherwise be longest, and the lengths are then shared by weight inside
    [need, segments x capacity] (water-filling with both bounds)."""
    needs = [max(n, MIN_SCENE_S) for n in needs]
    total = max(requested_s, sum(needs))
    shares = scene_seconds(weights, needs, requested_s)
    counts = [max(1, math.ceil(n / fit.capacity_s - 1e-9)) for n in needs]
    target = max(fit.design_count, math.ceil(total / fit.capacity_s - 1e-9), len(needs))
    while sum(counts) < target:
        widest = max(range(len(counts)), key=lambda i: (shares[i] / counts[i], -i))
        counts[widest] += 1
    highs = [c * fit.capacity_s for c in counts]
    return _bounded_shares(weights, needs, highs, total)


def _bounded_shares(weights: list[float], lows: list[float], highs: list[float], total: float) -> list[float]:
    """clamp(level * weight, low, high) per scene, the level found so they add up to `total`
    (bisection: the sum only grows with the level)."""
    def at(level: float) -> list[float]:
        return [min(max(level * w, lo), hi) for w, lo, hi in zip(weights, lows, highs)]

    if sum(highs) <= total:
        return list(highs)
    low, high = 0.0, 1.0
    while sum(at(high)) < total:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if sum(at(mid)) < total else (low, mid)
    return at(high)


def to_frames(seconds: list[float], needs: list[float], fps: int, total_frames: int) -> list[int]:
    """Whole frames per scene that add up to `total_frames` exactly, none below its need
    (largest remainder on what is above the needs)."""
    floors = [max(1, math.ceil(max(n, MIN_SCENE_S) * fps - 1e-6)) for n in needs]
    spare = total_frames - sum(floors)
    if spare < 0:
        raise ValueError(f"{total_frames} frames cannot hold scenes needing {sum(floors)}")
    raw = [max(0.0, s * fps - f) for s, f in zip(seconds, floors)]
    scale = spare / sum(raw) if sum(raw) > 0 else 0.0
    extra = [r * scale for r in raw]
    shares = [math.floor(e) for e in extra]
    if sum(raw) == 0:  # nothing above the needs: the spare goes to the last scene
        shares[-1] = spare
    order = sorted(range(len(extra)), key=lambda i: (extra[i] - shares[i], -i), reverse=True)
    for i in order[: spare - sum(shares)]:
        shares[i] += 1
    return [f + s for f, s in zip(floors, shares)]


def time_narration(weights: list[float], phrases: list[list[tuple[str, float]]], requested_s: float,
                   fps: int, fit: SegmentFit | None = None) -> NarrationTiming:
    """Scene lengths and phrase times for scenes of these weights, each narrated by its
    (text, seconds) phrases, in a video of `requested_s` seconds (stretched if the words
    need more, with a warning). With `fit`, the lengths also keep the segment count down."""
    needs = [narration_need_s([d for _t, d in scene]) for scene in phrases]
    seconds = (fitted_scene_seconds(weights, needs, requested_s, fit) if fit is not None
               else scene_seconds(weights, needs, requested_s))
    requested_frames = round(requested_s * fps)
    minimum = sum(max(1, math.ceil(max(n, MIN_SCENE_S) * fps - 1e-6)) for n in needs)
    total_frames = max(requested_frames, minimum)
    frames = to_frames(seconds, needs, fps, total_frames)
    placed = place_phrases(phrases, frames, fps)
    warnings = []
    if total_frames > requested_frames:
        total_s = total_frames / fps
        warnings.append(
            f"the narration needs {total_s:.1f} s, more than the requested {requested_s:g} s: the video was "
            f"stretched to {total_s:.1f} s (shorten the narration, or pass --duration {math.ceil(total_s)})"
        )
    return NarrationTiming(frames, placed, fps, requested_s, warnings)


def place_phrases(phrases: list[list[tuple[str, float]]], scene_frames: list[int], fps: int) -> list[PlacedPhrase]:
    """Each scene's (text, seconds) phrases placed in it: SCENE_LEAD_S after the scene starts,
    PHRASE_GAP_S apart."""
    placed: list[PlacedPhrase] = []
    start_frame = 0
    for scene, scene_phrases in enumerate(phrases):
        t = start_frame / fps + SCENE_LEAD_S
        for text, duration in scene_phrases:
            placed.append(PlacedPhrase(scene, text, t, duration))
            t += duration + PHRASE_GAP_S
        start_frame += scene_frames[scene]
    return placed


def scenes_too_short(durations: list[list[float]], scene_frames: list[int], fps: int) -> list[tuple[int, float, float]]:
    """(scene, seconds its words need, seconds it lasts) for every scene whose phrases of these
    durations do not fit its fixed length (an edit keeps the scenes' lengths)."""
    needs = [narration_need_s(d) for d in durations]
    return [(i, need, frames / fps) for i, (need, frames) in enumerate(zip(needs, scene_frames))
            if math.ceil(need * fps - 1e-6) > frames]
