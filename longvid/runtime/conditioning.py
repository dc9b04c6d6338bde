"""The frames a chained segment continues from, for models that take several.

A one-image provider starts from the seam frame (the previous segment's frame at its
`frames` index, where the crossfade into the next one begins). A model that continues a clip
(LTX-Video's video condition) gets the frames leading up to that seam frame as well, oldest
first, ending with it: the same seam frame as bytes, so every other provider is unchanged.
"""

from __future__ import annotations

import io

from ..media.frames import Source, decode_frames
from ..providers.base import Conditioning


def chain_conditioning(previous_clip: Source, seam_index: int, count: int) -> Conditioning:
    """The previous clip's frames seam_index - count + 1 … seam_index (fewer at its start; the
    last frame when the clip is shorter) as a Conditioning."""
    from PIL import Image

    wanted = range(max(0, seam_index - count + 1), seam_index + 1)
    found = decode_frames(previous_clip, wanted)
    if seam_index not in found:  # a clip shorter than its seam index: end on its last frame
        found = decode_frames(previous_clip, range(0, seam_index + 1))
        found = {i: found[i] for i in sorted(found)[-count:]}
    pngs = []
    for index in sorted(found):
        out = io.BytesIO()
        Image.fromarray(found[index]).save(out, format="PNG")
        pngs.append(out.getvalue())
    return Conditioning(pngs)
