"""Review artefacts for a render: contact_sheet.png and report.html in its run folder.

    names = write_review(run, manifest, plan)            # after a render (or for any run)
    html = report_html(run, manifest, plan, video_src=signed_video_url)  # served over HTTP
"""

from __future__ import annotations

import json

from ..manifest import RunManifest, RunPlan
from ..runtime.layout import CONTACT_SHEET, FINAL, REPORT, REPORT_HTML
from ..runtime.store import RunFolder
from .contact_sheet import contact_sheet_png, draw_contact_sheet
from .html_report import render_report
from .layout import SheetLayout
from .summary import (
    AttemptSummary,
    RunSummary,
    SegmentSummary,
    keyframe_indices,
    summarise,
)


def _report_json(run: RunFolder) -> dict | None:
    if not run.exists(REPORT):
        return None
    try:
        return json.loads(run.read_bytes(REPORT))
    except ValueError:  # a damaged report.json costs the timings section, not the report
        return None


def report_html(run: RunFolder, manifest: RunManifest, plan: RunPlan, video_src: str = FINAL, sheet_png: bytes | None = None) -> str:
    """The HTML report as text. `video_src` is the `<video>` source: FINAL for a report
    read beside the video, or a URL (e.g. a signed API link) for one served over HTTP."""
    if sheet_png is None and run.exists(CONTACT_SHEET):
        sheet_png = run.read_bytes(CONTACT_SHEET)
    video = video_src if run.exists(FINAL) else None
    return render_report(summarise(manifest, plan), plan, sheet_png, video, _report_json(run))


def write_review(run: RunFolder, manifest: RunManifest, plan: RunPlan, video_src: str = FINAL, thumbs_per_row: int = 5,
                 sheet_png: bytes | None = None) -> list[str]:
    """Write contact_sheet.png and report.html into the run folder (atomically, like every
    other file there); returns their names relative to the folder. `sheet_png`: the contact
    sheet already drawn (by `contact_sheet_png`, e.g. while the video was still merging)."""
    summary = summarise(manifest, plan)
    sheet = sheet_png if sheet_png is not None else contact_sheet_png(run, summary, thumbs_per_row)
    run.write_bytes(CONTACT_SHEET, sheet)
    video = video_src if run.exists(FINAL) else None
    html = render_report(summary, plan, sheet, video, _report_json(run))
    run.write_bytes(REPORT_HTML, html.encode("utf-8"))
    return [CONTACT_SHEET, REPORT_HTML]


__all__ = [
    "CONTACT_SHEET",
    "REPORT_HTML",
    "AttemptSummary",
    "RunSummary",
    "SegmentSummary",
    "SheetLayout",
    "draw_contact_sheet",
    "keyframe_indices",
    "report_html",
    "summarise",
    "write_review",
]
