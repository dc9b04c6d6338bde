"""What the `longvid` command shows: the live progress of a render, and the tables, lines
and JSON of `plan`, `render`, `status`, `runs` and `providers`. The commands (cli.py)
gather the data; these only print it."""

from __future__ import annotations

import json
import time

from .spec import SegmentState


def print_plan_table(storyboard, jobs, duration_s: float) -> None:
    """The storyboard, one row per scene, with its seconds and segments."""
    from rich.console import Console
    from rich.table import Table

    seconds: dict[int, float] = {}
    for job in jobs:
        seconds[job.scene_index] = seconds.get(job.scene_index, 0.0) + job.duration_s
    table = Table(title=f"{storyboard.title} — {duration_s:g} s, {len(storyboard.scenes)} scenes, {len(jobs)} segments ({storyboard.planner} planner)")
    for column in ("#", "seconds", "segments", "camera", "lighting", "palette", "then", "description"):
        table.add_column(column, overflow="fold", no_wrap=column != "description")
    for i, scene in enumerate(storyboard.scenes):
        table.add_row(
            str(i + 1),
            f"{seconds.get(i, 0):.1f}",
            str(sum(1 for j in jobs if j.scene_index == i)),
            scene.camera_movement.value,
            scene.lighting.value,
            " ".join(f"[{c}]■[/]" for c in scene.color_palette),
            scene.transition.value if i + 1 < len(storyboard.scenes) else "end",
            scene.description,
        )
    Console().print(table)


class CliProgress:
    """Live per-segment table on a terminal; one line per event otherwise."""

    def __init__(self, console, live: bool):
        self.console, self.live_mode = console, live
        self.jobs = []
        self.states: dict[int, tuple[SegmentState, str, float]] = {}
        self.started = time.perf_counter()
        self.live = None
        self.stage = "generating"

    def planned(self, storyboard, jobs, run):
        self.jobs = jobs
        self.states = {j.index: (SegmentState.PENDING, "", 0.0) for j in jobs}
        self.console.print(f"run {run.run_id}: {len(storyboard.scenes)} scenes, {len(jobs)} segments -> {run.location()}")
        if self.live_mode:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def _table(self):
        from rich.table import Table

        done = sum(1 for s, _, _ in self.states.values() if s is SegmentState.ACCEPTED)
        table = Table(title=f"{self.stage}: {done}/{len(self.jobs)} segments, {time.perf_counter() - self.started:.0f} s")
        for column in ("seg", "scene", "seconds", "state", "detail"):
            table.add_column(column)
        colours = {SegmentState.ACCEPTED: "green", SegmentState.FAILED: "red", SegmentState.SUBMITTED: "yellow"}
        for job in self.jobs:
            state, detail, _ = self.states[job.index]
            colour = colours.get(state, "white")
            table.add_row(str(job.index), str(job.scene_index + 1), f"{job.duration_s:.2f}", f"[{colour}]{state.value}[/]", detail)
        return table

    def segment(self, index, state, detail=""):
        self.states[index] = (state, detail, time.perf_counter())
        if self.live is not None:
            self.live.update(self._table())
        else:
            done = sum(1 for s, _, _ in self.states.values() if s is SegmentState.ACCEPTED)
            self.console.print(f"segment {index}: {state.value} {detail} ({done}/{len(self.jobs)} done)".rstrip())

    def merging(self):
        self.stage = "merging"
        if self.live is not None:
            self.live.update(self._table())
        else:
            self.console.print("merging segments")

    def close(self):
        if self.live is not None:
            self.live.stop()
            self.live = None


def print_render_summary(console, result) -> None:
    """A finished render in a few lines: output, length, segments, cost, providers, warnings."""
    console.print(
        f"[bold green]done[/] {result.output}: {result.duration_s:.2f} s, {result.width}x{result.height} @ {result.fps} fps, "
        f"{result.segments} segments in {result.scenes} scenes ({result.generated_segments} generated, {result.reused_segments} reused), "
        f"cost ${result.cost_usd:.2f}, wall {result.wall_s:.1f} s "
        f"(merge {result.merge.seconds:.2f} s, {result.merge.copied_frames} frames copied, {result.merge.encoded_frames} re-encoded)"
    )
    if len(result.providers_used) > 1 or result.cost_usd > 0:
        parts = [f"{name}: {count} segment(s), ${result.cost_by_provider.get(name, 0.0):.2f}" for name, count in sorted(result.providers_used.items())]
        parts += [f"{name}: failed attempts only, ${cost:.2f}" for name, cost in sorted(result.cost_by_provider.items()) if name not in result.providers_used]
        console.print("providers: " + "; ".join(parts))
    for warning in result.warnings:
        console.print(f"[yellow]warning[/] {warning}")


def print_status(manifest, actions, as_json: bool) -> None:
    """A run's segments, cost so far and what resume would do with each (`actions`)."""
    if as_json:
        print(json.dumps({
            "run_id": manifest.run_id, "status": manifest.status, "cost_usd": manifest.cost_usd, "error": manifest.error,
            "warnings": list(manifest.warnings),
            "segments": [{"index": r.index, "state": r.state.value, "task_id": r.task_id, "attempts": r.attempts,
                          "cost_usd": r.cost_usd, "error": r.error, "resume": actions[r.index][0].value,
                          "why": actions[r.index][1]}
                         for r in manifest.segments],
        }, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run {manifest.run_id}: {manifest.status}, ${manifest.cost_usd:.2f} so far" + (f" — {manifest.error}" if manifest.error else ""))
    for column in ("seg", "scene", "state", "attempts", "task", "cost", "error", "on resume"):
        table.add_column(column, no_wrap=column not in ("error", "on resume"))
    for r in manifest.segments:
        action, why = actions[r.index]
        table.add_row(str(r.index), str(r.scene_index + 1), r.state.value, str(r.attempts), (r.task_id or "")[:24], f"${r.cost_usd:.2f}",
                      r.error or "", f"{action.value}: {why}")
    console = Console()
    console.print(table)
    for warning in manifest.warnings:
        console.print(f"[yellow]warning[/] {warning}")


def print_runs(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        for row in rows:
            print("\t".join(str(row.get(k, "")) for k in ("run_id", "status", "duration_s", "segments", "cost_usd", "prompt", "error")).rstrip())


def print_providers(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"providers": rows}, indent=2))
        return
    for row in rows:
        lengths = ", ".join(f"{s:g}" for s in row["durations_s"]) if row["discrete_durations"] else "any {:g}-{:g}".format(*row["durations_s"])
        state = "ready" if row["configured"] else f"not configured ({row['hint']})"
        health = row["health"]
        breaker = row["breaker"]
        if health:
            breaker += f" ({health['recent_failures']}/{health['recent_calls']} recent calls failed, as of {health.get('updated_at', '?')})"
        local = f"\tweights={row['weights']}\tgpu={row['gpu']}" if "weights" in row else ""
        print(f"{row['name']}\t{state}\tmodel={row['model']}\tdurations={lengths} s\t${row['usd_per_second']:.2f}/s\tbreaker={breaker}{local}")
