"""Small keyframes decoded from a segment's own video file.

Memory stays bounded whatever the resolution: frames are decoded in one forward pass that
stops after the last wanted one, and each wanted frame is scaled down by libswscale before
it becomes an array, so only `count` thumbnails are ever held.
"""

from __future__ import annotations

import os

import numpy as np


def decode_thumbnails(path: str | os.PathLike[str], indices: list[int], width: int, height: int) -> dict[int, np.ndarray]:
    """{frame index: RGB uint8 array (height, width, 3)} for the wanted (decode-order)
    indices; indices past the end of the video are absent."""
    import av

    wanted = sorted({i for i in indices if i >= 0})
    found: dict[int, np.ndarray] = {}
    if not wanted:
        return found
    wanted_set, last = set(wanted), wanted[-1]
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted_set:
                # AREA averaging: a thumbnail keeps its frame's colours (no aliasing shimmer).
                small = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA")
                found[index] = small.to_ndarray()
            if index >= last:
                break
    return found
