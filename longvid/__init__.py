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


def render(spec: RenderSpec, output=None, runs_dir="runs", progress=None, planner: str = "auto", settings=None):
    """Render `spec` on Ray (started in-process unless RAY_ADDRESS is set), with the planner
    `planner` (auto, gemini or offline) and the judge `spec.judge`, wired as the CLI wires them.
    `settings` (longvid.settings.Settings) defaults to `Settings.from_env()`: this is a public edge."""
    from .runtime import LocalRunStore, RaySegmentRunner, ensure_ray
    from .settings import Settings
    from .wiring import RenderOptions, planning_pipeline, render_pipeline

    settings = settings if settings is not None else Settings.from_env()
    options = RenderOptions(planner=planner, clip_model=settings.clip.model, clip_checkpoint=settings.clip.checkpoint)
    store = LocalRunStore(runs_dir)
    planned = planning_pipeline(store, options, settings, spec.storyboard_file is not None).plan(spec)  # bad input before Ray starts
    ensure_ray(settings.ray_address)
    with render_pipeline(spec, store, RaySegmentRunner(), options, settings, progress=progress) as pipeline:
        return pipeline.render(spec, output=output, planned=planned)
