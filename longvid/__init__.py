"""longvid: a prompt in, a finished long video out.

The public surface is small: the vocabulary (`RenderSpec`, `Storyboard`, …), the planner,
and `render()`. Heavy pieces (Ray, torch) load only when used.
"""

from .errors import InputError, LongvidError, RenderError
from .spec import (
    AspectRatio,
    ContinuityMode,
    QualityTier,
    RenderSpec,
    Resolution,
    Scene,
    SegmentJob,
    Storyboard,
    Transition,
)

__version__ = "0.1.0"

__all__ = [
    "AspectRatio",
    "ContinuityMode",
    "InputError",
    "LongvidError",
    "QualityTier",
    "RenderError",
    "RenderSpec",
    "Resolution",
    "Scene",
    "SegmentJob",
    "Storyboard",
    "Transition",
    "__version__",
    "render",
]


def render(spec: RenderSpec, output=None, runs_dir="runs", progress=None):
    """Render `spec` on Ray (started in-process unless RAY_ADDRESS is set)."""
    from .runtime import LocalRunStore, RaySegmentRunner, RenderPipeline, ensure_ray

    ensure_ray()
    pipeline = RenderPipeline(LocalRunStore(runs_dir), RaySegmentRunner(), progress=progress)
    return pipeline.render(spec, output=output)
