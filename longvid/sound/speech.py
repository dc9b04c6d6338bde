"""The speech engines' one small protocol, and the audio a phrase becomes.

An engine turns one phrase into a SpeechClip: `synthesise(text, language, voice)`. Engines
live one per module (espeak.py, piper_voice.py, gemini_tts.py); engines.py picks one.
Clips are stored as WAV files (the standard library's `wave`), with leading and trailing
silence trimmed, so a clip's first sample is where its words start: that is what makes a
subtitle cue placed at the clip's start line up with the voice.
"""

from __future__ import annotations

import hashlib
import io
import wave
from dataclasses import dataclass
from typing import Protocol

import numpy as np

SILENCE_DBFS = -45.0  # quieter than this (peak, 10 ms windows) counts as silence when trimming
_WINDOW_S = 0.01


class SpeechUnavailable(RuntimeError):
    """The engine cannot speak here (not installed, no voice file, no key); says how to fix it."""


class SpeechFailed(RuntimeError):
    """The engine was there but did not answer with audio; says why."""


@dataclass(frozen=True)
class SpeechClip:
    pcm: np.ndarray  # int16 mono samples
    rate: int
    cost_usd: float = 0.0  # what making it cost (0 for local engines, and for a stored clip)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.rate

    def to_wav(self) -> bytes:
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(np.ascontiguousarray(self.pcm, dtype="<i2").tobytes())
        return out.getvalue()

    @classmethod
    def from_wav(cls, data: bytes, cost_usd: float = 0.0) -> SpeechClip:
        """A clip from WAV bytes (16-bit PCM; several channels are averaged to mono)."""
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getsampwidth() != 2:
                raise SpeechFailed(f"expected 16-bit PCM WAV, got {8 * w.getsampwidth()}-bit")
            channels, rate = w.getnchannels(), w.getframerate()
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if channels > 1:
            samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(axis=1).astype(np.int16)
        return cls(samples.astype(np.int16, copy=False), rate, cost_usd)


class SpeechEngine(Protocol):
    name: str  # "espeak", "piper", "gemini"

    @property
    def identity(self) -> str:
        """What decides the sound besides the text (engine, model, voice): part of a clip's key."""
        ...

    def synthesise(self, text: str, language: str, voice: str | None) -> SpeechClip: ...


def trim_silence(clip: SpeechClip) -> SpeechClip:
    """The clip without the silence before its first and after its last audible window."""
    window = max(1, int(clip.rate * _WINDOW_S))
    count = len(clip.pcm) // window
    if count == 0:
        return clip
    peaks = np.abs(clip.pcm[: count * window].astype(np.int32)).reshape(count, window).max(axis=1)
    loud = np.flatnonzero(peaks > 32768 * 10 ** (SILENCE_DBFS / 20))
    if loud.size == 0:
        return SpeechClip(clip.pcm[:0], clip.rate, clip.cost_usd)
    return SpeechClip(clip.pcm[loud[0] * window: (loud[-1] + 1) * window], clip.rate, clip.cost_usd)


def split_at_silences(clip: SpeechClip, min_silence_s: float) -> list[SpeechClip]:
    """The audible stretches of `clip` separated by at least `min_silence_s` of silence,
    each trimmed (phrases spoken in one go with long pauses between them, cut apart)."""
    window = max(1, int(clip.rate * _WINDOW_S))
    count = len(clip.pcm) // window
    if count == 0:
        return []
    peaks = np.abs(clip.pcm[: count * window].astype(np.int32)).reshape(count, window).max(axis=1)
    loud = np.flatnonzero(peaks > 32768 * 10 ** (SILENCE_DBFS / 20))
    if loud.size == 0:
        return []
    gap = int(min_silence_s / _WINDOW_S)
    breaks = np.flatnonzero(np.diff(loud) > gap)
    starts = [loud[0], *loud[breaks + 1]]
    ends = [*loud[breaks], loud[-1]]
    return [SpeechClip(clip.pcm[a * window:(b + 1) * window], clip.rate) for a, b in zip(starts, ends)]


def clip_key(identity: str, language: str, voice: str | None, text: str) -> str:
    """The content key of a phrase's clip: the same text, language, voice and engine always
    sound the same, so a stored clip is reused instead of being synthesised (or paid) again."""
    return hashlib.sha256("\x00".join([identity, language, voice or "", text]).encode()).hexdigest()[:32]
