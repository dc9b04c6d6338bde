"""The Ray side: resource estimates, segment tasks, the run store and the render pipeline.

The names below load their module on first use. A Ray worker that runs one small piece
(a provider gate actor, a collect or normalisation task) imports only that piece's module,
not the whole pipeline with its sound and planning stacks: importing everything cost a new
worker about 1.6 s, and the gate actor's start is on the render's critical path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "NullProgress": "pipeline", "ProgressSink": "pipeline", "RenderPipeline": "pipeline", "RenderPlan": "pipeline",
    "RenderResult": "pipeline",
    "ClusterCapacity": "resources", "EstimatorConfig": "resources", "ResourceRequest": "resources", "admit": "resources",
    "estimate": "resources", "fit_to_cluster": "resources",
    "LocalRunStore": "store", "RunFolder": "store", "S3RunStore": "store", "open_store": "store",
    "InlineSegmentRunner": "tasks", "RaySegmentRunner": "tasks", "SegmentResult": "tasks", "collect_segment": "tasks",
    "ensure_ray": "tasks",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .pipeline import NullProgress, ProgressSink, RenderPipeline, RenderPlan, RenderResult
    from .resources import ClusterCapacity, EstimatorConfig, ResourceRequest, admit, estimate, fit_to_cluster
    from .store import LocalRunStore, RunFolder, S3RunStore, open_store
    from .tasks import InlineSegmentRunner, RaySegmentRunner, SegmentResult, collect_segment, ensure_ray


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
