"""Decode, encode and merge video with PyAV."""

from .encoding import DEFAULT_H264, H264Settings, encode_mp4
from .merge import MergeInput, MergeStats, merge_segments
from .probe import VideoInfo, probe

__all__ = ["DEFAULT_H264", "H264Settings", "MergeInput", "MergeStats", "VideoInfo", "encode_mp4", "merge_segments", "probe"]
