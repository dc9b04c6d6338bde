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


def render(spec: RenderSpec, output=None, runs_dir="runs", progress=None, settings=None):
    """Render `spec` on Ray (started in-process unless RAY_ADDRESS is set). `settings`
    (longvid.settings.Settings) defaults to `Settings.from_env()`: this is a public edge."""
    from .runtime import LocalRunStore, RaySegmentRunner, RenderPipeline, ensure_ray
    from .settings import Settings

    settings = settings if settings is not None else Settings.from_env()
    ensure_ray(settings.ray_address)
    pipeline = RenderPipeline(LocalRunStore(runs_dir), RaySegmentRunner(), progress=progress, settings=settings)
    return pipeline.render(spec, output=output)
