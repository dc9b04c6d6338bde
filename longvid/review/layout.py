"""Where everything sits on a contact sheet: pure geometry, no pixels.

A sheet is a header band, then one row per segment: its keyframe thumbnails (each with a
time caption under it) on the left, its text panel on the right. Every row has the same
height, so a reader (or a test) can find segment i's k-th thumbnail from the numbers alone.
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[int, int, int, int]  # left, top, right, bottom (right/bottom exclusive)

MARGIN = 16
GAP = 8
CAPTION_H = 18
ROW_PAD = 10
HEADER_H = 112
TEXT_W = 500
LINE_H = 19
TEXT_LINES = 9  # headline, 2 of scene text, production, up to 5 attempt / error lines


def thumbnail_size(frame_width: int, frame_height: int, longest_side: int = 192) -> tuple[int, int]:
    """The frame scaled so its longest side is `longest_side` (192 x 108 for 16:9)."""
    scale = longest_side / max(frame_width, frame_height)
    return max(1, round(frame_width * scale)), max(1, round(frame_height * scale))


@dataclass(frozen=True)
class SheetLayout:
    segments: int
    thumbs_per_row: int
    thumb_width: int
    thumb_height: int

    @classmethod
    def for_frames(cls, segments: int, frame_width: int, frame_height: int, thumbs_per_row: int = 5, longest_side: int = 192) -> SheetLayout:
        width, height = thumbnail_size(frame_width, frame_height, longest_side)
        return cls(segments, thumbs_per_row, width, height)

    @property
    def row_height(self) -> int:
        return max(self.thumb_height + CAPTION_H, TEXT_LINES * LINE_H) + 2 * ROW_PAD

    @property
    def text_left(self) -> int:
        return MARGIN + self.thumbs_per_row * self.thumb_width + (self.thumbs_per_row - 1) * GAP + MARGIN

    @property
    def size(self) -> tuple[int, int]:
        return self.text_left + TEXT_W + MARGIN, HEADER_H + self.segments * self.row_height + MARGIN

    def row_box(self, row: int) -> Box:
        top = HEADER_H + row * self.row_height
        return 0, top, self.size[0], top + self.row_height

    def thumb_box(self, row: int, slot: int) -> Box:
        top = self.row_box(row)[1] + ROW_PAD
        left = MARGIN + slot * (self.thumb_width + GAP)
        return left, top, left + self.thumb_width, top + self.thumb_height

    def caption_origin(self, row: int, slot: int) -> tuple[int, int]:
        left, _, _, bottom = self.thumb_box(row, slot)
        return left, bottom + 2

    def text_box(self, row: int) -> Box:
        top = self.row_box(row)[1] + ROW_PAD
        return self.text_left, top, self.text_left + TEXT_W, top + TEXT_LINES * LINE_H
