"""Clips encoded the way a provider (Runway, Veo) returns them, not the way longvid does:
another x264 preset (so other parameter sets, with B-frames), one keyframe for the whole
clip (a GOP longer than the clip), and AAC audio at 44.1 kHz. For the fakes, the tests and
the benchmarks: only the project's normalisation makes such clips stream-copyable.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction

import av
import numpy as np

AUDIO_RATE = 44_100


def encode_provider_style(frames: Iterable[np.ndarray], fps: int, width: int, height: int, *, tone_hz: float | None = 220.0,
                          preset: str = "medium", crf: int = 23, keyint: int = 1000) -> bytes:
    """RGB (H, W, 3) frames as an MP4 from 'another encoder', with a sine tone as its audio
    (no audio when `tone_hz` is None)."""
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
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start : start + 1024]), format="fltp", layout="stereo")
                chunk.sample_rate, chunk.pts = AUDIO_RATE, start
                container.mux(audio.encode(chunk))
            container.mux(audio.encode(None))
    return buffer.getvalue()
