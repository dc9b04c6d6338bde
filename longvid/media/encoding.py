"""H.264 encoding with one set of settings shared by the renderer and the merger.

The merger stream-copies the parts of a segment that no transition touches and re-encodes
only the seam windows. That is only valid when the copied packets and the re-encoded ones
decode with the same parameter sets (SPS/PPS), so both sides build their encoder here, from
the same `H264Settings`, and the merger compares parameter sets before copying anything.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

PIXEL_FORMAT = "yuv420p"


@dataclass(frozen=True)
class H264Settings:
    preset: str = "veryfast"
    crf: int = 20
    gop_seconds: float = 2.0
    threads: int = 0  # 0: let x264 decide

    def options(self) -> dict[str, str]:
        # forced-idr: a keyframe we ask for must be an IDR so that a copy can start there.
        return {"preset": self.preset, "crf": str(self.crf), "forced-idr": "1"}


DEFAULT_H264 = H264Settings()
# Normalising a provider's clip (normalise.py) uses the house settings. x264's superfast preset
# was tried (same SPS/PPS at the same CRF): about a tenth less CPU on the critical path, but
# files about 1.7x as large, and final.mp4 copies these packets, so every video would grow as
# much; not worth it (bench/bench_provider_merge.py's preset comparison prints both).
NORMALISE_H264 = DEFAULT_H264


def _configure(ctx, width: int, height: int, fps: int, settings: H264Settings) -> None:
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = PIXEL_FORMAT
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps, 1)
    ctx.gop_size = max(1, int(round(settings.gop_seconds * fps)))
    ctx.thread_count = settings.threads
    ctx.options = settings.options()


def open_encoder(width: int, height: int, fps: int, settings: H264Settings = DEFAULT_H264) -> av.CodecContext:
    """A standalone libx264 encoder with global headers (SPS/PPS in extradata, as MP4
    wants). Frames are timed in 1/fps units. Each one starts its output with an IDR."""
    ctx = av.CodecContext.create("libx264", "w")
    _configure(ctx, width, height, fps, settings)
    ctx.flags |= av.codec.context.Flags.global_header
    ctx.open()
    return ctx


def add_h264_stream(container, width: int, height: int, fps: int, settings: H264Settings = DEFAULT_H264):
    """An opened H.264 output stream configured exactly like `open_encoder`."""
    stream = container.add_stream("libx264", rate=fps)
    _configure(stream.codec_context, width, height, fps, settings)
    stream.codec_context.open()
    return stream


def video_frame(pixels: np.ndarray, pts: int | None = None, keyframe: bool = False) -> av.VideoFrame:
    """An encoder-ready frame from an RGB (H, W, 3) or yuv420p (H*3/2, W) uint8 array."""
    if pixels.ndim == 3:
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=PIXEL_FORMAT)
    else:
        frame = av.VideoFrame.from_ndarray(pixels, format=PIXEL_FORMAT)
    frame.pts = pts
    if keyframe:
        frame.pict_type = av.video.frame.PictureType.I
    return frame


def encode_mp4(
    frames: Iterable[np.ndarray],
    fps: int,
    width: int,
    height: int,
    keyframes: Iterable[int] = (),
    settings: H264Settings = DEFAULT_H264,
) -> bytes:
    """Encode RGB or yuv420p arrays to an H.264 MP4 in memory, forcing IDR frames at the
    frame indices in `keyframes`. Segments are a few MB at most, so bytes are fine here."""
    forced = set(keyframes)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = add_h264_stream(container, width, height, fps, settings)
        for index, pixels in enumerate(frames):
            container.mux(stream.encode(video_frame(pixels, index, keyframe=index in forced)))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def parameter_sets(extradata: bytes | None) -> frozenset[bytes]:
    """The SPS/PPS NAL units in H.264 extradata, whether it is avcC (what MP4 files carry)
    or Annex B (what an encoder with global headers produces)."""
    data = bytes(extradata or b"")
    if not data:
        return frozenset()
    units: list[bytes] = []
    if data[0] == 1 and len(data) > 6:  # avcC
        pos = 5
        for _kind in range(2):  # SPS then PPS
            count = data[pos] & (0x1F if _kind == 0 else 0xFF)
            pos += 1
            for _ in range(count):
                size = int.from_bytes(data[pos : pos + 2], "big")
                units.append(data[pos + 2 : pos + 2 + size])
                pos += 2 + size
            if pos >= len(data):
                break
        return frozenset(units)
    for chunk in data.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01"):
        if chunk:
            units.append(chunk.rstrip(b"\x00"))
    return frozenset(units)


def h264_reference(width: int, height: int, fps: int, settings: H264Settings = DEFAULT_H264) -> frozenset[bytes]:
    """The parameter sets our encoder produces for this geometry."""
    return parameter_sets(open_encoder(width, height, fps, settings).extradata)
