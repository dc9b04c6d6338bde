"""The merge in timeline order, while segments arrive (merge.py has the pieces).

Segments are generated in any order; the merge needs them in timeline order. A TimelineMerge
takes each segment when it is ready (`add`, any order) and at once writes every segment whose
predecessors are all in: the seam it shares with the previous one (blended and encoded), its
copied GOPs, and its audio. So when the last segment arrives only its own seam and copy are
left, not the whole video.

The container's streams must be declared before its first packet, yet whether the video
has an audio track is known only once every segment is in (none with audio: no track). So
the picture and the sound are written to two scratch files beside the output, and `finish`
joins them into the output with a packet copy (no codec runs: a fraction of a second for a
minute of video), `faststart`, under a temporary name that is then renamed. The audio is
mixed and encoded on its own thread (PyAV releases the GIL inside the codecs), and only from
the first segment that has any: the silence of the ones before it is encoded then, so a
video without sound never encodes any.

When the soundtrack step will mix the video's own audio with narration or music, there is
no point encoding it here: with `audio_pcm` the track is written as raw PCM to that path
instead (audio.py's write_raw_pcm, what sound/_pcm.py reads), and the output is the
picture alone, as written (the soundtrack step copies it into the final file, with
`faststart`).

The scratch files carry a name of their own per merge (`.final.mp4.<id>.video.mp4`), so
two merges of one output (a driver that lost its lease and the one that took it over) never
write or delete each other's files; `sweep_scratch` removes those a killed driver left, and
is called by the run's driver, under its lease, before it starts a merge.

`merge_segments` is this class fed every segment at once, so the one-shot and the
incremental merge are one code path.
"""

from __future__ import annotations

import glob
import heapq
import queue
import shutil
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import av
import numpy as np

from .audio import AudioMixer, has_audio
from .encoding import DEFAULT_H264, H264Settings, add_h264_stream, parameter_sets
from .merge import MergeInput, MergeStats, _Segment, _VideoWriter, blend, transition_alpha


class _AudioSide(threading.Thread):
    """The audio track, mixed and encoded into its own file beside the video, one segment at a
    time in timeline order. Each segment's head blends with the tail the previous one carries."""

    def __init__(self, path: Path, fps: int, raw: bool = False):
        super().__init__(name="merge-audio", daemon=True)
        self.path, self.fps, self.raw = path, fps, raw  # raw: PCM, not an MP4 with AAC
        self.queue: queue.Queue[MergeInput | None] = queue.Queue()
        self.stopped = threading.Event()  # abandoned: stop between segments
        self.error: BaseException | None = None
        self.wrote = False  # some segment had audio: the file holds the track
        self.work_s = 0.0  # seconds spent mixing and encoding segments (read from other threads)
        self.start()

    def add(self, source: MergeInput) -> None:
        self.queue.put(source)

    def run(self) -> None:
        silent: list[tuple[Path, int, int, int]] = []  # segments before the first one with audio
        previous_tail = 0
        try:
            with ExitStack() as stack:
                mixer: AudioMixer | None = None
                while (source := self.queue.get()) is not None and not self.stopped.is_set():
                    started = time.perf_counter()
                    step = (source.path, source.frames, min(source.head_frames, previous_tail), source.tail_frames)
                    previous_tail = source.tail_frames
                    if mixer is None:
                        if not has_audio(source.path):
                            silent.append(step)
                            self.work_s += time.perf_counter() - started
                            continue
                        if self.raw:
                            mixer = AudioMixer(None, self.fps, raw=stack.enter_context(open(self.path, "wb")))
                        else:
                            mixer = AudioMixer(stack.enter_context(av.open(str(self.path), "w", format="mp4")), self.fps)
                        for earlier in silent:  # decodes to nothing: silence of its length
                            mixer.add(*earlier)
                    mixer.add(*step)
                    self.work_s += time.perf_counter() - started
                if mixer is not None and not self.stopped.is_set():
                    mixer.finish()
                    self.wrote = True
        except BaseException as exc:  # raised again on the merging thread
            self.error = exc

    def finish(self) -> bool:
        """Waits for the track; True when there is one."""
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error
        return self.wrote

    def abandon(self) -> None:
        self.stopped.set()
        self.queue.put(None)
        self.join()


class TimelineMerge:
    """Merges `count` segments into `output`, each written as soon as those before it are in."""

    def __init__(self, count: int, output: Path, fps: int, width: int, height: int,
                 settings: H264Settings = DEFAULT_H264, stream_copy: bool = True, audio_pcm: Path | None = None):
        self.count, self.output = count, Path(output)
        self.fps, self.width, self.height, self.stream_copy = fps, width, height, stream_copy
        self.output.parent.mkdir(parents=True, exist_ok=True)
        tag = new_scratch_tag()  # this merge's own scratch names (the module's docstring says why)
        self.partial = scratch_beside(self.output, tag, "partial.mp4")
        self.video_path = scratch_beside(self.output, tag, "video.mp4")
        self.audio_pcm = Path(audio_pcm) if audio_pcm is not None else None  # where the track goes as PCM (None: in the output)
        self.audio_path = scratch_beside(self.output, tag, "audio.f32" if self.audio_pcm is not None else "audio.mp4")
        self.ready: dict[int, MergeInput] = {}
        self.added: dict[int, MergeInput] = {}
        self.next = 0  # the first segment not yet written
        self.held: list[np.ndarray] = []  # the previous segment's tail, for the seam
        self.copied_segments = 0
        self.work_s = 0.0  # seconds spent writing the picture, in add and finish
        self.black = np.full((height * 3 // 2, width), 128, np.float32)
        self.black[:height] = 16.0
        self.container = None
        self.audio: _AudioSide | None = None
        try:
            self.container = av.open(str(self.video_path), "w", format="mp4")
            stream = add_h264_stream(self.container, width, height, fps, settings)
            self.reference = parameter_sets(stream.codec_context.extradata)
            self.writer = _VideoWriter(self.container, stream, width, height, fps, settings, threading.Lock())
            self.audio = _AudioSide(self.audio_path, fps, raw=self.audio_pcm is not None)
        except BaseException:
            self.abort()
            raise

    @property
    def complete(self) -> bool:
        return self.next == self.count

    @property
    def work_done_s(self) -> float:
        """Seconds of merging done so far on both threads (picture and sound), summed."""
        return self.work_s + (self.audio.work_s if self.audio is not None else 0.0)

    def add(self, position: int, source: MergeInput, stop: threading.Event | None = None) -> None:
        """Segment `position` (0-based, timeline order) is ready; writes what can be written.
        A set `stop` (the merge is being abandoned) ends the writing between two segments."""
        if not 0 <= position < self.count or position in self.added:
            raise ValueError(f"segment {position} was added twice or is not one of {self.count}")
        started = time.perf_counter()
        self.added[position] = self.ready[position] = source
        while self.next in self.ready and not (stop is not None and stop.is_set()):
            source = self.ready.pop(self.next)
            self._write_video(source)
            self.audio.add(source)
            self.next += 1
        self.work_s += time.perf_counter() - started

    def _write_video(self, source: MergeInput) -> None:
        """The segment's head blended with the held tail, its untouched GOPs copied, its own
        tail decoded and held for the next seam."""
        segment = _Segment(source, self.fps, self.width, self.height, self.reference)
        try:
            span = segment.copy_range() if self.stream_copy else None
            held, head_len, tail = self.held, min(source.head_frames, len(self.held)), []

            def emit(lo: int, hi: int) -> None:
                for offset, pixels in enumerate(segment.frames(lo, hi)):
                    k = lo + offset
                    if k < head_len:
                        pixels = blend(held[k], pixels, transition_alpha(k, head_len), source.head_transition, self.black)
                    if k >= source.frames:
                        tail.append(pixels)
                    else:
                        self.writer.write(pixels)

            needed = source.frames + source.tail_frames
            if span is None:
                emit(0, needed)
            else:
                first, end, first_pos, end_pos = span
                emit(0, first)
                self.writer.copy(segment, first, end, first_pos, end_pos)
                self.copied_segments += 1
                emit(end, needed)
            self.held = tail
        finally:
            segment.close()

    def finish(self) -> MergeStats:
        """Every segment is in: the picture and sound joined into `output` (atomically)."""
        if not self.complete:
            missing = sorted(set(range(self.count)) - set(self.added))
            raise ValueError(f"cannot finish the merge: segments {missing} were never added")
        started = time.perf_counter()
        self.writer.end_run()
        self.container.close()
        self.container = None
        with_audio = self.audio.finish()
        self.audio = None
        if self.audio_pcm is None:
            _join(self.video_path, self.audio_path if with_audio else None, self.partial)
        else:
            # The picture alone, for the soundtrack step, which copies its packets into the
            # final file (faststart there): joining them here first would copy them twice.
            self.video_path.replace(self.partial)
            if with_audio:
                shutil.move(self.audio_path, self.audio_pcm)  # a rename when, as in a render, both are in one folder
            else:  # no stale track from an earlier merge of this output
                self.audio_pcm.unlink(missing_ok=True)
        self.partial.replace(self.output)
        self._remove_scratch()
        self.work_s += time.perf_counter() - started
        return MergeStats(frames=self.writer.next_index, copied_frames=self.writer.copied, encoded_frames=self.writer.encoded,
                          copied_segments=self.copied_segments, audio=with_audio, seconds=self.work_s)

    def abort(self) -> None:
        """Stops and removes everything this merge wrote; an earlier output stays as it was."""
        if self.audio is not None:
            self.audio.abandon()  # before its file goes
            self.audio = None
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # a half-written scratch file that is deleted next
                pass
            self.container = None
        self._remove_scratch()
        self.partial.unlink(missing_ok=True)

    def _remove_scratch(self) -> None:
        self.video_path.unlink(missing_ok=True)
        self.audio_path.unlink(missing_ok=True)


def new_scratch_tag() -> str:
    """A name part of one invocation's own for its scratch files (see scratch_beside)."""
    return uuid.uuid4().hex[:12]


def scratch_beside(output: Path, tag: str, kind: str) -> Path:
    """An invocation's scratch file beside `output`: `.<output name>.<tag>.<kind>`, which
    sweep_scratch finds when `kind` ends in .mp4 or .f32. An output that is a scratch file
    itself keeps one leading dot."""
    return Path(output).with_name(f".{Path(output).name.lstrip('.')}.{tag}.{kind}")


def sweep_scratch(output: Path) -> None:
    """Removes the scratch files any earlier merge of `output` left (a killed driver's), the
    picture and audio one made for the soundtrack step beside it included (runtime/outputs.py's
    MergeTarget), and what a killed soundtrack step left (its output and its mix folder).
    Only for the one driver that owns the output: another live merge's files would go too."""
    output = Path(output)
    for pattern in (f".{glob.escape(output.name)}.*.mp4", f".{glob.escape(output.name)}.*.f32"):
        for stale in output.parent.glob(pattern):
            stale.unlink(missing_ok=True)
    for stale in output.parent.glob(f".{glob.escape(output.name)}.*.sound.sound.*"):  # a killed soundtrack's mix folder
        shutil.rmtree(stale, ignore_errors=True)


def _join(video: Path, audio: Path | None, out: Path) -> None:
    """The two scratch files' packets copied into one MP4, interleaved by time."""
    with ExitStack() as stack:
        sources = [stack.enter_context(av.open(str(video)))]
        if audio is not None:
            sources.append(stack.enter_context(av.open(str(audio))))
        dst = stack.enter_context(av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}))
        pairs = []
        for source in sources:
            stream = source.streams[0]
            pairs.append((source, stream, dst.add_stream_from_template(stream)))

        def packets(source, stream, target):
            for packet in source.demux(stream):
                if packet.dts is None and packet.pts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.time_base, packet.stream = stream.time_base, target
                yield float((packet.dts if packet.dts is not None else packet.pts) * stream.time_base), packet

        for _t, packet in heapq.merge(*(packets(*pair) for pair in pairs), key=lambda item: item[0]):
            dst.mux(packet)
