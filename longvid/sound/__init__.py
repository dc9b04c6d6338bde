"""Sound for the finished video: the mix (provider audio, narration, music), broadcast
loudness, the AAC track, soft and burned subtitles.

Light on import: `Cue` is a plain dataclass; `finish` (PyAV, numpy, scipy) loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .cues import Cue

_EXPORTS = {
    "SoundOptions": "finish", "SoundStats": "finish", "add_sound": "finish", "check_music": "finish",
}

__all__ = sorted([*_EXPORTS, "Cue"])

if TYPE_CHECKING:
    from .finish import SoundOptions, SoundStats, add_sound, check_music


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
