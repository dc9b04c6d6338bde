"""The planner and judge a render asked for, built the same way for every way in (the CLI,
the batch job, the Serve app), so none of them carries its own copy of the wiring."""

from __future__ import annotations

from pathlib import Path

from .settings import GeminiSettings
from .spec import RenderSpec

DEFAULT_CLIP_MODEL = "ViT-B-32"


def make_planner(settings: GeminiSettings, choice: str = "auto", storyboard_given: bool = False):
    """auto: Gemini when a key is configured, else offline (a failing Gemini falls back with
    a warning); gemini: Gemini or fail, never a quiet fallback; offline: no network."""
    from .planning import OfflinePlanner

    if choice == "offline" or storyboard_given:
        return OfflinePlanner()
    from .planning.gemini import GeminiPlanner, gemini_available

    if choice == "auto" and not gemini_available(settings):
        return OfflinePlanner()
    return GeminiPlanner(settings, allow_fallback=choice == "auto")


def make_judge(spec: RenderSpec, clip_model: str | None = None, clip_checkpoint: Path | None = None, allow_download: bool = False):
    """The consistency judge (Ray actors) for `spec.judge`, or None when it is off. CLIP
    weights come from the checkpoint or the local cache; downloads only when allowed."""
    if spec.judge == "off":
        return None
    from .consistency import JudgeConfig
    from .consistency.pipeline_judge import create_pipeline_judge

    config = JudgeConfig(backend=spec.judge, model_name=clip_model or DEFAULT_CLIP_MODEL, checkpoint_path=clip_checkpoint,
                         allow_download=allow_download)
    return create_pipeline_judge(config, spec.reference_images)


def release_judge(judge) -> None:
    """A judge's actors belong to one render; a long-lived process must not accumulate them."""
    if judge is None:
        return
    import ray

    for actor in (getattr(judge, "actor", None), getattr(judge, "context", None)):
        if isinstance(actor, ray.actor.ActorHandle):
            try:
                ray.kill(actor)
            except Exception:  # already gone
                pass
