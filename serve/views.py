"""What the API shows of a run: pure functions from what the store holds (manifest, plan,
the API's side files) to response bodies. No I/O, so every rule is tested in milliseconds.
"""

from __future__ import annotations

import enum
from pathlib import PurePath

from longvid.manifest import RunManifest, RunStatus
from longvid.spec import SegmentState


class ApiStatus(enum.StrEnum):
    """A render's status as the API answers it (models.RenderStatusName): the manifest's,
    except that a planned run shows as queued."""

    QUEUED = "queued"
    RENDERING = "rendering"
    MERGING = "merging"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = frozenset({ApiStatus.QUEUED, ApiStatus.RENDERING, ApiStatus.MERGING})
FINISHED = frozenset({ApiStatus.DONE, ApiStatus.FAILED, ApiStatus.CANCELLED})
INTERRUPTED = "interrupted: the server running this render stopped; resume it to continue (finished segments are kept)"


def effective_status(manifest_status: RunStatus, heartbeat_at: float | None, now: float, stale_after_s: float) -> tuple[ApiStatus, bool]:
    """(API status, interrupted). A render whose worker stopped beating for `stale_after_s`
    is reported failed (it is resumable), so a replica that died does not leave a render
    'rendering' for ever. Runs without a worker record (made by the CLI) are taken as written."""
    status = RunStatus(manifest_status)
    interrupted = not status.finished and heartbeat_at is not None and now - heartbeat_at > stale_after_s
    if interrupted:
        return ApiStatus.FAILED, True
    return (ApiStatus.QUEUED if status is RunStatus.PLANNED else ApiStatus(status.value)), False


def is_active(status: ApiStatus) -> bool:
    return status in ACTIVE


def progress(manifest: RunManifest, status: ApiStatus) -> dict:
    total = len(manifest.segments)
    done = sum(1 for s in manifest.segments if s.state is SegmentState.ACCEPTED)
    if status == ApiStatus.DONE:
        done = total
    percent = 100.0 if status == ApiStatus.DONE else (round(100.0 * done / total, 1) if total else 0.0)
    if status != ApiStatus.DONE:
        percent = min(percent, 99.0)  # merging is still ahead: 100 % means the video is there
    return {"done": done, "total": total, "percent": percent}


def scrub(text: str | None, hidden: list[str], limit: int = 1000) -> str | None:
    """`text` without server paths (each of `hidden` becomes '<store>'), cut to `limit`."""
    if text is None:
        return None
    for secret in sorted((h for h in hidden if h), key=len, reverse=True):
        text = text.replace(secret, "<store>")
    return text[:limit]


def scrub_html(page: str, hidden: list[str]) -> str:
    """An HTML page without server paths: each of `hidden`, escaped as the page's template
    escapes text, becomes '<store>' (so error texts and warnings anywhere in it are covered)."""
    from markupsafe import escape

    for secret in sorted((h for h in hidden if h), key=len, reverse=True):
        page = page.replace(str(escape(secret)), "&lt;store&gt;")
    return page


def visible_to(owner: str, request: dict | None, sees_every_run: bool = False) -> bool:
    """Whether the caller `owner` (a token fingerprint) may see a run: only renders it asked
    for (request.json's owner). Runs without one (CLI, batch) belong to no token. A tokenless,
    local-only server has one user, who sees the whole store (`sees_every_run`)."""
    return sees_every_run or (request is not None and request.get("owner") == owner)


def spec_view(manifest: RunManifest) -> dict:
    """The spec as sent back: reference images by content name, never by server path."""
    data = manifest.spec.model_dump(mode="json")
    data["reference_images"] = [PurePath(p).name for p in data.get("reference_images", [])]
    data.pop("storyboard_file", None)
    return data


def render_view(run_id: str, manifest: RunManifest, heartbeat_at: float | None, now: float, stale_after_s: float,
                links: dict, hidden: list[str]) -> dict:
    status, interrupted = effective_status(manifest.status, heartbeat_at, now, stale_after_s)
    error = INTERRUPTED if interrupted else scrub(manifest.error, hidden)
    return {
        "id": run_id,
        "status": status,
        "prompt": manifest.spec.prompt,
        "created_at": manifest.created_at,
        "spec": spec_view(manifest),
        "progress": progress(manifest, status),
        "segments": [
            {
                "index": r.index, "scene": r.scene_index, "state": r.state.value, "provider": r.provider,
                "cost_usd": r.cost_usd, "attempts": r.attempts, "regenerations": r.regenerations,
                "scores": [attempt.model_dump(mode="json") for attempt in r.scores], "error": scrub(r.error, hidden),
            }
            for r in manifest.segments
        ],
        "cost_usd": manifest.cost_usd,
        "warnings": [scrub(w, hidden) for w in manifest.warnings],
        "error": error,
        "links": links,
    }


def summary_view(run_id: str, manifest: RunManifest, heartbeat_at: float | None, now: float, stale_after_s: float) -> dict:
    status, _ = effective_status(manifest.status, heartbeat_at, now, stale_after_s)
    return {
        "id": run_id,
        "status": status,
        "prompt": manifest.spec.prompt,
        "created_at": manifest.created_at,
        "duration_s": manifest.duration_s,  # as planned: narration may have stretched it
        "cost_usd": manifest.cost_usd,
        "progress": progress(manifest, status),
    }


def resume_refusal(status: ApiStatus, edit_pending: bool = False) -> tuple[str, str] | None:
    """Why a run cannot be resumed now (code, message), or None when it can. A finished run
    with an unfinished edit (its driver died after the video, before filing the version, or
    before applying it) resumes into that edit's version."""
    if is_active(status):
        return "already_running", "this render is still running; cancel it first or wait for it to finish"
    if status == ApiStatus.DONE and not edit_pending:
        return "already_done", "this render is finished; its video is at links.video"
    return None


def cancel_refusal(status: ApiStatus) -> tuple[str, str] | None:
    if not is_active(status):
        return "already_finished", f"this render is already {status}; resume it with POST /v1/renders/{{id}}/resume"
    return None
