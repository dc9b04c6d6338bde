"""Subtitles drawn into the picture: every frame decoded, the cue on screen at its time
drawn at the bottom (Pillow, a CJK-capable font), and re-encoded with the house H.264
settings. Each cue's text is rendered once and blended into the frames it covers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image, ImageDraw

from ..media.encoding import DEFAULT_H264, H264Settings, add_h264_stream, video_frame
from ..media.fonts import load_font
from .cues import Cue


@dataclass(frozen=True)
class Overlay:
    x: int
    y: int
    rgb: np.ndarray  # (h, w, 3) float32
    alpha: np.ndarray  # (h, w, 1) float32, 0..1


def wrap(text: str, font, width: float) -> list[str]:
    """Greedy line breaking by words, and inside a word (CJK text has no spaces) by characters."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:
                if line and font.getlength(line + char) > width:
                    lines.append(line)
                    line = ""
                line += char
        lines.append(line)
    return lines


def render_overlay(text: str, width: int, height: int) -> Overlay:
    """White text with a dark outline, centred near the bottom of a width x height picture."""
    size = max(10, height // 16)
    font = load_font(size, bold=True)
    stroke = max(1, size // 12)
    lines = wrap(text, font, width * 0.9)
    line_h = int(size * 1.25)
    box_w = int(max(font.getlength(line) for line in lines)) + 4 * stroke + 2
    box_h = line_h * len(lines) + 2 * stroke
    image = Image.new("RGBA", (min(box_w, width), min(box_h, height)), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(lines):
        draw.text(
            (image.width / 2, stroke + k * line_h), line, font=font, anchor="ma",
            fill=(255, 255, 255, 255), stroke_width=stroke, stroke_fill=(0, 0, 0, 255),
        )
    pixels = np.asarray(image, dtype=np.float32)
    x = (width - image.width) // 2
    y = max(0, height - image.height - max(2, height // 20))
    return Overlay(x, y, pixels[:, :, :3], pixels[:, :, 3:] / 255.0)


def blend(frame: np.ndarray, overlay: Overlay) -> np.ndarray:
    h, w = overlay.alpha.shape[:2]
    region = frame[overlay.y : overlay.y + h, overlay.x : overlay.x + w].astype(np.float32)
    mixed = region * (1 - overlay.alpha) + overlay.rgb * overlay.alpha
    out = frame.copy()
    out[overlay.y : overlay.y + h, overlay.x : overlay.x + w] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return out


def _cue_at(cues: Sequence[Cue], t: float) -> int | None:
    for index, cue in enumerate(cues):
        if cue.start_s <= t < cue.end_s:
            return index
    return None


class BurnedVideo:
    """An H.264 stream in `container` with `source`'s picture and the cues drawn in."""

    def __init__(self, container, source_stream, cues: Sequence[Cue], settings: H264Settings = DEFAULT_H264):
        ctx = source_stream.codec_context
        self.fps = int(round(float(source_stream.average_rate or 24)))
        self.width, self.height = ctx.width, ctx.height
        self.stream = add_h264_stream(container, self.width, self.height, self.fps, settings)
        self.cues = sorted(cues, key=lambda c: c.start_s)
        self._overlays: dict[int, Overlay] = {}

    def _overlay(self, index: int) -> Overlay:
        if index not in self._overlays:
            self._overlays = {index: render_overlay(self.cues[index].text, self.width, self.height)}  # one at a time
        return self._overlays[index]

    def packets(self, source_container, source_stream) -> Iterator[av.Packet]:
        for k, frame in enumerate(source_container.decode(source_stream)):
            pixels = frame.to_ndarray(format="rgb24")
            t = float(frame.time) if frame.time is not None else k / self.fps
            index = _cue_at(self.cues, t)
            if index is not None:
                pixels = blend(pixels, self._overlay(index))
            yield from self.stream.encode(video_frame(pixels, k, keyframe=k == 0))
        yield from self.stream.encode(None)
