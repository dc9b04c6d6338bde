"""The merge ahead's life around a render (runtime/merge_ahead.py): abandoned, it stops between
segments instead of merging its backlog; two of them on one run (a driver that lost its lease
and the one that took over) keep to their own scratch files; and a clip that changed after it
was merged makes it give up, so that the merge from scratch writes the video. Ray-free, on a
local run folder with tiny house-format clips."""

import time

import av
import numpy as np

from longvid.manifest import RunManifest, SegmentRecord
from longvid.media import probe
from longvid.media.encoding import NORMALISE_H264, encode_mp4
from longvid.runtime.atomic_files import sha256_file
from longvid.runtime.layout import FINAL, segment_path
from longvid.runtime.merge_ahead import MergeAhead
from longvid.runtime.outputs import merge_run
from longvid.runtime.protocols import NullProgress
from longvid.runtime.store import LocalRunFolder
from longvid.spec import Clip, RenderSpec, Scene, SegmentJob, SegmentState, Transition

SPEC = RenderSpec(prompt="a lighthouse", resolution="360p", aspect_ratio="1:1", duration_s=5, narration="off")
W, H = SPEC.frame_size
FPS, FRAMES, TAIL = SPEC.fps, 12, 4


def _job(index: int, count: int) -> SegmentJob:
    return SegmentJob(index=index, scene_index=0, segment_in_scene=index, prompt="p", scene=Scene(description="d"),
                      start_frame=index * FRAMES, frames=FRAMES, head_frames=TAIL if index else 0,
                      head_transition=Transition.CROSSFADE if index else Transition.CUT,
                      tail_frames=TAIL if index < count - 1 else 0, generate_duration_s=1.0, fps=FPS, width=W, height=H, seed=index)


def _write_clip(run: LocalRunFolder, job: SegmentJob, luma: int) -> Clip:
    """A clip in the house format (IDR where its copy range starts and ends), one flat grey."""
    frame = np.full((H, W, 3), luma, np.uint8)
    path = run.local_path(segment_path(job.index))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_mp4([frame] * job.needed_frames, FPS, W, H, keyframes=(job.head_frames, job.frames),
                                settings=NORMALISE_H264))
    return Clip(segment_index=job.index, provider="local", model="m", path=segment_path(job.index), frames=job.needed_frames,
                width=W, height=H, fps=FPS, sha256=sha256_file(path))


def _run(tmp_path, count: int):
    run = LocalRunFolder(tmp_path / "r")
    jobs = [_job(i, count) for i in range(count)]
    records = [SegmentRecord(index=j.index, scene_index=0, provider="local", state=SegmentState.ACCEPTED,
                             clip=_write_clip(run, j, 40 + 20 * j.index)) for j in jobs]
    return run, jobs, RunManifest(run_id="r", spec=SPEC, segments=records)


def _scratch(run: LocalRunFolder) -> list[str]:
    return sorted(p.name for p in run.path.iterdir() if p.name.startswith(f".{FINAL}."))


def _lumas(path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.to_ndarray(format="gray").mean()) for f in container.decode(video=0)]


def test_abandon_drops_the_queued_backlog_and_its_scratch(tmp_path):
    run, jobs, manifest = _run(tmp_path, 8)
    (run.path / f".{FINAL}.video.mp4").write_bytes(b"left by a killed driver")
    ahead = MergeAhead(run, SPEC, jobs)
    assert f".{FINAL}.video.mp4" not in _scratch(run)  # swept: the run's driver owns the run now
    for index in range(1, 8):  # waiting on the first segment: nothing to write yet
        ahead.accepted(manifest, index)
    ahead.accepted(manifest, 0)  # now the whole backlog could be written
    started = time.perf_counter()
    ahead.abandon()
    waited = time.perf_counter() - started
    assert ahead.merge.next < len(jobs)  # it stopped between segments instead of merging them all
    assert waited < 5, waited
    assert _scratch(run) == [] and not run.exists(FINAL)


def test_two_merges_of_one_run_keep_to_their_own_scratch_files(tmp_path):
    """A driver that lost its lease still merges; the one that took the run over starts its
    own merge (sweeping the other's files), and neither write nor cleanup touches the other's."""
    run, jobs, manifest = _run(tmp_path, 3)
    old = MergeAhead(run, SPEC, jobs)
    old.accepted(manifest, 0)
    new = MergeAhead(run, SPEC, jobs)
    new.feed_accepted(manifest)
    old.feed_accepted(manifest)
    old.abandon()  # the old driver gives up: its cleanup must leave the new merge's files alone
    stats = new.finish(manifest)
    assert stats is not None and stats.merged_ahead and 0 <= stats.ahead_s <= stats.seconds
    run.publish(FINAL, run.scratch_path(FINAL))
    lumas = _lumas(run.local_path(FINAL))
    assert len(lumas) == 3 * FRAMES and abs(lumas[FRAMES + FRAMES // 2] - 60) < 4
    assert _scratch(run) == []


def test_a_clip_changed_after_it_was_merged_makes_the_run_merge_from_scratch(tmp_path):
    run, jobs, manifest = _run(tmp_path, 3)
    ahead = MergeAhead(run, SPEC, jobs)
    ahead.feed_accepted(manifest)  # segment 1 (grey 60) is merged ahead...
    regenerated = _write_clip(run, jobs[1], 200)  # ...then replaced (a new clip, a new checksum)
    records = [*manifest.segments[:1], manifest.segments[1].model_copy(update={"clip": regenerated}), *manifest.segments[2:]]
    changed = manifest.model_copy(update={"segments": records})

    stats = merge_run(run, changed, jobs, True, NullProgress(), ahead)
    assert not stats.merged_ahead and stats.ahead_s == 0  # the merge ahead gave up
    assert _scratch(run) == []
    lumas = _lumas(run.local_path(FINAL))
    assert len(lumas) == probe(run.local_path(FINAL)).frames == 3 * FRAMES
    assert abs(lumas[FRAMES + FRAMES // 2] - 200) < 4  # the new clip, not the one merged ahead
    assert abs(lumas[FRAMES // 2] - 40) < 4 and abs(lumas[2 * FRAMES + FRAMES // 2] - 80) < 4
    assert stats.copied_segments == 3  # still copied, not re-encoded whole
