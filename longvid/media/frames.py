"""Reading frames out of a video, in one place: the judge's keyframes, the review's
thumbnails, the seam frame a chained segment starts from, the download check and probe.

Frames are addressed by decode-order index. Decoding is one forward pass that stops after
the last wanted frame and keeps only the wanted ones (scaled down first when a size is
given), so memory stays bounded whatever the video's length and resolution.

merge.py keeps its own packet-level loop: it stream-copies whole GOPs and decodes only
seam windows, a different job from picking frames out.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

import numpy as np

Source = str | os.PathLike[str] | bytes | bytearray | memoryview


def open_video(source: Source):
    """A PyAV input container over a file path or the bytes of a whole file."""
    import av

    if isinstance(source, (bytes, bytearray, memoryview)):
        return av.open(io.BytesIO(bytes(source)))
    return av.open(os.fspath(source))


def count_frames(source: Source, trust_header: bool = True) -> int:
    """Frames in the first video stream. With `trust_header`, the container's count when it
    has one; otherwise (or without one) the frames are decoded and counted, since headers can lie."""
    with open_video(source) as container:
        stream = container.streams.video[0]
        if trust_header and stream.frames:
            return int(stream.frames)
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def decode_frames(source: Source, indices: Iterable[int], size: tuple[int, int] | None = None) -> dict[int, np.ndarray]:
    """{index: RGB uint8 frame} for the wanted indices, scaled to `size` (width, height)
    when given (area averaging: a thumbnail keeps its frame's colours, with no aliasing
    shimmer). Indices past the end of the video are absent from the result."""
    wanted = sorted({int(i) for i in indices if int(i) >= 0})
    found: dict[int, np.ndarray] = {}
    if not wanted:
        return found
    wanted_set, stop = set(wanted), wanted[-1]
    with open_video(source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted_set:
                if size is None:
                    found[index] = frame.to_ndarray(format="rgb24")
                else:
                    found[index] = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_ndarray()
            if index >= stop:
                break
    return found


def first_frame_problem(source: Source) -> str | None:
    """Why no first video frame decodes ("has no video stream", "does not decode
    (InvalidDataError)", ...), or None when one does. Names the error's class only: a
    decoder's message may quote the file."""
    try:
        with open_video(source) as container:
            if not container.streams.video:
                return "has no video stream"
            for _frame in container.decode(video=0):
                return None
    except Exception as exc:  # av.error.* and friends
        return f"does not decode ({exc.__class__.__name__})"
    return "has no decodable video frame"


def frame_png(source: Source, frame_index: int) -> bytes:
    """The frame at `frame_index` (or the last one, if the video is shorter), as PNG.
    Seeks to the keyframe before it instead of decoding from the start."""
    chosen = None
    with open_video(source) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 24)
        start = stream.start_time or 0
        container.seek(start + int(frame_index / rate / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            chosen = frame
            if frame.pts is not None and round(float((frame.pts - start) * stream.time_base) * rate) >= frame_index:
                break
    if chosen is None:
        raise ValueError("the video has no frames")
    out = io.BytesIO()
    chosen.to_image().save(out, format="PNG")
    return out.getvalue()
