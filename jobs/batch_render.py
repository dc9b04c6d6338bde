"""Render every spec in a JSONL file on the Ray cluster this job runs in, N at a time.

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python jobs/batch_render.py specs.jsonl --store s3://bucket/runs --parallel 4

Each line is a RenderSpec as JSON, e.g. {"prompt": "a red fox in the snow", "duration_s": 30},
or an edit of an existing run, {"run_id": "...", "edits": [...]} (jobs/batch_edits.py).
A line's run id is derived from the job name and the line's content, so submitting the
same job again resumes unfinished renders and skips finished ones. A bad line gets its own
error and does not stop the others. Writes <out-dir>/<run id>.mp4 and a JSON summary
(<out-dir>/summary.json, or --summary, which may be s3://); exits 0 when every line is
done, 1 when any failed or was invalid, 2 when the spec file cannot be read, 130 when stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from pathlib import Path

from jobs.batch_edits import edit_line
from jobs.batch_specs import SpecLine, parse_spec_lines
from jobs.batch_summary import (
    RenderRow,
    guarded_row,
    exit_code,
    now_iso,
    summary_document,
    summary_table,
)
from jobs.locations import base_name, is_s3, read_text, write_text
from longvid.wiring import DEFAULT_CLIP_MODEL, RenderOptions, planning_pipeline, render_pipeline
from longvid.errors import InputError
from longvid.manifest import RunStatus
from longvid.observability.logs import configure_logging, secret_values
from longvid.settings import Settings

# Set in the environment of a driver started by `ray job submit`.
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch_render.py", description=__doc__.splitlines()[0])
    parser.add_argument("specs", help="JSONL file, one RenderSpec per line: a local path or s3://bucket/key")
    parser.add_argument("--store", default=None,
                        help="run folders: a local folder or s3://bucket/prefix (default: $LONGVID_STORE or ./runs)")
    parser.add_argument("--out-dir", type=Path, default=Path("renders"),
                        help="local folder for a copy of each finished video and summary.json (default: %(default)s)")
    parser.add_argument("--no-copy", action="store_true",
                        help="leave finished videos in the store only (e.g. on S3), no copies in --out-dir")
    parser.add_argument("--summary", default=None, help="where to write the JSON summary, local or s3:// (default: OUT_DIR/summary.json)")
    parser.add_argument("--parallel", type=int, default=2, help="renders in flight at once (default: %(default)s)")
    parser.add_argument("--job-name", default=None, help="names the runs (default: the spec file's name); keep it to resume")
    parser.add_argument("--planner", default="auto", choices=["auto", "gemini", "offline"],
                        help="auto: Gemini when GOOGLE_API_KEY/GEMINI_API_KEY is set, else offline (default)")
    parser.add_argument("--ray-address", default=None, help="Ray cluster (default: RAY_ADDRESS, set by `ray job submit`; else in-process)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for an in-process Ray (default: all)")
    parser.add_argument("--clip-model", default=None,
                        help="open_clip architecture for the judge (default: $LONGVID_CLIP_MODEL, else ViT-B-32)")
    parser.add_argument("--clip-checkpoint", type=Path, default=None, help="local CLIP weights file for the judge")
    parser.add_argument("--allow-download", action="store_true", help="let the judge download CLIP weights if none are cached")
    parser.add_argument("--no-stream-copy", action="store_true", help="re-encode every frame at merge")
    return parser


# -- wiring: the same planner and judge choices as `longvid render` ------------------------

# -- progress: one line per event, prefixed with the spec's line -----------------------------

class LineProgress:
    def __init__(self, console, label: str):
        self.console, self.label = console, label
        self.total = 0
        self.accepted: set[int] = set()

    def say(self, text: str) -> None:
        self.console.print(f"{self.label} {text}")

    def planned(self, storyboard, jobs, run):
        self.total = len(jobs)
        self.say(f"{len(storyboard.scenes)} scenes, {len(jobs)} segments -> {run.location()}")

    def segment(self, index, state, detail=""):
        from longvid.spec import SegmentState

        if state is SegmentState.ACCEPTED:
            self.accepted.add(index)
        self.say(f"segment {index}: {state.value}{' ' + detail if detail else ''} ({len(self.accepted)}/{self.total} accepted)")

    def merging(self):
        self.say("merging")


# -- one line ----------------------------------------------------------------------------

@dataclass
class BatchJob:
    args: argparse.Namespace
    store: object
    console: object
    stop: threading.Event
    settings: Settings = field(default_factory=Settings)  # main passes Settings.from_env()

    def render(self, item: SpecLine) -> RenderRow:
        """Render (or resume, or skip) one spec; every failure becomes the row's error."""
        base = RenderRow(line=item.line, status="failed", run_id=item.run_id, prompt=item.spec.prompt[:200])
        progress = LineProgress(self.console, f"[{item.line:04d} {item.run_id}]")
        return guarded_row(base, lambda: self._render(item, base, progress), progress.say)

    def _render(self, item: SpecLine, base: RenderRow, progress: LineProgress) -> RenderRow:
        from longvid.runtime import RaySegmentRunner
        from longvid.runtime.layout import FINAL

        spec, run_id = item.spec, item.run_id
        action = "rendered"
        if self.store.has_run(run_id):
            finished = self.finished_row(base, progress)
            if finished is not None:
                return finished
            action = "resumed"
        if self.stop.is_set():
            return _replace(base, status="cancelled", action=action, error="not started: the job was stopped; submit it again to render")
        options = self.options()
        planning_pipeline(self.store, options, self.settings, spec.storyboard_file is not None).check_inputs(spec)  # refuse before starting judge actors

        def say_judge(judge) -> None:
            progress.say(f"judge: {judge.backend}" + (f" ({judge.notes})" if judge.notes else ""))

        with render_pipeline(spec, self.store, RaySegmentRunner(), options, self.settings, progress=progress, stop=self.stop,
                             on_judge=say_judge) as pipeline:
            progress.say(("resuming" if action == "resumed" else "rendering") + f" {spec.prompt[:80]!r}")
            result = pipeline.render(spec, output=self.output_path(run_id), run_id=run_id)
        return _replace(base, status="done", action=action, video_s=round(result.duration_s, 3), cost_usd=result.cost_usd,
                        segments=result.segments, generated_segments=result.generated_segments,
                        reused_segments=result.reused_segments, final=self.store.open(run_id).location(FINAL),
                        output=result.output if self.output_path(run_id) else None, warnings=list(result.warnings))

    def finished_row(self, base: RenderRow, progress: LineProgress) -> RenderRow | None:
        """The row for a run that finished in an earlier job, or None if it must go on."""
        from longvid.runtime.layout import FINAL, REPORT
        from longvid.runtime.store import atomic_copy, read_manifest

        run = self.store.open(base.run_id)
        manifest = read_manifest(run)
        if manifest.status is not RunStatus.DONE or not run.exists(FINAL) or not run.exists(REPORT):
            return None
        report = json.loads(run.read_bytes(REPORT))
        output = self.output_path(base.run_id)
        if output is not None and not output.exists():
            atomic_copy(run.local_path(FINAL), output)
        progress.say("already done in an earlier job; not rendered again")
        return _replace(base, status="done", action="already_done", video_s=report.get("duration_s"), cost_usd=manifest.cost_usd,
                        segments=len(manifest.segments), generated_segments=0, reused_segments=len(manifest.segments),
                        final=run.location(FINAL), output=str(output) if output else None, warnings=list(manifest.warnings))

    def options(self) -> RenderOptions:
        return RenderOptions(planner=self.args.planner, clip_model=self.args.clip_model or self.settings.clip.model or DEFAULT_CLIP_MODEL,
                             clip_checkpoint=self.args.clip_checkpoint or self.settings.clip.checkpoint,
                             allow_download=self.args.allow_download, stream_copy=not self.args.no_stream_copy)

    def output_path(self, run_id: str) -> Path | None:
        return None if self.args.no_copy else self.args.out_dir / f"{run_id}.mp4"


# -- the whole job -------------------------------------------------------------------------

def run_lines(job: BatchJob, lines: list[SpecLine], parallel: int, on_rows) -> list[RenderRow]:
    """Invalid lines are reported at once; identical lines are rendered once. The rest run
    in `parallel` driver threads, each one RenderPipeline whose segments are Ray tasks: the
    segments of all N renders are in flight together, spread by Ray over every node (and,
    on an autoscaling cluster, their pending demand is what brings up more GPU workers).
    Threads rather than processes: a render's driver work is waiting on Ray and on I/O."""
    rows: list[RenderRow] = []
    first_line: dict[str, SpecLine] = {}
    copies: dict[str, list[int]] = {}
    for item in lines:
        if item.error is not None:
            rows.append(RenderRow(line=item.line, status="invalid", error=item.error))
        elif item.work_key in first_line:
            copies[item.work_key].append(item.line)
        else:
            first_line[item.work_key] = item
            copies[item.work_key] = []
    if rows:
        for row in rows:
            job.console.print(f"[{row.line:04d}] invalid: {row.error}")
        on_rows(list(rows))
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="render") as pool:
        futures = {pool.submit(job.render, item): item for item in first_line.values() if item.edit is None}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                item = futures[future]
                row = future.result()
                batch = [row] + [row.duplicate(line, of=item.line) for line in copies[item.work_key]]
                rows.extend(batch)
                on_rows(batch)
    for item in (i for i in first_line.values() if i.edit is not None):  # after the renders, in file order: edits build on each other
        row = edit_line(job, item, LineProgress(job.console, f"[{item.line:04d} {item.run_id}]"))
        batch = [row] + [row.duplicate(line, of=item.line) for line in copies[item.work_key]]
        rows.extend(batch)
        on_rows(batch)
    return sorted(rows, key=lambda r: r.line)


def relative_path_warnings(args: argparse.Namespace, in_ray_job: bool) -> list[str]:
    """Under `ray job submit` (main looks for RAY_JOB_ENV) the working directory is a
    temporary copy: relative local paths would put runs there, where the next submission
    cannot find them to resume."""
    if not in_ray_job:
        return []
    named = {"--store": args.store, "--summary": args.summary or args.out_dir / "summary.json"}
    if not args.no_copy:
        named["--out-dir"] = args.out_dir
    return [f"{flag} {value} is relative: it lands in the job's temporary working directory ({os.getcwd()}); "
            f"pass an absolute path or s3://bucket/prefix so a re-submitted job can resume"
            for flag, value in named.items() if value is not None and not is_s3(value) and not Path(str(value)).is_absolute()]


SUMMARY_EVERY_S = 15.0


def main(argv: list[str] | None = None, stop: threading.Event | None = None, handle_signals: bool = False) -> int:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    stop = stop or threading.Event()
    # Job logs are not a terminal: give the summary table room instead of 80 columns.
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    if args.parallel < 1:
        console.print("batch_render: error: --parallel must be at least 1")
        return 2
    if args.num_cpus is not None and args.num_cpus < 1:
        console.print(f"batch_render: error: --num-cpus must be at least 1 (got {args.num_cpus})")
        return 2
    if str(args.out_dir).startswith("s3:"):
        console.print("batch_render: error: --out-dir is a local folder; keep videos on S3 with --store s3://… --no-copy "
                      "and put the summary there with --summary s3://…")
        return 2
    summary_at = args.summary or str(args.out_dir / "summary.json")
    job_name = args.job_name or base_name(args.specs)
    try:
        settings = Settings.from_env()  # the one read of the environment; passed down from here
        configure_logging("json", secrets=secret_values(settings))  # events on stderr, one JSON object a line
        args.store = args.store or settings.store.location
        lines = parse_spec_lines(read_text(args.specs), job_name)
        if not lines:
            raise InputError(f"{args.specs} has no specs; write one JSON object per line")
    except InputError as exc:
        console.print(f"batch_render: error: {exc}")
        return 2
    for warning in relative_path_warnings(args, RAY_JOB_ENV in os.environ):
        console.print(f"batch_render: warning: {warning}")

    from longvid.runtime import ensure_ray, open_store

    ensure_ray(args.ray_address or settings.ray_address, args.num_cpus)
    if handle_signals:  # after ray.init, which installs its own SIGTERM handler over any earlier one
        stop_on_signals(stop)
    store = open_store(args.store, settings.store.s3_part_mb)
    console.print(f"job {job_name}: {len(lines)} specs from {args.specs}, {args.parallel} at a time, runs in {store.url}")
    started_at, started = now_iso(), time.perf_counter()
    all_rows: list[RenderRow] = []
    lock = threading.Lock()
    last_write = [0.0]

    def write_summary(finished: bool) -> bool:
        document = summary_document(job=job_name, specs=str(args.specs), store=store.url, parallel=args.parallel,
                                    started_at=started_at, wall_s=time.perf_counter() - started, rows=all_rows, finished=finished)
        try:
            write_text(summary_at, json.dumps(document, indent=2, ensure_ascii=False))
        except Exception as exc:  # a store hiccup must not lose the renders: the next write carries every row
            console.print(f"batch_render: warning: could not write the summary to {summary_at}: {exc.__class__.__name__}")
            return False
        last_write[0] = time.monotonic()
        return True

    def on_rows(rows: list[RenderRow]) -> None:
        # The summary is kept current while the job runs, at most every SUMMARY_EVERY_S: a
        # rewrite per finished line would upload O(lines^2) bytes over a long job.
        with lock:
            all_rows.extend(rows)
            if time.monotonic() - last_write[0] >= SUMMARY_EVERY_S:
                write_summary(finished=False)

    job = BatchJob(args=args, store=store, console=console, stop=stop, settings=settings)
    try:
        rows = run_lines(job, lines, args.parallel, on_rows)
    finally:  # the rows finished so far are written whatever ended the job
        with lock:
            for attempt in range(3):
                if write_summary(finished=True):
                    break
                time.sleep(2**attempt)
    console.print(summary_table(rows, f"job {job_name}: {time.perf_counter() - started:.1f} s"))
    done = sum(1 for r in rows if r.status == "done")
    console.print(f"{done} done, {len(rows) - done} not done; summary in {summary_at}")
    return exit_code(rows, stop.is_set())


def stop_on_signals(stop: threading.Event) -> None:
    """First SIGTERM (`ray job stop`) or Ctrl-C: stop submitting, cancel what runs, and leave
    every run resumable. A second one aborts at once."""

    def handler(signum, frame):
        if stop.is_set():
            # Render threads cannot be interrupted, and the executor would wait for them: leave
            # now. Every run's state is already on disk (or S3); the periodic summary stands.
            print("batch_render: aborted; resubmit the job to resume", file=sys.stderr, flush=True)
            os._exit(130)
        stop.set()
        print("batch_render: stopping; runs stay resumable (signal again to abort now)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs signed download URLs at INFO
    sys.exit(main(handle_signals=True))
