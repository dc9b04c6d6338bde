"""Synthetic inputs for the sound tests: tiny videos, a 'narration' WAV of tone bursts at
known spans, and music files, encoded with real codecs through PyAV and scipy."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import scipy.io.wavfile

from longvid.media.encoding import add_h264_stream, video_frame


def write_video(path: Path, seconds: float, fps: int = 12, width: int = 64, height: int = 36, tone_hz: float | None = None, gop: int = 12):
    frames = int(round(seconds * fps))
    with av.open(str(path), "w") as container:
        stream = add_h264_stream(container, width, height, fps)
        audio = None
        if tone_hz:
            audio = container.add_stream("aac", rate=48000)
            audio.layout = "stereo"
        y, x = np.mgrid[0:height, 0:width]
        for k in range(frames):
            pixels = np.stack([(x * 4 + k) % 256, (y * 6) % 256, np.full_like(x, 90)], axis=-1).astype(np.uint8)
            container.mux(stream.encode(video_frame(pixels, k, keyframe=k % gop == 0)))
        container.mux(stream.encode(None))
        if audio is not None:
            samples = int(48000 * seconds)
            t = np.arange(samples) / 48000
            wave = (0.2 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            for start in range(0, samples, 4800):
                chunk = np.ascontiguousarray(np.stack([wave, wave])[:, start : start + 4800])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 48000, start
                container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path


def speech_like(spans, seconds: float, rate: int = 22050, level: float = 0.3, seed: int = 1, pitch: float = 1.0, clicks: float = 0.0) -> np.ndarray:
    """A voice stand-in: amplitude-modulated harmonics inside `spans`, silence between;
    `clicks` adds single-sample spikes of that height (plosives, a peaky voice)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * f * pitch * t + rng.uniform(0, 6)) / k for k, f in enumerate((180, 360, 540, 900, 1800), 1))
    voice *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)  # syllables
    gate = np.zeros_like(t)
    for a, b in spans:
        gate[(t >= a) & (t < b)] = 1.0
    wave = level * voice * gate / np.abs(voice).max()
    if clicks:
        spikes = np.flatnonzero(gate)[:: rate // 3]
        wave[spikes] = clicks
    return wave.astype(np.float32)


def write_narration(path: Path, spans, seconds: float, rate: int = 22050, level: float = 0.3, **voice) -> Path:
    scipy.io.wavfile.write(path, rate, speech_like(spans, seconds, rate, level, **voice))  # mono, as TTS engines write
    return path


def write_music(path: Path, seconds: float, codec: str = "aac", rate: int = 44100, level: float = 0.25) -> Path:
    """A chord with a 2 Hz pulse, in an audio-only file (m4a/ogg/wav by extension)."""
    samples = int(seconds * rate)
    t = np.arange(samples) / rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220, 277.2, 329.6)) / 3
    wave = (level * chord * (0.7 + 0.3 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "stereo"
        for start in range(0, samples, 4096):
            chunk = np.ascontiguousarray(np.stack([wave, wave])[:, start : start + 4096])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            frame.time_base = Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def decode_pcm(path: Path) -> np.ndarray:
    """The whole audio track of a small file, (samples, 2) float64 at its own rate (48 kHz here)."""
    with av.open(str(path)) as container:
        pieces = [f.to_ndarray() for f in container.decode(container.streams.audio[0])]
    return np.concatenate(pieces, axis=1).T.astype(np.float64)


def packets(path: Path, kind: str = "video"):
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(bytes(p), p.pts * p.time_base, p.dts * p.time_base, p.is_keyframe) for p in container.demux(stream) if p.size]
