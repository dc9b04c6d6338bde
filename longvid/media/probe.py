"""What a video file holds, measured by decoding it (container headers can lie)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .frames import count_frames, open_video


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    pix_fmt: str
    has_audio: bool

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


def probe(path: Path) -> VideoInfo:
    frames = count_frames(path, trust_header=False)
    with open_video(path) as container:
        stream = container.streams.video[0]
        return VideoInfo(
            frames=frames,
            fps=float(stream.average_rate or 0),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt or "",
            has_audio=bool(container.streams.audio),
        )
