"""Small synthetic clips for merge tests, encoded with real codecs through PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from longvid.media.encoding import encode_mp4


def solid_frames(colour, count, width=64, height=48):
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, :] = colour
    return [frame] * count


def write_clip(path: Path, frames, fps=24, keyframes=()):
    height, width = frames[0].shape[:2]
    path.write_bytes(encode_mp4(frames, fps, width, height, keyframes=keyframes))
    return path


def write_foreign_clip(path: Path, colour, count, fps=30, width=96, height=64, tone_hz=None, codec="mpeg4"):
    """A clip from 'another encoder': another codec, size and rate, optionally with a tone."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = None
        if tone_hz:
            audio = container.add_stream("aac", rate=48000)
            audio.layout = "stereo"
        for k, pixels in enumerate(solid_frames(colour, count, width, height)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = k
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            samples = int(48000 * count / fps)
            t = np.arange(samples) / 48000
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            pcm = np.stack([wave, wave])
            for start in range(0, samples, 1024):
                chunk = np.ascontiguousarray(pcm[:, start : start + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate = 48000
                frame.pts = start
                container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path
