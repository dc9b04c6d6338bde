"""Issue 14: the merge runs in timeline order while segments arrive (media/timeline.py,
runtime/merge_ahead.py): what it writes equals the one-shot merge frame for frame and sample
for sample, whatever order the segments come in, and a crash in the middle of it resumes."""

import time

import av
import numpy as np
import pytest

from longvid.manifest import RunPlan, load_manifest
from longvid.media import MergeInput, merge_segments, probe
from longvid.media.normalise import HouseFormat, normalise_clip
from longvid.media.timeline import TimelineMerge, sweep_scratch
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.runtime.merge_ahead import MERGE_AHEAD_H264
from longvid.runtime.protocols import NullProgress
from longvid.settings import Settings
from longvid.spec import RenderSpec, SegmentState, Transition
from longvid.testing.provider_clip import encode_provider_style

W, H, FPS, FRAMES, TAIL = 96, 64, 24, 48, 6
PLAN = [(0, Transition.CUT, TAIL), (TAIL, Transition.CROSSFADE, TAIL), (TAIL, Transition.FADE, TAIL), (TAIL, Transition.CROSSFADE, 0)]


def _normalised_provider_clips(tmp_path, audio=(True, False, True, False)):
    """Four clips from another encoder (one GOP, 80x48, 30 or 24 fps, AAC 44.1 kHz on some),
    normalised into the house format as the runtime does when they arrive."""
    inputs = []
    for k, ((head, transition, tail), tone) in enumerate(zip(PLAN, audio, strict=True)):
        fps = 30 if k % 2 == 0 else 24
        frame = np.zeros((48, 80, 3), np.uint8)
        frame[:] = (60 * k, 200 - 40 * k, 90)
        frame[:, : 8 + 16 * k] = 255  # something that moves from clip to clip
        data = encode_provider_style([frame] * (fps * 2 + 6), fps, 80, 48, tone_hz=330.0 + 110 * k if tone else None)
        path = tmp_path / f"seg{k}.mp4"
        path.write_bytes(normalise_clip(data, HouseFormat(W, H, FPS, FRAMES + tail, (head, FRAMES))))
        inputs.append(MergeInput(path, FRAMES, head, transition, tail))
    return inputs


def _decoded(path):
    with av.open(str(path)) as container:
        video = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = [f.to_ndarray() for f in container.decode(audio=0)] if container.streams.audio else []
    return video, (np.concatenate(audio, axis=1) if audio else None)


@pytest.mark.parametrize("order", [(2, 0, 3, 1), (3, 2, 1, 0)])
def test_merging_as_segments_arrive_equals_the_one_shot_merge(tmp_path, order):
    inputs = _normalised_provider_clips(tmp_path)
    one_shot = merge_segments(inputs, tmp_path / "one_shot.mp4", FPS, W, H)

    merge = TimelineMerge(len(inputs), tmp_path / "ahead.mp4", FPS, W, H)
    written = []
    for position in order:
        merge.add(position, inputs[position])
        written.append(merge.writer.next_index)  # frames already in the output
    stats = merge.finish()
    # Everything up to the first missing segment is written as soon as it can be: each written
    # segment puts exactly its own frames out (its tail waits for the next seam).
    prefix = [next(p for p in range(5) if p not in order[: n + 1]) for n in range(4)]
    assert written == [FRAMES * k for k in prefix]
    assert (stats.frames, stats.copied_frames, stats.encoded_frames, stats.copied_segments, stats.audio) == \
        (one_shot.frames, one_shot.copied_frames, one_shot.encoded_frames, one_shot.copied_segments, one_shot.audio)
    assert stats.frames == 4 * FRAMES and stats.encoded_frames == 3 * TAIL  # only the seams re-encoded

    (video_a, audio_a), (video_b, audio_b) = _decoded(tmp_path / "one_shot.mp4"), _decoded(tmp_path / "ahead.mp4")
    assert len(video_a) == len(video_b) == 4 * FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(video_a, video_b))
    assert audio_a is not None and np.array_equal(audio_a, audio_b)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no scratch left


def test_sound_only_in_a_late_segment_gets_silence_before_it(tmp_path):
    inputs = _normalised_provider_clips(tmp_path, audio=(False, False, False, True))
    merge = TimelineMerge(len(inputs), tmp_path / "out.mp4", FPS, W, H)
    for position in (0, 1, 2, 3):
        merge.add(position, inputs[position])
    assert merge.finish().audio
    _video, pcm = _decoded(tmp_path / "out.mp4")
    assert abs(pcm.shape[1] / 48000 - 4 * FRAMES / FPS) < 0.05
    late = 3 * FRAMES * 2000  # 2000 samples a frame at 24 fps
    assert np.sqrt((pcm[:, : late - 24000] ** 2).mean()) < 1e-3  # silence where no segment had sound
    assert np.sqrt((pcm[:, late + 4000 :] ** 2).mean()) > 0.05  # the last segment's tone

    silent = _normalised_provider_clips(tmp_path, audio=(False,) * 4)
    stats = merge_segments(silent, tmp_path / "silent.mp4", FPS, W, H)
    assert not stats.audio and not probe(tmp_path / "silent.mp4").has_audio  # nothing to hear: no track


def test_audio_for_the_soundtrack_goes_over_as_pcm_not_aac(tmp_path):
    """With narration or music to come, the merge hands the video's own audio to the
    soundtrack step as raw PCM (no AAC made here to be decoded there) and the soundtrack
    mixes it as it mixed the merged track before."""
    from longvid.sound import _pcm
    from longvid.sound.finish import SoundOptions, add_sound

    inputs = _normalised_provider_clips(tmp_path)
    with_aac = merge_segments(inputs, tmp_path / "aac.mp4", FPS, W, H)
    pcm_path = tmp_path / "merged.f32"
    merge = TimelineMerge(len(inputs), tmp_path / "pcm.mp4", FPS, W, H, audio_pcm=pcm_path)
    for position in (1, 0, 3, 2):
        merge.add(position, inputs[position])
    stats = merge.finish()
    assert stats.audio and with_aac.audio and not probe(tmp_path / "pcm.mp4").has_audio  # the picture alone
    _video, decoded = _decoded(tmp_path / "aac.mp4")
    pcm = np.concatenate(list(_pcm.raw_pieces(pcm_path)), axis=1)
    assert pcm.shape[1] == 4 * FRAMES * 2000  # exactly the video's length (2000 samples a frame)
    # the same track as the AAC one, but for the encoder's delay and its loss
    delay = decoded.shape[1] - pcm.shape[1] if decoded.shape[1] > pcm.shape[1] else 0
    body = slice(24000, pcm.shape[1] - 24000)
    aligned = decoded[:, delay:][:, body] if delay else decoded[:, body]
    assert np.sqrt(((aligned - pcm[:, body]) ** 2).mean()) < 0.2 * np.sqrt((pcm[:, body] ** 2).mean())

    sounds = {}
    for name, video, provider_pcm in (("aac", tmp_path / "aac.mp4", None), ("pcm", tmp_path / "pcm.mp4", pcm_path)):
        out = tmp_path / f"{name}.sound.mp4"
        sounds[name] = add_sound(video, out, narration=None, cues=[], options=SoundOptions(), provider_pcm=provider_pcm)
        assert probe(out).has_audio and probe(out).frames == 4 * FRAMES
    assert sounds["pcm"].loudness_lufs == pytest.approx(sounds["aac"].loudness_lufs, abs=0.5)
    assert sounds["pcm"].loudness_lufs == pytest.approx(-14.0, abs=1.0)

    # merged again without any sound: no stale track is left for the soundtrack to pick up
    merge_segments(_normalised_provider_clips(tmp_path, audio=(False,) * 4), tmp_path / "pcm.mp4", FPS, W, H, audio_pcm=pcm_path)
    assert not pcm_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no scratch left


def test_an_abandoned_merge_leaves_the_earlier_output_and_no_scratch(tmp_path):
    inputs = _normalised_provider_clips(tmp_path)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous good video")
    merge = TimelineMerge(len(inputs), out, FPS, W, H)
    merge.add(0, inputs[0])
    merge.add(1, inputs[1])
    with pytest.raises(ValueError, match=r"segments \[2, 3\] were never added"):
        merge.finish()
    merge.abort()  # the driver stops mid-merge
    assert out.read_bytes() == b"previous good video"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # A new merge (a resumed run) writes the whole video beside any scratch a killed driver
    # left, which the run's driver sweeps away (it does so before it starts merging).
    (tmp_path / ".out.mp4.video.mp4").write_bytes(b"junk from a killed driver")
    stats = merge_segments(inputs, out, FPS, W, H)
    assert stats.frames == probe(out).frames == 4 * FRAMES
    sweep_scratch(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_sweep_removes_what_a_killed_soundtrack_step_left_and_nothing_else(tmp_path):
    final = tmp_path / "final.mp4"
    final.write_bytes(b"the finished video")
    left = [".final.mp4.3f2a.picture.mp4", ".final.mp4.3f2a.audio.f32", ".final.mp4.3f2a.picture.mp4.9c1e.video.mp4",
            ".final.mp4.77aa.sound.mp4", ".final.mp4.77aa.sound.mp4.partial.mp4"]
    for name in left:
        (tmp_path / name).write_bytes(b"scratch")
    mix = tmp_path / ".final.mp4.77aa.sound.sound.k2j4"  # add_sound's temporary folder
    mix.mkdir()
    (mix / "mix.f32").write_bytes(b"pcm")
    kept = [tmp_path / ".final.mp4.etag", tmp_path / "final.mp4.partial", tmp_path / ".other.mp4.3f2a.video.mp4"]
    for path in kept:
        path.write_bytes(b"not the merge's")
    sweep_scratch(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["final.mp4", *(p.name for p in kept)])


SPEC = dict(prompt="a lighthouse at night", duration_s=8, resolution="360p", provider="runway", judge="off",
            continuity="anchor", budget_usd=50, narration="off")


class CrashWhileMergingAhead(NullProgress):
    """The driver dies as the third segment is accepted, once the merge ahead has written
    the ones before it into its scratch file."""

    def __init__(self, run_dir):
        self.run_dir, self.accepted = run_dir, 0

    def segment(self, index, state, detail=""):
        if state is not SegmentState.ACCEPTED:
            return
        self.accepted += 1
        if self.accepted == 3:
            deadline = time.monotonic() + 30
            while not any(p.stat().st_size > 0 for p in self.run_dir.glob(".final.mp4.*.video.mp4")):
                assert time.monotonic() < deadline, "the merge ahead never wrote anything"
                time.sleep(0.02)
            raise SystemExit("simulated crash in the middle of the merge ahead")


def test_a_crash_during_the_merge_ahead_resumes_to_the_same_video(provider_runway, tmp_path):
    spec = RenderSpec(**SPEC)
    store = LocalRunStore(tmp_path / "store")
    run_dir = tmp_path / "store" / "r"
    with pytest.raises(SystemExit):
        RenderPipeline(store, InlineSegmentRunner(), progress=CrashWhileMergingAhead(run_dir),
                       settings=Settings.from_env()).render(spec, run_id="r")
    crashed = load_manifest((run_dir / "manifest.json").read_text())
    segments = len(crashed.segments)
    assert 2 <= sum(r.state is SegmentState.ACCEPTED for r in crashed.segments) < segments
    assert not (run_dir / "final.mp4").exists()
    created = provider_runway.counts["create"]
    (run_dir / ".final.mp4.video.mp4").write_bytes(b"as a SIGKILL would leave it")

    result = RenderPipeline(store, InlineSegmentRunner(), settings=Settings.from_env()).resume("r")
    assert provider_runway.counts["create"] == created  # nothing paid twice
    assert result.frames == spec.total_frames and result.merge.copied_segments == segments
    assert 0 <= result.merge.ahead_s <= result.merge.seconds
    assert result.merge.merged_ahead  # final.mp4 is the merge ahead's, not a merge from scratch
    # The same video as a one-shot merge of the run's segments.
    plan = RunPlan.model_validate_json((run_dir / "plan.json").read_text()).segments
    manifest = load_manifest((run_dir / "manifest.json").read_text())
    inputs = [MergeInput(run_dir / manifest.segments[j.index].clip.path, j.frames, j.head_frames, j.head_transition, j.tail_frames)
              for j in plan]
    merge_segments(inputs, tmp_path / "one_shot.mp4", spec.fps, *spec.frame_size, settings=MERGE_AHEAD_H264)
    (video_a, audio_a), (video_b, audio_b) = _decoded(tmp_path / "one_shot.mp4"), _decoded(run_dir / "final.mp4")
    assert len(video_a) == len(video_b) == spec.total_frames
    assert all(np.array_equal(a, b) for a, b in zip(video_a, video_b))
    assert np.array_equal(audio_a, audio_b)
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".final.mp4.")]


@pytest.mark.parametrize("fps", [24, 30, 60])
def test_the_normalising_preset_writes_the_merges_parameter_sets(fps):
    """The merge copies normalised clips' packets beside the seams it encodes (the merge ahead
    with one thread): only because all of them write the same SPS/PPS, at every size a render
    makes."""
    from longvid.media.encoding import DEFAULT_H264, NORMALISE_H264, h264_reference
    from longvid.spec import AspectRatio, Resolution

    assert NORMALISE_H264.crf == DEFAULT_H264.crf
    for resolution in Resolution:
        for aspect in AspectRatio:
            width, height = RenderSpec(prompt="x", resolution=resolution, aspect_ratio=aspect).frame_size
            assert h264_reference(width, height, fps, NORMALISE_H264) == h264_reference(width, height, fps, DEFAULT_H264), \
                (width, height, fps)
            # The merge ahead's single-threaded encoder too (runtime/merge_ahead.py).
            assert h264_reference(width, height, fps, MERGE_AHEAD_H264) == h264_reference(width, height, fps, DEFAULT_H264), \
                (width, height, fps)
