"""Segmentation rules: how a storyboard becomes provider-sized segments.

From the design (FramePack-style): up to 30 s use 4 segments, otherwise max(6, total // 8);
6 overlap frames at each seam; keyframe density 0.5/s. Each segment is then fitted to the
provider's allowed durations: it is generated at the shortest allowed length that covers
its frames plus the crossfade tail, and the merge trims the rest, so the final video is
exactly the requested number of frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..spec import ContinuityMode, RenderSpec, Scene, SegmentJob, Storyboard, Transition


@dataclass(frozen=True)
class DurationRule:
    """What lengths a provider can generate: any length in [min_s, max_s] (`allowed` None),
    or only the listed ones (Runway 5/10 s, Veo 4/6/8 s)."""

    min_s: float = 1.0
    max_s: float = 10.0
    allowed: tuple[float, ...] | None = None
    # Open-weights models make only some frame counts: k * frame_step + 1 (LTX-Video 8k+1,
    # Wan 4k+1). 1: any count.
    frame_step: int = 1

    def fit(self, needed_s: float, fps: int) -> float:
        """Shortest length this provider can make that covers `needed_s`."""
        if self.allowed is None:
            frames = max(math.ceil(needed_s * fps - 1e-9), math.ceil(self.min_s * fps))
            return self.snap_frames(frames) / fps
        for option in sorted(self.allowed):
            if option + 1e-9 >= needed_s:
                return float(option)
        raise ValueError(f"{needed_s:.2f} s is longer than the longest allowed length {max(self.allowed):g} s")

    def snap_frames(self, frames: int) -> int:
        """The fewest frames the provider makes that are at least `frames`."""
        if self.frame_step <= 1:
            return frames
        return math.ceil(max(frames - 1, 0) / self.frame_step) * self.frame_step + 1

    @property
    def longest_s(self) -> float:
        return max(self.allowed) if self.allowed else self.max_s

    @property
    def shortest_s(self) -> float:
        return min(self.allowed) if self.allowed else self.min_s


@dataclass(frozen=True)
class SegmentationRules:
    short_video_s: float = 30.0
    short_video_segments: int = 4
    seconds_per_segment: float = 8.0
    min_long_segments: int = 6
    overlap_frames: int = 6
    fade_frames: int = 12  # fade through black takes longer than a crossfade to read
    keyframe_density: float = 0.5  # keyframes per second, for judging and contact sheets

    def design_count(self, total_s: float) -> int:
        if total_s <= self.short_video_s:
            return self.short_video_segments
        return max(self.min_long_segments, math.floor(total_s / self.seconds_per_segment))


DEFAULT_RULES = SegmentationRules()


def segment_count(total_s: float, fps: int, durations: DurationRule, rules: SegmentationRules = DEFAULT_RULES, min_count: int = 1) -> int:
    """The design's count, raised so no segment (plus its crossfade tail) exceeds the
    provider's longest length, and lowered so none is far shorter than its shortest one
    (generating 5 s to keep 1.25 s pays four times over)."""
    count = max(rules.design_count(total_s), min_count)
    total_frames = round(total_s * fps)
    longest_frames = int(durations.longest_s * fps) - rules.fade_frames
    if longest_frames < 1:
        raise ValueError("the provider's longest segment is shorter than one seam")
    count = max(count, math.ceil(total_frames / longest_frames))
    by_shortest = max(1, math.floor(total_s / durations.shortest_s + 1e-9))
    return max(min(count, by_shortest), min_count, math.ceil(total_frames / longest_frames))


def split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def allocate(weights: list[float], count: int) -> list[int]:
    """Share `count` segments among scenes by weight, at least one each (largest remainder)."""
    if count < len(weights):
        raise ValueError(f"{len(weights)} scenes need at least {len(weights)} segments, got {count}")
    spare = count - len(weights)
    total = sum(weights)
    raw = [w / total * spare for w in weights]
    shares = [math.floor(r) for r in raw]
    order = sorted(range(len(weights)), key=lambda i: (raw[i] - shares[i], -i), reverse=True)
    for i in order[: spare - sum(shares)]:
        shares[i] += 1
    return [1 + s for s in shares]


def segment_fit(durations: DurationRule, fps: int, total_s: float, rules: SegmentationRules = DEFAULT_RULES):
    """What _cut_scenes will do with scenes of exact lengths, for the narration's timing to
    plan around: the longest scene one segment holds and the design's segment count."""
    from ..sound.timing import SegmentFit

    return SegmentFit(capacity_s=(int(durations.longest_s * fps) - rules.fade_frames) / fps,
                      design_count=rules.design_count(total_s))


def _cut_scenes(scene_frames: list[int], fps: int, durations: DurationRule,
                rules: SegmentationRules) -> tuple[list[int], list[int]]:
    """(segments per scene, frames per segment) for scenes of exactly these lengths: the
    design's count shared by length, raised so no segment passes the provider's longest
    clip, lowered so none is far shorter than its shortest; a scene's frames split evenly."""
    total_frames = sum(scene_frames)
    count = max(rules.design_count(total_frames / fps), len(scene_frames))
    longest_frames = int(durations.longest_s * fps) - rules.fade_frames
    if longest_frames < 1:
        raise ValueError("the provider's longest segment is shorter than one seam")
    per_scene = []
    for frames, share in zip(scene_frames, allocate([float(f) for f in scene_frames], count)):
        by_shortest = max(1, math.floor(frames / fps / durations.shortest_s + 1e-9))
        per_scene.append(max(min(share, by_shortest), math.ceil(frames / longest_frames)))
    cut = [part for frames, n in zip(scene_frames, per_scene) for part in split_evenly(frames, n)]
    return per_scene, cut


def scene_seed(spec_seed: int, scene_index: int) -> int:
    # One seed per scene: a provider given the same seed keeps a scene's look steadier.
    return (spec_seed * 7919 + scene_index * 104729 + 17) % (2**31)


def segment_prompt(scene: Scene, style: str) -> str:
    cast = ", ".join(c.name for c in scene.characters)
    parts = [scene.description.rstrip(".")]
    if cast:
        parts.append(f"Featuring {cast}")
    parts.append(f"{scene.visual_style or style} style")
    parts.append(f"camera {scene.camera_movement.value.replace('_', ' ')}")
    parts.append(f"{scene.lighting.value.replace('_', ' ')} lighting")
    return ". ".join(parts) + "."


def _seam(previous: Scene, same_scene: bool, rules: SegmentationRules) -> tuple[Transition, int]:
    if same_scene:
        return Transition.CROSSFADE, rules.overlap_frames
    if previous.transition is Transition.CUT:
        return Transition.CUT, 0
    if previous.transition is Transition.FADE:
        return Transition.FADE, rules.fade_frames
    return Transition.CROSSFADE, rules.overlap_frames


def segment_storyboard(
    storyboard: Storyboard,
    spec: RenderSpec,
    durations: DurationRule = DurationRule(),
    rules: SegmentationRules = DEFAULT_RULES,
    scene_frames: list[int] | None = None,
) -> list[SegmentJob]:
    """Cut a storyboard into segment jobs that tile the requested duration exactly.

    `scene_frames` (from the narration's timing) fixes each scene's length exactly: the
    segments are then cut inside those lengths. Without it, scenes are weights and snap to
    whole segments of equal length."""
    scenes = storyboard.scenes
    if scene_frames is not None:
        if len(scene_frames) != len(scenes) or min(scene_frames) < 1:
            raise ValueError(f"{len(scenes)} scenes need as many scene lengths of at least one frame, got {scene_frames}")
        per_scene, frames = _cut_scenes(scene_frames, spec.fps, durations, rules)
        count = len(frames)
    else:
        count = segment_count(spec.duration_s, spec.fps, durations, rules, min_count=len(scenes))
        weights = [s.duration_s or 1.0 for s in scenes]
        per_scene = allocate(weights, count)
        frames = split_evenly(spec.total_frames, count)
    width, height = spec.frame_size

    scene_of: list[int] = [i for i, n in enumerate(per_scene) for _ in range(n)]
    jobs: list[SegmentJob] = []
    start = 0
    scene_frames_done = 0
    for index in range(count):
        scene_index = scene_of[index]
        scene = scenes[scene_index]
        first_in_scene = index == 0 or scene_of[index - 1] != scene_index
        if first_in_scene:
            scene_frames_done = 0
        if index == 0:
            head_transition, head = Transition.CUT, 0
        else:
            head_transition, head = _seam(scenes[scene_of[index - 1]], not first_in_scene, rules)
        if index + 1 < count:
            _, tail = _seam(scene, scene_of[index + 1] == scene_index, rules)
        else:
            tail = 0
        # Tiny segments (a 5 s video has 1.25 s ones) cannot carry a full-length seam.
        head = min(head, frames[index] - 1)
        tail = min(tail, frames[index + 1] - 1) if index + 1 < count else 0
        if jobs and jobs[-1].tail_frames != head:
            head = min(head, jobs[-1].tail_frames)
            jobs[-1] = jobs[-1].model_copy(update={"tail_frames": head})
        if spec.continuity is ContinuityMode.CHAIN:
            conditioned_on = index - 1 if index > 0 else None
        elif spec.continuity is ContinuityMode.AUTO:
            conditioned_on = None if first_in_scene else index - 1
        else:
            conditioned_on = None
        needed_s = (frames[index] + tail) / spec.fps
        jobs.append(
            SegmentJob(
                index=index,
                scene_index=scene_index,
                segment_in_scene=index - scene_of.index(scene_index),
                prompt=segment_prompt(scene, storyboard.style),
                scene=scene,
                start_frame=start,
                frames=frames[index],
                head_frames=head,
                head_transition=head_transition if head else Transition.CUT,
                tail_frames=tail,
                scene_offset_s=scene_frames_done / spec.fps,
                generate_duration_s=durations.fit(needed_s, spec.fps),
                fps=spec.fps,
                width=width,
                height=height,
                seed=scene_seed(spec.seed, scene_index),
                keyframe_density=rules.keyframe_density,
                conditioned_on=conditioned_on,
            )
        )
        start += frames[index]
        scene_frames_done += frames[index]
    return jobs
