"""Subtitle files from the narration's cues: SubRip written by `srt`, WebVTT by
`webvtt-py` (read from that SubRip), so no timestamp format is written by hand."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import timedelta

import srt
import webvtt

from .cues import Cue


def to_srt(cues: Sequence[Cue]) -> str:
    return srt.compose([
        srt.Subtitle(index=i, start=timedelta(seconds=c.start_s), end=timedelta(seconds=c.end_s), content=c.text)
        for i, c in enumerate(cues, 1)
    ])


def to_vtt(cues: Sequence[Cue]) -> str:
    if not cues:
        return "WEBVTT\n"
    captions = webvtt.WebVTT.from_buffer(io.StringIO(to_srt(cues)), format="srt")
    return captions.content


def read_srt(text: str) -> list[Cue]:
    """Cues back from SubRip text (tests and resume read what was written)."""
    return [Cue(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in srt.parse(text)]
