"""Planning: from a RenderSpec to a Storyboard, and from a Storyboard to segment jobs."""

from .offline import OfflinePlanner
from .segmentation import (
    DEFAULT_RULES,
    DurationRule,
    SegmentationRules,
    segment_count,
    segment_storyboard,
)
from .storyboard_file import load_storyboard

__all__ = [
    "DEFAULT_RULES",
    "DurationRule",
    "OfflinePlanner",
    "SegmentationRules",
    "load_storyboard",
    "segment_count",
    "segment_storyboard",
]
