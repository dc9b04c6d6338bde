"""A batch job's output: one row per spec line, the summary document (JSON) and table,
and the job's exit code. Pure data; the job decides where it goes."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

Status = Literal["done", "failed", "invalid", "cancelled"]
# rendered: a new run; resumed: an unfinished run with this id was continued;
# already_done: the run had finished before, nothing was rendered; edited: an edit line made a new version.
Action = Literal["rendered", "resumed", "already_done", "edited"]

SUMMARY_VERSION = 1


@dataclass(frozen=True)
class RenderRow:
    line: int
    status: Status
    run_id: str | None = None
    action: Action | None = None
    prompt: str = ""
    video_s: float | None = None  # length of the finished video
    cost_usd: float | None = None
    wall_s: float = 0.0  # this job's time on the line
    segments: int | None = None
    generated_segments: int | None = None  # made by a provider in this job
    reused_segments: int | None = None  # kept from an earlier job or taken from the cache
    final: str | None = None  # the finished video in the run store
    output: str | None = None  # its copy in --out-dir
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    same_as_line: int | None = None  # an identical earlier line; rendered once

    def duplicate(self, line: int, of: int) -> RenderRow:
        return replace(self, line=line, same_as_line=of, wall_s=0.0)


def _shorten(text: str | None, limit: int = 120) -> str | None:
    """Errors in full in the JSON summary; the table keeps to one or two lines."""
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def counts(rows: list[RenderRow]) -> dict[str, int]:
    out = {"done": 0, "failed": 0, "invalid": 0, "cancelled": 0}
    for row in rows:
        out[row.status] += 1
    return out


def exit_code(rows: list[RenderRow], stopped: bool) -> int:
    """0: every line is done; 130: the job was stopped (re-submit to resume);
    1: a line failed or was invalid (the others are still rendered)."""
    if stopped:
        return 130
    return 0 if rows and all(r.status == "done" for r in rows) else 1


def summary_document(*, job: str, specs: str, store: str, parallel: int, started_at: str, wall_s: float,
                     rows: list[RenderRow], finished: bool) -> dict:
    ordered = sorted(rows, key=lambda r: r.line)
    return {
        "version": SUMMARY_VERSION,
        "job": job,
        "specs": specs,
        "store": store,
        "parallel": parallel,
        "state": "finished" if finished else "running",
        "started_at": started_at,
        "updated_at": now_iso(),
        "wall_s": round(wall_s, 3),
        "counts": counts(ordered),
        "cost_usd": round(sum(r.cost_usd or 0.0 for r in ordered if r.same_as_line is None), 6),
        "renders": [asdict(r) for r in ordered],
    }


def summary_table(rows: list[RenderRow], title: str):
    """A rich Table: status, video length, cost and wall time per line."""
    from rich.table import Table

    table = Table(title=title)
    for column, justify in (("line", "right"), ("status", "left"), ("video", "right"), ("cost", "right"),
                            ("wall", "right"), ("run", "left"), ("result", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    colours = {"done": "green", "failed": "red", "invalid": "red", "cancelled": "yellow"}
    for r in sorted(rows, key=lambda r: r.line):
        note = r.action.replace("_", " ") if r.action else ""
        if r.same_as_line is not None:
            note = f"same as line {r.same_as_line}"
        table.add_row(
            str(r.line),
            f"[{colours[r.status]}]{r.status}[/]" + (f" ({note})" if note else ""),
            f"{r.video_s:.1f} s" if r.video_s is not None else "",
            f"${r.cost_usd:.2f}" if r.cost_usd is not None else "",
            f"{r.wall_s:.1f} s",
            r.run_id or "",
            _shorten(r.error) or r.output or r.final or "",
        )
    return table


def guarded_row(base: RenderRow, work: Callable[[], RenderRow], say: Callable[[str], None]) -> RenderRow:
    """Run one line's `work`, timed; every failure becomes the row's status and error, so
    one line failing never stops the others."""
    from longvid.errors import InputError, LongvidError
    from longvid.runtime.pipeline import Cancelled

    started = time.perf_counter()
    try:
        row = work()
    except Cancelled as exc:
        row = replace(base, status="cancelled", error=f"{exc}; submit the job again to resume")
    except InputError as exc:
        row = replace(base, status="invalid", error=str(exc))
    except LongvidError as exc:
        row = replace(base, status="failed", error=str(exc))
    except Exception as exc:  # a bug or a cluster failure: this line fails, the others go on
        row = replace(base, status="failed", error=f"{exc.__class__.__name__}: {exc}"[:1000])
    row = replace(row, wall_s=round(time.perf_counter() - started, 3))
    say(row.status + (f": {row.error}" if row.error else f" in {row.wall_s:.1f} s, ${row.cost_usd or 0:.2f}"))
    return row
