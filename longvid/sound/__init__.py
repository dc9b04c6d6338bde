"""Sound for the finished video: the mix (provider audio, narration, music), broadcast
loudness, the AAC track, soft and burned subtitles.

Light on import: `Cue` is a plain dataclass; `finish` (PyAV, numpy, scipy) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .cues import Cue

_EXPORTS = {
    "SoundOptions": "finish", "SoundStats": "finish", "add_sound": "finish", "check_music": "finish",
}

__all__ = sorted([*_EXPORTS, "Cue"])

if TYPE_CHECKING:
    from .finish import SoundOptions, SoundStats, add_sound, check_music


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
