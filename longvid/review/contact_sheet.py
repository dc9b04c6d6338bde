"""The contact sheet: one row per segment, its keyframes decoded from its own video file,
with the scene text, provider, cost and the judge's scores beside them.

Regenerated segments get an amber bar and a "regenerated" badge, failed attempts are listed
in red, failed segments get a red bar: a reviewer sees at a glance where the judge had to
work and what it found.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

# One font lookup for every picture we draw text on: it prefers a CJK-capable face (Noto
# Sans CJK), so Chinese scene text is drawn, not shown as boxes.
from ..media.fonts import load_font
from ..media.frames import decode_frames
from ..runtime.store import RunFolder
from .layout import HEADER_H, LINE_H, MARGIN, TEXT_LINES, SheetLayout
from .summary import RunSummary, SegmentSummary, format_time, keyframe_indices

BACKGROUND = (250, 250, 248)
ROW_SHADE = (240, 241, 243)
INK = (28, 30, 34)
MUTED = (96, 102, 112)
PASS = (22, 122, 60)
FAIL = (190, 32, 38)
REGENERATED = (214, 134, 0)
PLACEHOLDER = (205, 208, 214)
STATE_BAR = {"accepted": PASS, "failed": FAIL}

def fit_lines(text: str, font, width: int, max_lines: int) -> list[str]:
    """`text` wrapped to `width` pixels in at most `max_lines` lines, the last one ending in
    an ellipsis when something was cut. Words wider than a line (or scripts written without
    spaces) are broken between characters."""
    words = text.split()
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
            current = ""
        while font.getlength(word) > width:  # break the word itself
            cut = max(1, _longest_prefix(word, font, width))
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    if len(lines) <= max_lines:
        return lines
    kept = lines[:max_lines]
    last = kept[-1]
    while last and font.getlength(last + "…") > width:
        last = last[:-1]
    kept[-1] = last.rstrip() + "…"
    return kept


def _longest_prefix(word: str, font, width: int) -> int:
    low, high = 0, len(word)
    while low < high:
        mid = (low + high + 1) // 2
        if font.getlength(word[:mid]) <= width:
            low = mid
        else:
            high = mid - 1
    return low


def draw_contact_sheet(run: RunFolder, summary: RunSummary, thumbs_per_row: int = 5) -> tuple[Image.Image, SheetLayout]:
    layout = SheetLayout.for_frames(len(summary.segments), summary.width, summary.height, thumbs_per_row)
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    _draw_header(draw, summary, layout)
    for row, segment in enumerate(summary.segments):
        _draw_row(sheet, draw, run, segment, layout, row)
    return sheet, layout


def contact_sheet_png(run: RunFolder, summary: RunSummary, thumbs_per_row: int = 5) -> bytes:
    sheet, _ = draw_contact_sheet(run, summary, thumbs_per_row)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _draw_header(draw: ImageDraw.ImageDraw, summary: RunSummary, layout: SheetLayout) -> None:
    width = layout.size[0] - 2 * MARGIN
    title_font, body, small = load_font(22, bold=True), load_font(15), load_font(13)
    y = MARGIN
    draw.text((MARGIN, y), fit_lines(summary.title, title_font, width, 1)[0] if summary.title else "", font=title_font, fill=INK)
    y += 30
    for line in fit_lines(f"Prompt: {summary.prompt}", body, width, 2):
        draw.text((MARGIN, y), line, font=body, fill=INK)
        y += LINE_H
    facts = [
        f"run {summary.run_id}",
        summary.status,
        f"{summary.duration_s:g} s",
        f"{summary.width}×{summary.height} @ {summary.fps} fps",
        f"{len(summary.segments)} segments",
        f"${summary.cost_usd:.2f}",
        f"{summary.regenerated_segments} regenerated",
        f"planner {summary.planner}",
    ]
    draw.text((MARGIN, HEADER_H - 26), fit_lines(" · ".join(facts), small, width, 1)[0], font=small, fill=MUTED)


def _draw_row(sheet: Image.Image, draw: ImageDraw.ImageDraw, run: RunFolder, segment: SegmentSummary, layout: SheetLayout, row: int) -> None:
    left, top, right, bottom = layout.row_box(row)
    if row % 2 == 0:
        draw.rectangle((left, top, right - 1, bottom - 1), fill=ROW_SHADE)
    bar = REGENERATED if segment.regenerated and segment.state != "failed" else STATE_BAR.get(segment.state, MUTED)
    draw.rectangle((0, top, 5, bottom - 1), fill=bar)
    _draw_thumbnails(sheet, draw, run, segment, layout, row)
    _draw_text(draw, segment, layout, row)


def _draw_thumbnails(sheet, draw, run: RunFolder, segment: SegmentSummary, layout: SheetLayout, row: int) -> None:
    indices = keyframe_indices(segment.frames, layout.thumbs_per_row)
    thumbs, problem = {}, "no video yet"
    if segment.video_path is not None and run.exists(segment.video_path):
        import av

        try:
            # Scaled down as they are decoded: only this row's small thumbnails are ever held.
            thumbs = decode_frames(run.local_path(segment.video_path), indices, size=(layout.thumb_width, layout.thumb_height))
        except (OSError, ValueError, av.FFmpegError):
            problem = "unreadable video"
    elif segment.video_path is not None:
        problem = "video file missing"
    caption_font, placeholder_font = load_font(12), load_font(13)
    for slot, frame_index in enumerate(indices):
        box = layout.thumb_box(row, slot)
        if frame_index in thumbs:
            sheet.paste(Image.fromarray(thumbs[frame_index]), box[:2])
        else:
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=PLACEHOLDER)
            draw.text((box[0] + 8, box[1] + 8), problem if slot == 0 else "", font=placeholder_font, fill=MUTED)
        at = format_time(segment.start_s + frame_index / segment.fps)
        draw.text(layout.caption_origin(row, slot), f"{at}  (frame {frame_index})", font=caption_font, fill=MUTED)


def _draw_text(draw: ImageDraw.ImageDraw, segment: SegmentSummary, layout: SheetLayout, row: int) -> None:
    left, top, right, _ = layout.text_box(row)
    width = right - left
    bold, body, small = load_font(15, bold=True), load_font(14), load_font(13)
    lines: list[tuple[str, object, tuple[int, int, int]]] = [(segment.headline(), bold, INK)]
    lines += [(text, body, INK) for text in fit_lines(segment.scene_text, body, width, 2)]
    lines.append((segment.production(), small, MUTED))
    # What the judge said, newest last; a failed attempt gets a second line for its reasons
    # (the "regenerated" badge is drawn apart, below).
    notes: list[tuple[str, object, tuple[int, int, int]]] = []
    for attempt in segment.judged:
        colour = PASS if attempt.passed else FAIL
        notes += [(line, small, colour) for line in fit_lines(attempt.describe(), small, width, 1 if attempt.passed else 2)]
    if segment.error:
        notes += [(line, small, FAIL) for line in fit_lines(f"error: {segment.error}", small, width, 2)]
    room = TEXT_LINES - len(lines)
    if len(notes) > room:  # keep the newest; say how much is in the report
        hidden = len(notes) - (room - 1)
        notes = [(f"{hidden} earlier line(s): see report.html", small, MUTED), *notes[len(notes) - (room - 1):]]
    lines += notes
    y = top
    for text, font, colour in lines[:TEXT_LINES]:
        draw.text((left, y), text, font=font, fill=colour)
        y += LINE_H
    if segment.regenerated:  # a badge in the row's top right corner, visible from afar
        badge = f"REGENERATED ×{segment.regenerations}"
        badge_font = load_font(12, bold=True)
        badge_w = int(badge_font.getlength(badge)) + 12
        x = right - badge_w
        draw.rounded_rectangle((x, top, right, top + 18), radius=4, fill=REGENERATED)
        draw.text((x + 6, top + 2), badge, font=badge_font, fill=(255, 255, 255))

