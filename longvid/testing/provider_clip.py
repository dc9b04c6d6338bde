"""Clips encoded the way a provider (Runway, Veo) returns them, not the way longvid does:
another x264 preset (so other parameter sets, with B-frames), one keyframe for the whole
clip (a GOP longer than the clip), and AAC audio at 44.1 kHz: a tone over a stereo ambience
(a bed of low rumble that swells, as sea or wind), since what providers return sounds like
that, not like a pure sine, which FFmpeg's AAC encoder codes about three times slower. For
the fakes, the tests and the benchmarks: only the project's normalisation makes such clips
stream-copyable.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction

import av
import numpy as np

AUDIO_RATE = 44_100


def ambience(samples: int, rate: int, level: float, seed: int = 0) -> np.ndarray:
    """(2, samples) float32: low-passed noise, each channel its own, swelling every 5 s,
    `level` RMS at its loudest."""
    from scipy import signal

    b, a = signal.butter(2, 900 / (rate / 2))
    noise = signal.lfilter(b, a, np.random.default_rng(seed).standard_normal((2, samples)), axis=1)
    swell = 0.7 + 0.3 * np.sin(2 * np.pi * np.arange(samples) / (5.0 * rate))
    return (noise * (level / max(float(noise.std()), 1e-9)) * swell).astype(np.float32)


def encode_provider_style(frames: Iterable[np.ndarray], fps: int, width: int, height: int, *, tone_hz: float | None = 220.0,
                          ambience_level: float = 0.08, preset: str = "medium", crf: int = 23, keyint: int = 1000) -> bytes:
    """RGB (H, W, 3) frames as an MP4 from 'another encoder', with a sine tone over an
    ambience of `ambience_level` RMS as its audio (no audio when `tone_hz` is None)."""
    buffer = io.BytesIO()
    count = 0
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = keyint
        video.codec_context.options = {"preset": preset, "crf": str(crf), "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"}
        audio = None
        if tone_hz:  # every stream is declared before the first packet
            audio = container.add_stream("aac", rate=AUDIO_RATE)
            audio.layout = "stereo"
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(video.encode(frame))
            count += 1
        container.mux(video.encode(None))
        if audio is not None:
            samples = int(round(AUDIO_RATE * count / fps))
            t = np.arange(samples) / AUDIO_RATE
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            pcm = np.stack([wave, wave])
            if ambience_level:
                pcm = pcm + ambience(samples, AUDIO_RATE, ambience_level)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start : start + 1024]), format="fltp", layout="stereo")
                chunk.sample_rate, chunk.pts = AUDIO_RATE, start
                container.mux(audio.encode(chunk))
            container.mux(audio.encode(None))
    return buffer.getvalue()
