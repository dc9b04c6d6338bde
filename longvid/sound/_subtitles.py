"""The soft subtitle track: cues written as SubRip by the `srt` library, read back by
FFmpeg's SubRip decoder (which turns them into ASS events and supplies the ASS header the
mov_text encoder needs), and encoded by FFmpeg's mov_text encoder for MP4."""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import srt

from .cues import Cue

TIME_BASE = Fraction(1, 1000)  # SubRip's millisecond clock


@dataclass(frozen=True)
class _Event:
    pts: int  # ms
    duration: int  # ms
    ass: bytes


def _as_srt(cues: Sequence[Cue]) -> bytes:
    subtitles = [
        srt.Subtitle(k + 1, datetime.timedelta(seconds=c.start_s), datetime.timedelta(seconds=c.end_s), c.text)
        for k, c in enumerate(sorted(cues, key=lambda c: c.start_s))
    ]
    return srt.compose(subtitles).encode("utf-8")


def _ass_events(cues: Sequence[Cue]) -> tuple[bytes, list[_Event]]:
    with av.open(io.BytesIO(_as_srt(cues)), format="srt") as source:
        stream = source.streams.subtitles[0]
        decoder = stream.codec_context
        decoder.open(strict=False)
        events = []
        for packet in source.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            for rect in decoder.decode2(packet) or ():
                events.append(_Event(int(packet.pts), int(packet.duration or 0), bytes(rect.ass)))
        return bytes(decoder.subtitle_header or b""), events


class MovTextTrack:
    """An MP4 subtitle stream carrying `cues`, and its packets in time order."""

    def __init__(self, container, cues: Sequence[Cue], language: str | None = None):
        header, self._events = _ass_events(cues)
        self.stream = container.add_stream("mov_text")
        self.stream.codec_context.subtitle_header = header
        self.stream.time_base = TIME_BASE
        if language:
            self.stream.metadata["language"] = language

    def packets(self) -> Iterator[av.Packet]:
        encoder = self.stream.codec_context
        for event in self._events:
            packet = encoder.encode_subtitle(av.subtitles.subtitle.SubtitleSet.create(event.ass, 0, event.duration, event.pts))
            packet.stream = self.stream
            packet.time_base = TIME_BASE
            packet.pts = packet.dts = event.pts
            packet.duration = event.duration
            yield packet


def read_mov_text(path) -> list[Cue]:
    """The cues of a file's first subtitle track (for tests and checks)."""
    cues = []
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        for packet in container.demux(stream):
            if packet.size <= 2 or packet.pts is None:  # mov_text pads gaps with empty samples
                continue
            start = float(packet.pts * packet.time_base)
            end = start + float((packet.duration or 0) * packet.time_base)
            for rect in stream.codec_context.decode2(packet) or ():
                cues.append(Cue(start, end, bytes(rect.dialogue).decode("utf-8")))
    return cues
