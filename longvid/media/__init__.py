"""Decode, encode and merge video with PyAV.

The names below load their module (and PyAV) on first use, so importing a light module of
this package (frames, for the judge's keyframes) does not import PyAV with it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
