"""Pure decisions for durable renders: what identifies a segment's content, and what a
resumed render must do with each segment it finds in the manifest.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable

from ..manifest import RunManifest, SegmentRecord
from ..spec import SegmentJob, SegmentState


def attempt_seed(seed: int, regeneration: int) -> int:
    """The seed for the n-th regeneration of a segment (0: the planned seed)."""
    if regeneration == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{regeneration}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31)


def segment_key(provider: str, model: str, job: SegmentJob, conditioning_png: bytes | None) -> str:
    """Content address of a segment: everything that determines its bytes (provider, model,
    prompt, scene, seed, length, geometry, where its keyframes go, the conditioning image)
    and nothing that does not (its index or place in the final video)."""
    identity = {
        "provider": provider,
        "model": model,
        "prompt": job.prompt,
        "scene": job.scene.model_dump(mode="json"),
        "seed": job.seed,
        "generate_duration_s": job.generate_duration_s,
        "scene_offset_s": job.scene_offset_s,
        "frames": job.frames,
        "head_frames": job.head_frames,
        "fps": job.fps,
        "size": [job.width, job.height],
        "conditioning": hashlib.sha256(conditioning_png).hexdigest() if conditioning_png else None,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class Action(str, enum.Enum):
    KEEP = "keep"  # accepted and its file verifies
    ACCEPT = "accept"  # generated (file verifies) but the crash came before acceptance
    POLL = "poll"  # a provider task was created: wait for it, never create another
    GENERATE = "generate"  # nothing usable yet


def resume_action(record: SegmentRecord, file_ok: Callable[[SegmentRecord], bool], idempotent_submit: bool) -> tuple[Action, str]:
    """What to do with one segment of an interrupted run, and why."""
    state = record.state
    if state in (SegmentState.ACCEPTED, SegmentState.GENERATED, SegmentState.JUDGED):
        if record.clip is not None and file_ok(record):
            return (Action.KEEP, "accepted") if state is SegmentState.ACCEPTED else (Action.ACCEPT, f"{state.value}, file verified")
        return Action.GENERATE, f"{state.value} but its file is missing or fails its checksum"
    if state is SegmentState.SUBMITTED and record.task_id:
        if idempotent_submit:
            return Action.GENERATE, "submitted to a local renderer: render again (free, same result)"
        return Action.POLL, f"task {record.task_id} was created: poll it"
    if state is SegmentState.FAILED:
        return Action.GENERATE, f"failed ({record.error or 'no reason'}): retry"
    return Action.GENERATE, "not started"


def resume_plan(
    manifest: RunManifest, file_ok: Callable[[SegmentRecord], bool], idempotent_submit: bool | Callable[[str], bool]
) -> dict[int, tuple[Action, str]]:
    """Each segment's action. `idempotent_submit` per provider name when segments of one
    render were made by different providers."""
    def idempotent(record: SegmentRecord) -> bool:
        if callable(idempotent_submit):
            return record.state is SegmentState.SUBMITTED and idempotent_submit(record.provider)
        return idempotent_submit

    return {r.index: resume_action(r, file_ok, idempotent(r)) for r in manifest.segments}
