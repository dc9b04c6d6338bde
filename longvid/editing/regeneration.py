"""Which segments an edit makes again, and which it keeps: a pure decision over the run's
segment jobs before and after the edit.

The rules (README "Editing a finished run"):
- a segment whose job is unchanged (same scene, prompt, slice, length and geometry; its
  place in the timeline may move) keeps its accepted clip, seed included;
- a changed one (its scene was edited), a reseeded one and a replaced one are made again;
- in chain mode a kept segment whose predecessor is made again starts from a new frame, so
  it is made again too, and so on down the chain;
- a locked segment is always kept and stops the chain: the segments after it start from
  its (unchanged) last frame. An edit that would change a locked segment is refused.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from ..errors import InputError
from ..spec import SegmentJob


class Decision(str, enum.Enum):
    KEEP = "keep"  # its accepted clip is reused as it is
    LOCKED = "locked"  # kept because the user locked it
    REGENERATE = "regenerate"  # made again (a provider task, or a cache hit)
    REPLACE = "replace"  # the user's clip


@dataclass(frozen=True)
class RegenerationPlan:
    jobs: list[SegmentJob]  # the new version's jobs (kept ones with their old seed)
    decisions: dict[int, tuple[Decision, str]]  # new index -> (decision, why)
    sources: dict[int, int]  # new index -> the old segment whose clip it keeps

    def indices(self, *decisions: Decision) -> list[int]:
        return sorted(i for i, (d, _) in self.decisions.items() if d in decisions)

    @property
    def regenerated(self) -> list[int]:
        return self.indices(Decision.REGENERATE)


# What may differ between two jobs that ask for the same clip: their place in the timeline,
# and what their scene says (the narration is spoken over the video, never part of its prompt).
_NOT_CONTENT = {"index": True, "start_frame": True, "seed": True, "conditioned_on": True, "scene": {"narration": True}}


def same_content(old: SegmentJob, new: SegmentJob) -> bool:
    """Whether two jobs ask for the same clip, wherever they sit in the timeline."""
    return (old.model_dump(exclude=_NOT_CONTENT) == new.model_dump(exclude=_NOT_CONTENT)
            and (old.conditioned_on is None) == (new.conditioned_on is None))


def edit_seed(seed: int, version: int) -> int:
    """The seed of a segment regenerated without a given seed in `version` (deterministic, so
    a resumed edit asks for the same clip)."""
    digest = hashlib.sha256(f"edit:{seed}:{version}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31)


def plan_regeneration(old_jobs: list[SegmentJob], new_jobs: list[SegmentJob], *, reseeds: dict[int, int | None],
                      replaced: set[int], locked: set[int], version: int) -> RegenerationPlan:
    """Each new segment's decision. `reseeds`: segment -> new seed (None: derive one);
    `locked`: the segments locked once this edit's locks and unlocks apply."""
    by_place = {(j.scene_index, j.segment_in_scene): j for j in old_jobs}
    jobs: list[SegmentJob] = []
    decisions: dict[int, tuple[Decision, str]] = {}
    sources: dict[int, int] = {}
    for job in sorted(new_jobs, key=lambda j: j.index):
        old = by_place.get((job.scene_index, job.segment_in_scene))
        unchanged = old is not None and same_content(old, job)
        if unchanged:
            job = job.model_copy(update={"seed": old.seed})
            sources[job.index] = old.index
        if job.index in locked:
            if not unchanged:
                raise InputError(f"segment {job.index} is locked but this edit changes its scene {job.scene_index + 1}; "
                                 f"unlock it first (--unlock {job.index})")
            decisions[job.index] = (Decision.LOCKED, "locked")
        elif job.index in replaced:
            decisions[job.index] = (Decision.REPLACE, "replaced by the user's clip")
        elif job.index in reseeds:
            seed = reseeds[job.index]
            job = job.model_copy(update={"seed": seed if seed is not None else edit_seed(job.seed, version)})
            decisions[job.index] = (Decision.REGENERATE, f"regenerated with seed {job.seed}")
        elif not unchanged:
            decisions[job.index] = (Decision.REGENERATE, f"scene {job.scene_index + 1} changed")
        elif job.conditioned_on is not None and (decisions[job.conditioned_on][0] in (Decision.REGENERATE, Decision.REPLACE)
                                                 or sources.get(job.conditioned_on) != old.conditioned_on):
            decisions[job.index] = (Decision.REGENERATE, f"its first frame changed (chained to segment {job.conditioned_on})")
        else:
            decisions[job.index] = (Decision.KEEP, "unchanged")
        jobs.append(job)
    return RegenerationPlan(jobs, decisions, sources)
