"""Decode, encode and merge video with PyAV.

The names below load their module (and PyAV) on first use, so importing a light module of
this package (frames, for the judge's keyframes) does not import PyAV with it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "DEFAULT_H264": "encoding", "H264Settings": "encoding", "encode_mp4": "encoding",
    "MergeInput": "merge", "MergeStats": "merge", "merge_segments": "merge",
    "VideoInfo": "probe", "probe": "probe",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .encoding import DEFAULT_H264, H264Settings, encode_mp4
    from .merge import MergeInput, MergeStats, merge_segments
    from .probe import VideoInfo, probe


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
