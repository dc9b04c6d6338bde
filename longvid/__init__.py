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


def render(spec: RenderSpec, output=None, runs_dir="runs", progress=None, planner: str = "auto"):
    """Render `spec` on Ray (started in-process unless RAY_ADDRESS is set), with the planner
    `planner` (auto, gemini or offline) and the judge `spec.judge`, wired as the CLI wires them."""
    from .runtime import LocalRunStore, RaySegmentRunner, ensure_ray
    from .wiring import RenderOptions, planning_pipeline, render_pipeline

    options = RenderOptions(planner=planner)
    store = LocalRunStore(runs_dir)
    planned = planning_pipeline(store, options, spec.storyboard_file is not None).plan(spec)  # bad input before Ray starts
    ensure_ray()
    with render_pipeline(spec, store, RaySegmentRunner(), options, progress=progress) as pipeline:
        return pipeline.render(spec, output=output, planned=planned)
