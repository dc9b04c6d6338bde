"""A batch line that edits an existing run (`{"run_id": "...", "edits": [...]}`): applied
after the job's renders, one at a time in file order (edits of one run build on each other).
A re-submitted line finds its version by its key and does not edit twice; an interrupted
one is resumed under the same version number."""

from __future__ import annotations

from dataclasses import replace as _replace

from jobs.batch_specs import SpecLine
from jobs.batch_summary import RenderRow, guarded_row
from longvid.runtime.layout import FINAL, version_path


def edit_line(job, item: SpecLine, progress) -> RenderRow:
    """One edit line as a summary row; every failure becomes the row's error."""
    base = RenderRow(line=item.line, status="failed", run_id=item.run_id, prompt=f"edit: {len(item.edit.edits)} change(s)")
    return guarded_row(base, lambda: _edit(job, item, base, progress), progress.say)


def _edit(job, item: SpecLine, base: RenderRow, progress) -> RenderRow:
    from longvid.runtime import RaySegmentRunner
    from longvid.runtime.edit_run import keyed_edit, prepare_edit, run_edit
    from longvid.runtime.store import read_manifest
    from longvid.wiring import planning_pipeline, render_pipeline

    run = job.store.open(item.run_id)  # a missing run: this line's InputError
    spec = read_manifest(run).spec
    state = keyed_edit(run, item.edit_key)
    if state is not None and state[0] == "done":
        progress.say(f"already made v{state[1]} in an earlier job; not edited again")
        return _replace(base, status="done", action="already_done", final=run.location(version_path(state[1], FINAL)))
    if job.stop.is_set():
        return _replace(base, status="cancelled", error="not started: the job was stopped; submit it again to edit")
    options = job.options()
    with render_pipeline(spec, job.store, RaySegmentRunner(), options, job.settings, progress=progress, stop=job.stop) as pipeline:
        if state is not None:  # this line's edit was interrupted: same version, nothing paid twice
            progress.say(f"resuming the edit into v{state[1]}")
            result, action = pipeline.resume(item.run_id), "resumed"
        else:
            prepared = prepare_edit(planning_pipeline(job.store, options, job.settings), item.run_id, item.edit, key=item.edit_key)
            progress.say(f"editing into v{prepared.version}: regenerate {prepared.regeneration.regenerated}, "
                         f"estimated ${prepared.estimate.low_usd:.2f}")
            result, action = run_edit(pipeline, prepared), "edited"
    version = keyed_edit(run, item.edit_key)
    return _replace(base, status="done", action=action, video_s=round(result.duration_s, 3), cost_usd=result.cost_usd,
                    segments=result.segments, generated_segments=result.generated_segments, reused_segments=result.reused_segments,
                    final=run.location(version_path(version[1], FINAL)) if version else run.location(FINAL),
                    warnings=list(result.warnings))
