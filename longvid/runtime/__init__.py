"""The Ray side: resource estimates, segment tasks, the run store and the render pipeline."""

from .pipeline import NullProgress, ProgressSink, RenderPipeline, RenderResult
from .resources import ClusterCapacity, EstimatorConfig, ResourceRequest, admit, estimate, fit_to_cluster
from .store import LocalRunStore, RunFolder
from .tasks import InlineSegmentRunner, RaySegmentRunner, SegmentResult, ensure_ray, run_segment

__all__ = [
    "ClusterCapacity",
    "EstimatorConfig",
    "InlineSegmentRunner",
    "LocalRunStore",
    "NullProgress",
    "ProgressSink",
    "RaySegmentRunner",
    "RenderPipeline",
    "RenderResult",
    "ResourceRequest",
    "RunFolder",
    "SegmentResult",
    "admit",
    "ensure_ray",
    "estimate",
    "fit_to_cluster",
    "run_segment",
]
