"""A batch job's input: one RenderSpec per JSONL line, each with a stable run id.

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

from longvid.errors import describe_validation_error
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
    try:
        spec = RenderSpec.model_validate(data)
    except ValidationError as exc:
        return SpecLine(number, error=describe_spec_error(exc))
    try:
        run_id = stable_run_id(job_name, spec)
    except OSError as exc:  # a named file vanished between validation and hashing
        return SpecLine(number, error=f"cannot read a file the spec names: {exc}")
    return SpecLine(number, spec=spec, run_id=run_id)


def parse_spec_lines(text: str, job_name: str) -> list[SpecLine]:
    """Every non-blank line, numbered as an editor numbers them (from 1)."""
    return [parse_line(n, line, job_name) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
