"""The Ray side: resource estimates, segment tasks, the run store and the render pipeline."""

from .pipeline import NullProgress, ProgressSink, RenderPipeline, RenderPlan, RenderResult
from .resources import ClusterCapacity, EstimatorConfig, ResourceRequest, admit, estimate, fit_to_cluster
from .store import LocalRunStore, RunFolder, S3RunStore, open_store
from .tasks import InlineSegmentRunner, RaySegmentRunner, SegmentResult, collect_segment, ensure_ray

__all__ = [
    "ClusterCapacity",
    "EstimatorConfig",
    "InlineSegmentRunner",
    "LocalRunStore",
    "NullProgress",
    "ProgressSink",
    "RaySegmentRunner",
    "RenderPipeline",
    "RenderPlan",
    "RenderResult",
    "ResourceRequest",
    "RunFolder",
    "S3RunStore",
    "SegmentResult",
    "admit",
    "collect_segment",
    "ensure_ray",
    "estimate",
    "fit_to_cluster",
    "open_store",
]
