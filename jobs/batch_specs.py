"""A batch job's input: one RenderSpec per JSONL line, each with a stable run id, or an
edit of an existing run (`{"run_id": "...", "edits": [...]}`, longvid/editing).

A line's run id depends only on the job's name and on what the line asks for (the
validated spec, plus the bytes of any file it names), never on when the job ran. That is
what makes a re-submitted job resume: the same line finds its run folder again, and a
finished run is not rendered twice. Identical lines share one render.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from longvid.editing import EditRequest
from longvid.errors import InputError, describe_validation_error
from longvid.spec import RenderSpec

EXAMPLE_LINE = '{"prompt": "a red fox in the snow", "duration_s": 30}'
MAX_SLUG = 40  # run ids stay well under the store's and the HTTP API's limits


@dataclass(frozen=True)
class SpecLine:
    """One non-blank line of the file: a spec and its run id, or why it was refused."""

    line: int
    spec: RenderSpec | None = None
    run_id: str | None = None
    error: str | None = None
    edit: EditRequest | None = None  # an edit line: the run_id names the run to edit
    edit_key: str | None = None  # the edit's idempotency key: a re-submitted line edits once

    @property
    def work_key(self) -> str | None:
        """Identical lines share one piece of work (a render, or one edit of one run)."""
        return self.run_id if self.edit is None else f"{self.run_id}#{self.edit_key}"


def job_slug(name: str) -> str:
    """A job name made safe for run ids: `May campaign/v2` -> `may-campaign-v2`."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")[:MAX_SLUG].strip("-._")
    return slug or "batch"


def spec_digest(spec: RenderSpec) -> str:
    """What the spec asks for, as a hash: its canonical JSON (defaults filled in, key
    order and whitespace irrelevant) and the contents of the files it names, so an edited
    storyboard or reference image is a new render rather than a stale resume."""
    digest = hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True, ensure_ascii=False).encode())
    for path in [*spec.reference_images, *([spec.storyboard_file] if spec.storyboard_file else [])]:
        digest.update(b"\0" + hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def stable_run_id(job_name: str, spec: RenderSpec) -> str:
    return f"{job_slug(job_name)}-{spec_digest(spec)[:16]}"


def describe_spec_error(exc: ValidationError) -> str:
    """Like describe_validation_error, but an unknown key names the keys that exist."""
    unknown = [".".join(str(p) for p in e["loc"]) for e in exc.errors() if e["type"] == "extra_forbidden"]
    if unknown and len(unknown) == len(exc.errors()):
        return f"unknown field {', '.join(unknown)}; a spec may have: {', '.join(RenderSpec.model_fields)}"
    return describe_validation_error(exc)


def parse_line(number: int, text: str, job_name: str) -> SpecLine:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return SpecLine(number, error=f"not valid JSON ({exc.msg} at column {exc.colno}); "
                                      f"each line must be one JSON object, e.g. {EXAMPLE_LINE}")
    if not isinstance(data, dict):
        return SpecLine(number, error=f"expected a JSON object, got {type(data).__name__}; e.g. {EXAMPLE_LINE}")
    if "edits" in data:
        return parse_edit_line(number, data, job_name)
    try:
        spec = RenderSpec.model_validate(data)
    except ValidationError as exc:
        return SpecLine(number, error=describe_spec_error(exc))
    try:
        run_id = stable_run_id(job_name, spec)
    except OSError as exc:  # a named file vanished between validation and hashing
        return SpecLine(number, error=f"cannot read a file the spec names: {exc}")
    return SpecLine(number, spec=spec, run_id=run_id)


EDIT_FIELDS = ("run_id", "edits", "budget_usd")


def parse_edit_line(number: int, data: dict, job_name: str) -> SpecLine:
    """`{"run_id": ..., "edits": [...], "budget_usd": ...}`: an edit of a finished run. Its key
    hashes the job's name, the run, the edits and any replacement clip's bytes."""
    from longvid.editing import parse_edit_request
    from longvid.runtime.run_ids import check_run_id

    unknown = sorted(set(data) - set(EDIT_FIELDS))
    if unknown:
        return SpecLine(number, error=f"unknown field {', '.join(unknown)}; an edit line may have: {', '.join(EDIT_FIELDS)}")
    try:
        run_id = check_run_id(str(data.get("run_id") or ""))
        request = parse_edit_request({k: v for k, v in data.items() if k != "run_id"}, "edits")
    except (InputError, ValueError) as exc:
        return SpecLine(number, error=f"edit line: {exc}")
    digest = hashlib.sha256(json.dumps([job_slug(job_name), run_id, request.model_dump(mode="json")], sort_keys=True).encode())
    try:
        for clip in request.replacements.values():
            digest.update(b"\0" + hashlib.sha256(Path(clip).read_bytes()).digest())
    except OSError as exc:
        return SpecLine(number, run_id=run_id, error=f"cannot read a replacement clip: {exc}")
    return SpecLine(number, run_id=run_id, edit=request, edit_key=f"batch:{digest.hexdigest()[:24]}")


def parse_spec_lines(text: str, job_name: str) -> list[SpecLine]:
    """Every non-blank line, numbered as an editor numbers them (from 1)."""
    return [parse_line(n, line, job_name) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
