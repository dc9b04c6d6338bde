"""The `longvid` command.

Exit codes: 0 done; 1 the render failed (the run folder keeps what was made); 2 the request
was invalid (nothing was started). Errors are one line on stderr; --json puts a
machine-readable summary (or error) on stdout. What each command prints: cli_views.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import re
import sys
from pathlib import Path

from pydantic import ValidationError

from .cli_edit import add_edit_parsers, cmd_edit, cmd_history
from .cli_narration import narration_choice, print_narration_timing
from .cli_views import CliProgress, print_plan_table, print_providers, print_render_summary, print_runs, print_status
from .errors import InputError, LongvidError, describe_validation_error
from .settings import Settings, with_local_model
from .spec import (
    DEFAULT_DURATION_S,
    AspectRatio,
    ContinuityMode,
    QualityTier,
    RenderSpec,
    Resolution,
)


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what the video shows, in any language")
    parser.add_argument("-d", "--duration", type=float, default=DEFAULT_DURATION_S, help="length in seconds, 5-600 (default %(default)g)")
    parser.add_argument("--aspect", default=AspectRatio.LANDSCAPE.value, choices=[a.value for a in AspectRatio], help="aspect ratio (default %(default)s)")
    parser.add_argument("--resolution", default=Resolution.P720.value, choices=[r.value for r in Resolution], help="output resolution (default %(default)s)")
    parser.add_argument("--fps", type=int, default=24, help="frames per second (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="same prompt + seed = same video (default %(default)s)")
    parser.add_argument("--quality", default=QualityTier.STANDARD.value, choices=[q.value for q in QualityTier])
    parser.add_argument("--continuity", default=ContinuityMode.AUTO.value, choices=[c.value for c in ContinuityMode],
                        help="chain: each segment starts from the previous one (sequential); anchor: all in parallel; "
                             "auto: chain inside a scene, parallel across scenes (default)")
    parser.add_argument("--provider", default="preview",
                        help="video provider: preview (the offline renderer, default), runway, veo, a list to route "
                             "between with failover (e.g. runway,veo), or auto (every configured paid provider)")
    parser.add_argument("--budget", type=float, default=None, help="hard limit in USD for paid providers")
    _planner_argument(parser)
    parser.add_argument("--judge", default="auto", choices=["auto", "clip", "structural", "off", "gemini"],
                        help="consistency judge: auto (CLIP when its weights are on this machine, else a weight-free "
                             "structural scorer), clip (an error without weights), structural, off, gemini (Gemini's "
                             "vision verdict on every segment, paid; needs a Gemini key) (default auto)")
    parser.add_argument("--image", dest="images", action="append", default=[], type=Path, help="reference image (repeatable)")
    parser.add_argument("--storyboard", type=Path, default=None, help="a storyboard file (JSON or YAML) to use instead of planning")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.add_argument("--candidates", type=int, default=1,
                        help="best-of-N: make N candidates of each scene opener in parallel and keep the one the judge "
                             "scores best (1..8, default 1; lowered with a warning to what --budget allows)")
    parser.add_argument("--candidates-for", choices=["openers", "all"], default="openers",
                        help="which segments get --candidates: scene openers (default) or all")
    parser.add_argument("--narration", default="auto", metavar="auto|off|FILE",
                        help="auto: the planner writes a voice-over for each scene (default); off: silent; FILE: a text "
                             "file with one narration per scene, scenes separated by a blank line")
    parser.add_argument("--speech", default="auto", choices=["auto", "espeak", "piper", "gemini"],
                        help="voice engine: auto (espeak-ng when installed, default), espeak, piper (a local voice file), "
                             "gemini (Gemini speech, paid, needs a Gemini key)")
    parser.add_argument("--voice", default=None, help="the engine's voice: an espeak-ng voice (en-us, cmn), a Piper voice "
                                                      "name or .onnx path, or a Gemini voice (Kore)")
    parser.add_argument("--music", type=Path, default=None,
                        help="background music (any audio file FFmpeg decodes): looped or trimmed to the video, faded, "
                             "ducked under the narration")
    parser.add_argument("--burn-subtitles", action="store_true",
                        help="draw the subtitles into the picture too (re-encodes the video; the soft track is always there)")
    parser.add_argument("--subtitles", default="on", choices=["on", "off"],
                        help="off: no subtitle track in the video and no .srt/.vtt beside -o (the run folder keeps them)")
    _model_dir_argument(parser)


def _model_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="--provider local: a diffusers model folder (default: $LONGVID_LOCAL_MODEL_DIR, else the "
                             "Hugging Face cache; --allow-download fetches the model)")


def _planner_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--planner", default="auto", choices=["auto", "gemini", "offline"],
                        help="auto: Gemini when GOOGLE_API_KEY/GEMINI_API_KEY is set, else the offline planner (default); "
                             "gemini: Gemini or an error; offline: no network. The planner also rewords a prompt a "
                             "provider refused for safety")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longvid", description="Turn a prompt into a finished long video.")
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="print the storyboard and segments for a prompt, without rendering")
    _spec_arguments(plan)

    render = sub.add_parser("render", help="plan, generate (as Ray tasks) and merge a video")
    _spec_arguments(render)
    render.add_argument("-o", "--output", type=Path, default=None, help="where to write the MP4 (default: the run folder's final.mp4)")
    _store_argument(render)
    render.add_argument("--run-id", default=None, help="name the run folder (default: time + hash); an existing run with the same request is resumed")
    _ray_arguments(render)

    resume = sub.add_parser("resume", help="continue an interrupted render: keep finished segments, poll submitted ones, redo the rest")
    resume.add_argument("run_id", help="a run id, or the run folder's path")
    resume.add_argument("-o", "--output", type=Path, default=None, help="where to write the MP4 (default: where the run was going to write it)")
    _store_argument(resume)
    _ray_arguments(resume)
    _planner_argument(resume)
    resume.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    _model_dir_argument(resume)

    status = sub.add_parser("status", help="show a run's segments, cost so far and what resume would do")
    status.add_argument("run_id", help="a run id, or the run folder's path")
    _store_argument(status)
    status.add_argument("--json", action="store_true")

    runs = sub.add_parser("runs", help="list the runs in a store")
    _store_argument(runs)
    runs.add_argument("--json", action="store_true")

    review = sub.add_parser("review", help="(re)write a run's contact sheet and HTML report")
    review.add_argument("run_id", help="a run id, or the run folder's path")
    _store_argument(review)

    providers = sub.add_parser("providers", help="list video providers: configured or not, model, lengths, price, breaker state")
    _store_argument(providers)
    providers.add_argument("--json", action="store_true")

    add_edit_parsers(sub, _store_argument, _ray_arguments, _planner_argument)  # edit, history: cli_edit.py
    return parser


def check_num_cpus(num_cpus: int | None) -> None:
    """--num-cpus: an in-process Ray with no CPU could run nothing (its tasks would wait forever)."""
    if num_cpus is not None and num_cpus < 1:
        raise InputError(f"--num-cpus must be at least 1 (got {num_cpus}); leave it out to use every CPU")


def _store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", "--runs-dir", dest="store", default=None,
                        help="where run folders live: a local folder or s3://bucket/prefix (default: $LONGVID_STORE or ./runs)")


def _ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", default=None, help="Ray cluster to use (default: RAY_ADDRESS, else start Ray in-process)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for an in-process Ray (default: all)")
    parser.add_argument("--clip-model", default=None,
                        help="open_clip architecture for the judge (default: $LONGVID_CLIP_MODEL, else ViT-B-32)")
    parser.add_argument("--clip-checkpoint", type=Path, default=None, help="local CLIP weights file for the judge")
    parser.add_argument("--allow-download", action="store_true",
                        help="let the judge download CLIP (and DINOv2) weights, and --provider local its model, if none are cached")
    parser.add_argument("--second-opinion", action="store_true",
                        help="show segments with borderline judge scores to Gemini's vision judge (paid; needs a Gemini key)")
    parser.add_argument("--judge-model", default=None,
                        help="Gemini model of the vision judge (default: $LONGVID_GEMINI_MODEL, else the planner's default)")
    parser.add_argument("--no-stream-copy", action="store_true",
                        help="re-encode every frame at merge instead of copying the GOPs no transition touches")
    parser.add_argument("--log-format", choices=["text", "json"], default=None,
                        help="log the render's events on stderr: json (one object per line with run_id, segment, provider, "
                             "task_id; no progress table) or text (default: progress table only)")
    parser.add_argument("--dinov2", type=Path, default=None, metavar="DIR",
                        help="DINOv2 model folder for the judge's subject consistency (default: facebook/dinov2-small "
                             "from the Hugging Face cache when it is there; skipped with a note when not)")
    parser.add_argument("--aesthetic-head", type=Path, default=None, metavar="FILE",
                        help="LAION aesthetic predictor head (.safetensors or .pth) for the judge's aesthetic score, "
                             "made for OpenAI's CLIP: needs --clip-pretrained openai and the head of --clip-model's size "
                             "(ViT-B-32: sa_0_4_vit_b_32_linear.pth; ViT-L-14: sa_0_4_vit_l_14_linear.pth)")
    parser.add_argument("--clip-pretrained", default=None, metavar="TAG",
                        help="open_clip pretrained tag of the judge's CLIP (default: laion2b_s34b_b79k; openai: OpenAI's "
                             "weights, which --aesthetic-head needs; with --clip-checkpoint, whose weights the file holds)")


def _spec_from(args: argparse.Namespace) -> RenderSpec:
    try:
        return RenderSpec(
            prompt=args.prompt,
            duration_s=args.duration,
            aspect_ratio=args.aspect,
            resolution=args.resolution,
            fps=args.fps,
            seed=args.seed,
            quality=args.quality,
            continuity=args.continuity,
            provider=args.provider,
            judge=args.judge,
            budget_usd=args.budget,
            reference_images=args.images,
            storyboard_file=args.storyboard,
            candidates=getattr(args, "candidates", 1),
            candidates_for=getattr(args, "candidates_for", "openers"),
            narration=narration_choice(args.narration),
            speech=args.speech,
            voice=args.voice,
            music=args.music,
            burn_subtitles=args.burn_subtitles,
            second_opinion=getattr(args, "second_opinion", False),
            judge_model=getattr(args, "judge_model", None),
            subtitles=args.subtitles == "on",
        )
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc)) from None


def _options(args: argparse.Namespace):
    """How this command wants its renders built (planner, CLIP weights, merge)."""
    from .wiring import DEFAULT_CLIP_MODEL, RenderOptions

    clip = args.settings.clip
    return RenderOptions(planner=getattr(args, "planner", "auto"), clip_model=getattr(args, "clip_model", None) or clip.model or DEFAULT_CLIP_MODEL,
                         clip_checkpoint=getattr(args, "clip_checkpoint", None) or clip.checkpoint,
                         allow_download=getattr(args, "allow_download", False), stream_copy=not getattr(args, "no_stream_copy", False),
                         judge_model=getattr(args, "judge_model", None), second_opinion=getattr(args, "second_opinion", False),
                         dinov2_dir=getattr(args, "dinov2", None), aesthetic_head=getattr(args, "aesthetic_head", None),
                         clip_pretrained=getattr(args, "clip_pretrained", None))


def _open_store(args: argparse.Namespace):
    from .runtime import open_store

    return open_store(args.store, args.settings.store.s3_part_mb)


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def cmd_plan(args: argparse.Namespace) -> int:
    from .wiring import planning_pipeline

    spec = _spec_from(args)
    planned = planning_pipeline(options=_options(args), settings=args.settings,
                                storyboard_given=spec.storyboard_file is not None).plan(spec)
    storyboard, jobs = planned.storyboard, planned.jobs
    for warning in planned.warnings:
        print(f"longvid: warning: {warning}", file=sys.stderr)
    estimate = planned.estimate
    if args.json:
        print(json.dumps({"storyboard": storyboard.model_dump(mode="json"),
                          "segments": [j.model_dump(mode="json", exclude={"scene"}) for j in jobs],
                          "estimated_cost": estimate.to_dict(),
                          "narration": planned.narration.record.model_dump(mode="json") if planned.narration else None},
                         ensure_ascii=False, indent=2))
        return 0
    if estimate.high_usd > 0:  # both bounds: every segment at the cheapest candidate, and all failed over to the dearest
        bounds = f"${estimate.low_usd:.2f}" + (f" to ${estimate.high_usd:.2f}" if estimate.high_usd > estimate.low_usd else "")
        print(f"estimated cost: {bounds} ({estimate.cheapest}" + (f" to {estimate.dearest})" if estimate.dearest != estimate.cheapest else ")"),
              file=sys.stderr)
    print_plan_table(storyboard, jobs, planned.narration.timing.total_s if planned.narration else spec.duration_s)
    if planned.narration is not None:
        print_narration_timing(planned.narration.record)
    return 0


def _graceful_stop(stop) -> None:
    """First Ctrl-C / SIGTERM: stop submitting, cancel what runs, leave a resumable run.
    A second one interrupts at once."""
    import signal

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("longvid: stopping after recording state (press Ctrl-C again to abort now)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _run_pipeline(args: argparse.Namespace, spec: RenderSpec, work) -> int:
    """Start Ray, run `work(pipeline)` with live progress and graceful stop, print the summary."""
    from .runtime.protocols import NullProgress

    console = _console()
    json_logs = args.log_format == "json"  # stderr carries JSON lines only: events instead of the progress table
    progress = NullProgress() if json_logs else CliProgress(console, live=console.is_terminal and not args.json)
    # stdout carries only the summary: Ray's workers and raylet print to the driver's stdout
    # while it runs, which would break `--json`, so that goes to stderr until the render ends
    # (as log lines with `--log-format json`, whose stderr is JSON lines only).
    answer = sys.stdout
    ray_output = _LinesToLog(logging.getLogger("longvid.ray")) if json_logs else sys.stderr
    with contextlib.redirect_stdout(ray_output):
        result = _render_with_ray(args, spec, work, progress, console, json_logs)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2), file=answer, flush=True)
    elif json_logs:
        logging.getLogger("longvid.cli").info("done %s: %.2f s, cost $%.2f", result.output, result.duration_s, result.cost_usd,
                                              extra={"run_id": result.run_id})
    else:
        print_render_summary(console, result)
    return 0


class _LinesToLog(io.TextIOBase):
    """A text stream that logs each line written to it (what Ray prints on the driver)."""

    _ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger, self._pending = logger, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.strip():
                self._logger.info(self._ANSI.sub("", line))
        return len(text)


def _render_with_ray(args: argparse.Namespace, spec: RenderSpec, work, progress, console, json_logs: bool):
    import threading

    from .runtime import RaySegmentRunner, ensure_ray
    from .wiring import render_pipeline

    ensure_ray(args.ray_address or args.settings.ray_address, args.num_cpus)

    def say_judge(judge) -> None:
        if not args.json and not json_logs:
            console.print(f"judge: {judge.backend}" + (f" ({judge.notes})" if judge.notes else ""))

    stop = threading.Event()
    _graceful_stop(stop)
    try:
        with render_pipeline(spec, _open_store(args), RaySegmentRunner(), _options(args), args.settings, progress=progress, stop=stop,
                             on_judge=say_judge) as pipeline:
            result = work(pipeline)
    finally:
        progress.close()
    return result


def cmd_render(args: argparse.Namespace) -> int:
    from .wiring import check_judge_weights, check_vision_judge, planning_pipeline

    spec = _spec_from(args)
    if args.output is not None and args.output.suffix.lower() != ".mp4":
        raise InputError(f"output {args.output} must end in .mp4")
    check_vision_judge(spec, _options(args), args.settings)
    check_judge_weights(spec, _options(args))  # an aesthetic head that cannot be used: exit 2 before Ray
    # Planned before Ray starts, so bad input is refused at once; the plan (and its warnings) goes with the render.
    planned = planning_pipeline(_open_store(args), _options(args), args.settings, spec.storyboard_file is not None).plan(spec)
    return _run_pipeline(args, spec, lambda p: p.render(spec, output=args.output, run_id=args.run_id, planned=planned))


def cmd_resume(args: argparse.Namespace) -> int:
    from .runtime.store import read_manifest

    run = _open_store(args).open(args.run_id)  # a missing run is an input error, before Ray starts
    spec = read_manifest(run).spec
    from .wiring import check_judge_weights, check_vision_judge

    check_vision_judge(spec, _options(args), args.settings)  # a Gemini judge without a key: exit 2 before Ray
    check_judge_weights(spec, _options(args))
    return _run_pipeline(args, spec, lambda p: p.resume(args.run_id, output=args.output))


def cmd_status(args: argparse.Namespace) -> int:
    import functools

    from .providers import provider_capabilities
    from .runtime.resume import resume_plan
    from .runtime.store import clip_verifies, read_manifest

    run = _open_store(args).open(args.run_id)
    manifest = read_manifest(run)
    file_ok = functools.partial(clip_verifies, run)

    actions = resume_plan(manifest, file_ok, lambda name: provider_capabilities(name, args.settings).idempotent_submit)
    print_status(manifest, actions, args.json)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .runtime.store import read_manifest

    store = _open_store(args)
    rows = []
    for run_id in store.list_runs():
        try:
            manifest = read_manifest(store.open(run_id))
            rows.append({"run_id": run_id, "status": manifest.status, "duration_s": manifest.duration_s,
                         "segments": len(manifest.segments), "cost_usd": manifest.cost_usd, "prompt": manifest.spec.prompt[:60]})
        except LongvidError as exc:
            rows.append({"run_id": run_id, "status": "unreadable", "error": str(exc)})
    print_runs(rows, args.json)
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from .manifest import RunPlan
    from .review import write_review
    from .runtime.layout import PLAN
    from .runtime.store import read_manifest

    run = _open_store(args).open(args.run_id)
    names = write_review(run, read_manifest(run), RunPlan.model_validate_json(run.read_bytes(PLAN)))
    for name in names:
        print(run.location(name))
    return 0


def cmd_providers(args: argparse.Namespace) -> int:
    """Each provider: configured or not (never the key itself), model, lengths, price, and
    its circuit breaker as the last render under this store left it."""
    from .providers import PROVIDER_SETTINGS, available_providers, provider_capabilities, provider_configured
    from .providers.local import local_model_state
    from .runtime.layout import health_state

    store = _open_store(args)
    rows = []
    for name in available_providers():
        caps = provider_capabilities(name, args.settings)
        d = caps.durations
        raw = store.get_state(health_state(name))
        health = json.loads(raw) if raw else None
        rows.append({
            "name": name, "configured": provider_configured(name, args.settings), "hint": PROVIDER_SETTINGS.get(name, (None, ""))[1],
            "model": caps.model, "durations_s": list(d.allowed) if d.allowed else [d.min_s, d.max_s],
            "discrete_durations": d.allowed is not None, "usd_per_second": caps.price_per_second_usd,
            "max_concurrent": caps.max_concurrent_tasks,
            "breaker": health["breaker"] if health else "closed", "health": health,
            **(local_model_state(args.settings.local) if caps.resident_model else {}),
        })
    print_providers(rows, args.json)
    return 0


def _say_error(args: argparse.Namespace, line: str) -> None:
    """The one error line on stderr: a JSON log line when the logs are JSON."""
    if getattr(args, "log_format", None) == "json":
        logging.getLogger("longvid.cli").error(line)
    else:
        print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    # httpx logs whole URLs at INFO, and providers' download URLs carry signed tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"plan": cmd_plan, "render": cmd_render, "resume": cmd_resume, "status": cmd_status, "runs": cmd_runs, "providers": cmd_providers, "review": cmd_review,
                "edit": cmd_edit, "history": cmd_history}  # cli_edit.py
    try:
        args.settings = with_local_model(Settings.from_env(), getattr(args, "model_dir", None),
                                         getattr(args, "allow_download", False))  # the one read of the environment; passed down from here
        check_num_cpus(getattr(args, "num_cpus", None))
        if getattr(args, "log_format", None):
            from .observability.logs import configure_logging, secret_values

            configure_logging(args.log_format, secrets=secret_values(args.settings))
        if getattr(args, "store", "") is None:
            args.store = args.settings.store.location
        if args.command in ("resume", "status", "review", "edit", "history"):  # a run id, or the run folder's path render printed
            from .runtime.run_ref import resolve_run_ref

            args.store, args.run_id = resolve_run_ref(args.run_id, args.store)
        return handlers[args.command](args)
    except LongvidError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(exc), "exit_code": exc.exit_code}))
        _say_error(args, f"longvid: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        print("longvid: interrupted; the run folder keeps what was finished", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an environment failure: one line (LONGVID_DEBUG=1 for the traceback)
        settings = getattr(args, "settings", None)
        if settings is not None and settings.debug:
            raise
        if getattr(args, "json", False):
            print(json.dumps({"error": f"{exc.__class__.__name__}: {exc}", "exit_code": 1}))
        _say_error(args, f"longvid: error: {exc.__class__.__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
