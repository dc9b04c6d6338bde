"""The normalisation step: an arrived segment re-encoded into the house format (see
media/normalise.py), run as a Ray task beside the generation of the others, or inline.

The bytes travel as the task's argument and result, not as paths: the worker may be on
another node than the run folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from ..media.encoding import NORMALISE_H264
from ..media.frames import frame_png
from ..media.normalise import HouseFormat, house_format_problem, normalise_clip
from ..spec import SegmentJob


def house_format(job: SegmentJob, threads: int = 0) -> HouseFormat:
    """The format the merge copies for this segment: its frames and crossfade tail at the
    output size and rate, with IDR frames where its copy range starts (after the head it
    blends with the previous segment) and ends (where its own tail starts); encoded with
    NORMALISE_H264, whose parameter sets are the merge's own (whatever `threads`: x264's
    threads change its speed, not the parameter sets)."""
    return HouseFormat(width=job.width, height=job.height, fps=job.fps, frames=job.needed_frames,
                       keyframes=(job.head_frames, job.frames), settings=replace(NORMALISE_H264, threads=threads))


def needs_normalising(mp4: bytes, job: SegmentJob) -> str | None:
    """Why this clip must be normalised, or None when it already is in the house format."""
    try:
        return house_format_problem(mp4, house_format(job))
    except Exception as exc:  # av.error.*: unreadable headers; the normalisation task says what is wrong
        return f"unreadable headers ({exc.__class__.__name__})"


@dataclass(frozen=True)
class NormalisedSegment:
    index: int
    mp4: bytes
    seam_png: bytes | None  # from the normalised file: the frame the next segment starts from
    seconds: float


def normalise_segment(job: SegmentJob, mp4: bytes, want_seam: bool, threads: int = 0) -> NormalisedSegment:
    """`threads`: x264's (0: its own choice, a thread and a half per core). One when other
    normalisations run beside it: each holds the one core Ray reserved for it, and at 360p
    one thread even takes less wall time than x264's frame threads (a fifth less CPU)."""
    started = time.perf_counter()
    normalised = normalise_clip(mp4, house_format(job, threads))
    seam = frame_png(normalised, job.frames) if want_seam else None
    return NormalisedSegment(job.index, normalised, seam, time.perf_counter() - started)
