"""One wiring place: the planner (with its rewording of refused prompts), the consistency
judge, and the pipeline over them, built the same way for every way in — the CLI's render,
resume and review, the batch job, the Serve worker and `longvid.render()` — and released
the same way when the render ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .settings import GeminiSettings, Settings
from .spec import RenderSpec

DEFAULT_CLIP_MODEL = "ViT-B-32"


@dataclass(frozen=True)
class RenderOptions:
    """How a way in wants its renders built (the spec says what to render)."""

    planner: str = "auto"  # auto: Gemini when a key is configured, else offline; gemini; offline
    clip_model: str = DEFAULT_CLIP_MODEL
    clip_checkpoint: Path | None = None
    allow_download: bool = False  # CLIP weights: only ever downloaded when this is set
    stream_copy: bool = True  # False: re-encode every frame at merge
    judge_model: str | None = None  # the Gemini vision judge's model (None: the Gemini settings' model)
    second_opinion: bool = False  # ask the Gemini vision judge about borderline local scores
    dinov2_dir: Path | None = None  # the judge's DINOv2 folder (None: the Hugging Face cache, if it holds one)
    aesthetic_head: Path | None = None  # the LAION aesthetic predictor's head for the judge (None: no aesthetic score)
    clip_pretrained: str | None = None  # the judge's open_clip pretrained tag (None: JudgeConfig's; "openai" for an aesthetic head)


def make_planner(settings: GeminiSettings, choice: str = "auto", storyboard_given: bool = False):
    """auto: Gemini when a key is configured, else offline (a failing Gemini falls back with
    a warning); gemini: Gemini or fail, never a quiet fallback; offline: no network. A
    storyboard file needs no planning, but Gemini still rewords refused prompts when it is
    configured."""
    from .planning import OfflinePlanner

    if choice == "offline":
        return OfflinePlanner()
    from .planning.gemini import GeminiPlanner, gemini_available

    if not gemini_available(settings) and (choice == "auto" or storyboard_given):
        return OfflinePlanner()
    return GeminiPlanner(settings, allow_fallback=choice == "auto")


def check_vision_judge(spec: RenderSpec, options: RenderOptions, settings: Settings | None) -> None:
    """Refuse `--judge gemini` / `--second-opinion` without a Gemini key (InputError, exit 2),
    cheaply, before Ray starts or anything is paid."""
    primary = spec.judge == "gemini"
    if not primary and not ((options.second_opinion or spec.second_opinion) and spec.judge != "off"):
        return
    gemini = settings.gemini if settings is not None else GeminiSettings()
    if gemini.api_key is None:
        from .errors import InputError

        what = "--judge gemini" if primary else "--second-opinion"
        raise InputError(f"{what} needs a Gemini key: set GOOGLE_API_KEY or GEMINI_API_KEY (or choose another judge)")


def make_vision_check(spec: RenderSpec, options: RenderOptions, settings: Settings | None, band: float):
    """Gemini's vision check for `--judge gemini` (every segment) or `--second-opinion`
    (borderline ones), or None. Either without a Gemini key is the user's to fix."""
    primary = spec.judge == "gemini"  # the spec carries --second-opinion/--judge-model with the run (resume)
    if not primary and not ((options.second_opinion or spec.second_opinion) and spec.judge != "off"):
        return None
    check_vision_judge(spec, options, settings)
    gemini = settings.gemini
    from .consistency.gemini_judge import GeminiVisionJudge
    from .consistency.vision_check import VisionCheck

    return VisionCheck(GeminiVisionJudge(gemini, model=options.judge_model or spec.judge_model), mode="primary" if primary else "second_opinion",
                       band=band)


def judge_config(spec: RenderSpec, options: RenderOptions = RenderOptions()):
    """The JudgeConfig of `spec.judge` (not "off") with this way in's weights."""
    from .consistency import JudgeConfig

    pretrained = {"pretrained": options.clip_pretrained} if options.clip_pretrained else {}
    return JudgeConfig(backend="auto" if spec.judge == "gemini" else spec.judge, model_name=options.clip_model or DEFAULT_CLIP_MODEL,
                       checkpoint_path=options.clip_checkpoint, allow_download=options.allow_download,
                       dinov2_path=options.dinov2_dir, aesthetic_head=options.aesthetic_head, **pretrained)


def check_judge_weights(spec: RenderSpec, options: RenderOptions) -> None:
    """Refuse an aesthetic head that cannot be read or does not fit the judge's CLIP (InputError,
    exit 2), before Ray starts: in the judge actor it would be a dead actor."""
    if spec.judge == "off" or options.aesthetic_head is None:
        return
    from .consistency.aesthetic_check import check_aesthetic_head

    check_aesthetic_head(judge_config(spec, options))


def make_judge(spec: RenderSpec, options: RenderOptions = RenderOptions(), settings: Settings | None = None):
    """The consistency judge (Ray actors) for `spec.judge`, or None when it is off. CLIP
    weights come from the checkpoint or the local cache; downloads only when allowed. With
    `gemini` the local scorers run as well (backend auto): they are its fallback."""
    if spec.judge == "off":
        return None
    from .consistency.pipeline_judge import create_pipeline_judge

    check_judge_weights(spec, options)  # again here for the ways in that did not check at their edge
    config = judge_config(spec, options)
    vision = make_vision_check(spec, options, settings, config.second_opinion_band)
    return create_pipeline_judge(config, spec.reference_images, vision=vision)


def planning_pipeline(store=None, options: RenderOptions = RenderOptions(), settings: Settings | None = None,
                      storyboard_given: bool = False):
    """A pipeline that plans and checks input only (no Ray, no judge). `settings`: the edge's
    (None: no provider keys)."""
    from .runtime.pipeline import RenderPipeline

    settings = settings if settings is not None else Settings()
    return RenderPipeline(store, planner=make_planner(settings.gemini, options.planner, storyboard_given), settings=settings,
                          allow_download=options.allow_download)


@contextmanager
def render_pipeline(spec: RenderSpec, store, runner, options: RenderOptions, settings: Settings, *, progress=None,
                    stop: threading.Event | None = None, judge_factory=None, on_judge=None) -> Iterator:
    """The pipeline that renders or resumes `spec` (the same planner, judge and options for
    every way in); its judge's actors are released when the block ends, however it ends.
    `settings` are the edge's (read once from its environment).
    `judge_factory(spec)` replaces the judge (tests, or a server's own policy); `on_judge(judge)`
    is told which judge was built (the CLI prints it)."""
    from .runtime.pipeline import RenderPipeline

    planner = make_planner(settings.gemini, options.planner, spec.storyboard_file is not None)
    judge = judge_factory(spec) if judge_factory is not None else make_judge(spec, options, settings)
    try:
        if judge is not None and on_judge is not None:
            on_judge(judge)
        yield RenderPipeline(store, runner, planner=planner, progress=progress, judge=judge, stop=stop,
                             stream_copy=options.stream_copy, settings=settings, allow_download=options.allow_download)
    finally:
        if judge is not None:
            judge.close()
