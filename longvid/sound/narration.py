"""The speak step: a storyboard's narration synthesised phrase by phrase, timed, recorded,
and assembled into the narration track and subtitle files.

Every clip is stored under its content key (speech.clip_key) before it is used: first in the
store-wide speech cache (so `longvid plan` followed by `longvid render`, or a second render
of the same words, pays once), then in the run folder (`speech/<key>.wav`), from which a
resumed run reads it back: a stored phrase is never synthesised, or paid for, twice.
`NarrationRecord` (in plan.json) holds what the run needs to rebuild the track and cues.
"""

from __future__ import annotations

import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from .cues import Cue
from .phrases import estimated_seconds, split_phrases
from .speech import SpeechClip, SpeechEngine, clip_key
from .timing import NarrationTiming, PlacedPhrase, SegmentFit, time_narration

TRACK_RATE = 24000  # narration.wav: 24 kHz mono 16-bit (Gemini's own rate; espeak's 22.05 kHz is resampled)
SPEAK_WORKERS = 4  # phrases synthesised at once (espeak processes, or Gemini requests)


class ClipStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...


class StoreSpeechCache:
    """Clips beside the runs, in the store's state folder (local or S3): speech/ab/<key>.wav."""

    def __init__(self, store):
        self.store = store

    def get(self, key: str) -> bytes | None:
        return self.store.get_state(f"speech/{key[:2]}/{key}.wav")

    def put(self, key: str, data: bytes) -> None:
        self.store.put_state(f"speech/{key[:2]}/{key}.wav", data)


class RunSpeechFolder:
    """A run's own clips: speech/<key>.wav in the run folder."""

    def __init__(self, run):
        self.run = run

    def get(self, key: str) -> bytes | None:
        path = speech_path(key)
        return self.run.read_bytes(path) if self.run.exists(path) else None

    def put(self, key: str, data: bytes) -> None:
        self.run.write_bytes(speech_path(key), data)


def speech_path(key: str) -> str:
    return f"speech/{key}.wav"


class PhraseRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scene: int
    text: str
    key: str  # the clip's content key: speech/<key>.wav
    start_s: float
    duration_s: float


class NarrationRecord(BaseModel):
    """plan.json's narration: who spoke, what, when; enough to rebuild the track and cues."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str  # "espeak", "piper", "gemini"
    identity: str  # engine + model: part of each clip's key
    language: str
    voice: str | None = None
    fps: int
    requested_s: float
    scene_frames: list[int]
    phrases: list[PhraseRecord]

    def timing(self) -> NarrationTiming:
        placed = [PlacedPhrase(p.scene, p.text, p.start_s, p.duration_s) for p in self.phrases]
        return NarrationTiming(list(self.scene_frames), placed, self.fps, self.requested_s)

    def cues(self) -> list[Cue]:
        return self.timing().cues()


@dataclass
class Spoken:
    """What speaking a storyboard gave: the record, the warnings and what was paid for."""

    record: NarrationRecord
    timing: NarrationTiming
    costs: list[tuple[str, float]] = field(default_factory=list)  # (clip key, USD) for clips made now
    clips: dict[str, bytes] = field(default_factory=dict)  # WAV bytes by key, for the run folder


def _clip_bytes(engine: SpeechEngine, text: str, language: str, voice: str | None, key: str,
                stores: list[ClipStore]) -> tuple[bytes, float]:
    """A phrase's WAV from the first store that has it, else synthesised (and stored in all)."""
    for store in stores:
        data = store.get(key)
        if data is not None:
            return data, 0.0
    clip = engine.synthesise(text, language, voice)
    data = clip.to_wav()
    for store in stores:
        store.put(key, data)
    return data, clip.cost_usd


def speak(scenes_narration: list[str], weights: list[float], engine: SpeechEngine, language: str, voice: str | None,
          requested_s: float, fps: int, stores: list[ClipStore], fit: SegmentFit | None = None) -> Spoken:
    """Synthesise every phrase (SPEAK_WORKERS at once), then time the scenes around them."""
    phrases = [(scene, text) for scene, narration in enumerate(scenes_narration) for text in split_phrases(narration)]
    keys = [clip_key(engine.identity, language, voice, text) for _scene, text in phrases]
    text_of = dict(zip(keys, (text for _scene, text in phrases)))  # a phrase said twice is made once
    made: dict[str, tuple[bytes, float]] = {}
    many = getattr(engine, "synthesise_many", None)
    if many is not None and not stores:  # a local engine that speaks a batch in one go (espeak-ng)
        for key, clip in zip(text_of, many(list(text_of.values()), language, voice)):
            made[key] = (clip.to_wav(), clip.cost_usd)
    else:
        with ThreadPoolExecutor(max_workers=SPEAK_WORKERS) as pool:
            made = dict(zip(text_of, pool.map(lambda key: _clip_bytes(engine, text_of[key], language, voice, key, stores),
                                              text_of)))
    durations = [SpeechClip.from_wav(made[key][0]).duration_s for key in keys]
    per_scene: list[list[tuple[str, float]]] = [[] for _ in scenes_narration]
    for (scene, text), duration in zip(phrases, durations):
        per_scene[scene].append((text, duration))
    timing = time_narration(weights, per_scene, requested_s, fps, fit)
    record = NarrationRecord(
        engine=engine.name, identity=engine.identity, language=language, voice=voice, fps=fps, requested_s=requested_s,
        scene_frames=timing.scene_frames,
        phrases=[PhraseRecord(scene=p.scene, text=p.text, key=k, start_s=p.start_s, duration_s=p.duration_s)
                 for p, k in zip(timing.phrases, keys)],
    )
    costs = [(key, cost) for key, (_data, cost) in made.items() if cost > 0]
    return Spoken(record, timing, costs, {key: data for key, (data, _cost) in made.items()})


def estimated_timing(scenes_narration: list[str], weights: list[float], language: str, requested_s: float,
                     fps: int, fit: SegmentFit | None = None) -> NarrationTiming:
    """The timing `speak` would give if every phrase took its estimated time (the planners'
    speaking rate): what a paid engine's request is checked against before it is paid."""
    per_scene = [[(text, estimated_seconds(text, language)) for text in split_phrases(narration)]
                 for narration in scenes_narration]
    return time_narration(weights, per_scene, requested_s, fps, fit)


def write_narration_track(path, record: NarrationRecord, clip_of: Callable[[str], SpeechClip], total_s: float) -> None:
    """The whole narration as a WAV file (int16 mono at TRACK_RATE), each phrase at its
    start time. Written front to back one phrase (or one second of silence) at a time, so
    memory does not grow with the video's length. A clip longer than its recorded duration
    (one synthesised again after a crash can come out a little longer) loses its own tail
    where it would run into the next phrase: every phrase starts whole, at its cue."""
    from scipy.signal import resample_poly

    total = int(round(total_s * TRACK_RATE))
    silence = np.zeros(TRACK_RATE, dtype="<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(TRACK_RATE)
        cursor = 0

        def pad_to(end: int) -> int:
            position = cursor
            while position < end:
                step = min(end - position, len(silence))
                out.writeframes(silence[:step].tobytes())
                position += step
            return position

        ordered = sorted(record.phrases, key=lambda p: p.start_s)
        for i, phrase in enumerate(ordered):
            clip = clip_of(phrase.key)
            samples = clip.pcm
            if clip.rate != TRACK_RATE:
                g = np.gcd(clip.rate, TRACK_RATE)
                samples = np.clip(resample_poly(samples.astype(np.float32), TRACK_RATE // g, clip.rate // g), -32768, 32767)
            start = min(int(round(phrase.start_s * TRACK_RATE)), total)
            end = min(int(round(ordered[i + 1].start_s * TRACK_RATE)), total) if i + 1 < len(ordered) else total
            cursor = pad_to(start)  # never past `start`: the phrase before was cut at it
            piece = samples[: max(0, end - cursor)].astype("<i2")
            out.writeframes(piece.tobytes())
            cursor += len(piece)
        pad_to(total)
