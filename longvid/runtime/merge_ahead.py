"""The merge, done while the segments still generate (media/timeline.py).

Each accepted segment is handed to a TimelineMerge on a thread of the driver, which writes
everything up to the first segment still missing. When the generate step ends, only the
last-arriving segment's seam and copy (and joining picture and sound) are left, instead of
the whole merge.

The merge ahead is an optimisation, never a second source of truth: at the end its inputs
are checked against the final manifest (each accepted clip's path and checksum), and when
one changed, or anything in it failed, it is dropped and the run is merged from scratch by
`merge_segments`, which then reports any real error itself. It writes only scratch files
beside final.mp4 and renames final.mp4 into place when complete, so a crash at any moment
leaves either the previous final.mp4 or none; a resumed run merges again (its accepted
segments first, at once). It is built by the run's driver under the run's lease, so it first
removes the scratch files a killed driver left; its own files have names no other merge uses.

`abandon` (a failed or cancelled render, a lost lease) stops the merge between two
segments: it neither merges the queued backlog nor waits for it.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import replace
from pathlib import Path

from ..manifest import RunManifest
from ..media.encoding import DEFAULT_H264
from ..media.merge import MergeInput, MergeStats
from ..spec import RenderSpec, SegmentJob, SegmentState
from .layout import FINAL
from .store import RunFolder

# The merge ahead encodes its seams with one x264 thread. It runs on the driver while the
# segments still arrive, beside their normalisation (normalisation.py), which is on the
# critical path and which x264's default (a thread per core) would slow on a small machine;
# a seam is only a transition's few frames, on which frame threads gain little anyway. One
# thread writes the same SPS/PPS (tests/test_merge_ahead.py checks it), so the copied
# packets still fit. The merge from scratch (outputs.py), run when nothing else does, keeps
# the default.
MERGE_AHEAD_H264 = replace(DEFAULT_H264, threads=1)


class MergeAhead:
    def __init__(self, run: RunFolder, spec: RenderSpec, jobs: list[SegmentJob], stream_copy: bool = True,
                 output: Path | None = None, audio_pcm: Path | None = None):
        """`output`: where the merged video goes (default: the run's final.mp4, in its scratch
        folder); `audio_pcm`: its audio goes there as raw PCM instead (outputs.MergeTarget)."""
        from ..media.timeline import TimelineMerge, sweep_scratch

        self.run, self.jobs = run, jobs
        self.positions = {job.index: position for position, job in enumerate(jobs)}
        width, height = spec.frame_size
        sweep_scratch(run.scratch_path(FINAL))  # the caller holds the run's lease: no live merge owns them
        self.merge = TimelineMerge(len(jobs), output or run.scratch_path(FINAL), spec.fps, width, height, MERGE_AHEAD_H264,
                                   stream_copy=stream_copy, audio_pcm=audio_pcm)
        self.fed: dict[int, tuple[str, str]] = {}  # segment index -> (clip path, sha256) handed to the merge
        self.queue: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self.failed: BaseException | None = None
        self.abandoning = threading.Event()  # set by abandon: stop between segments, skip the rest
        self.closed = False
        self.thread = threading.Thread(target=self._work, name="merge-ahead", daemon=True)
        self.thread.start()

    def accepted(self, manifest: RunManifest, index: int) -> None:
        """Segment `index` is accepted in `manifest`: merge it as soon as those before it are."""
        record = manifest.segments[index]
        if self.closed or index in self.fed or record.clip is None or record.state is not SegmentState.ACCEPTED:
            return
        self.fed[index] = (record.clip.path, record.clip.sha256)
        self.queue.put((index, record.clip.path))

    def feed_accepted(self, manifest: RunManifest) -> None:
        """Every segment already accepted (a resumed run's) goes in at once."""
        for record in manifest.segments:
            self.accepted(manifest, record.index)

    def _work(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.failed is not None or self.abandoning.is_set():
                continue
            index, path = item
            job = self.jobs[self.positions[index]]
            try:  # an S3 run downloads the segment here, off the generate loop
                source = MergeInput(self.run.local_path(path), job.frames, job.head_frames, job.head_transition, job.tail_frames)
                self.merge.add(self.positions[index], source, stop=self.abandoning)
            except BaseException as exc:  # the merge from scratch reports it, if it is real
                self.failed = exc

    def finish(self, manifest: RunManifest) -> MergeStats | None:
        """The run's final.mp4 from the merge ahead, with its figures (`ahead_s`: the merging,
        picture and sound, done before this call; `seconds`: that plus this call's wall time);
        None when it cannot be used and the caller merges from scratch. Drains what is queued."""
        started = time.perf_counter()
        ahead_s = self.merge.work_done_s  # segments finished by now; one in progress counts as after
        self.feed_accepted(manifest)
        current = {r.index: (r.clip.path, r.clip.sha256) for r in manifest.segments if r.clip is not None}
        stale = any(current.get(index) != fed for index, fed in self.fed.items())
        self._stop()
        if stale or self.failed is not None or not self.merge.complete:
            self.merge.abort()
            return None
        try:
            stats = self.merge.finish()
        except Exception:
            self.merge.abort()
            return None
        return replace(stats, seconds=ahead_s + time.perf_counter() - started, ahead_s=ahead_s, merged_ahead=True)

    def abandon(self) -> None:
        """The render ended without finish (failed, cancelled, its lease lost): the merge stops
        after the segment it is writing, the queued ones are dropped, the scratch files go."""
        if not self.closed:
            self.abandoning.set()
            self._stop()
            self.merge.abort()

    def _stop(self) -> None:
        self.closed = True
        self.queue.put(None)
        self.thread.join()
