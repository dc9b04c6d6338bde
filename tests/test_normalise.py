"""Issue 14: provider clips are normalised into the house format as they arrive, so the merge
stream-copies them and re-encodes only the seams; a crash while normalising resumes from the
original on disk, without a new provider task."""

import hashlib

import numpy as np
import pytest

from longvid.manifest import load_manifest
from longvid.media import MergeInput, merge_segments, probe
from longvid.media.frames import decode_frames
from longvid.media.normalise import HouseFormat, house_format_problem, normalise_clip
from longvid.runtime import ClusterCapacity, InlineSegmentRunner, LocalRunStore, RenderPipeline, SegmentResult
from longvid.runtime.layout import original_path, segment_path
from longvid.runtime.normalisation import house_format, needs_normalising
from longvid.settings import Settings
from longvid.spec import RenderSpec, SegmentState, Transition
from longvid.testing.provider_clip import encode_provider_style

W, H, FPS = 96, 64, 24
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


def _solid(colour, count, width, height):
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:] = colour
    return [frame] * count


def _provider_clips(tmp_path):
    """Three clips as providers make them: one GOP each (no IDR where the seams are), another
    size, 30 fps for two of them, AAC at 44.1 kHz on two, none on the middle one."""
    specs = [(30, True), (30, False), (24, True)]
    paths = []
    for k, ((fps, audio), colour) in enumerate(zip(specs, COLOURS, strict=True)):
        data = encode_provider_style(_solid(colour, fps * 2 + 6, 80, 48), fps, 80, 48, tone_hz=440.0 if audio else None)
        path = tmp_path / f"provider{k}.mp4"
        path.write_bytes(data)
        paths.append(path)
    return paths


def _luma(rgb):
    return float(np.mean(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114))


def test_provider_clips_merge_to_exact_frames_copying_all_but_the_seams(tmp_path):
    frames, tail = 48, 6
    # segment 0: 48 + 6 tail; segment 1: crossfade head, 48 + 6 tail; segment 2: fade head, 48
    plan = [(0, Transition.CUT, tail), (tail, Transition.CROSSFADE, tail), (tail, Transition.FADE, 0)]
    originals = _provider_clips(tmp_path)
    assert all(house_format_problem(p, HouseFormat(W, H, FPS, frames + t, (h, frames))) for p, (h, _, t) in zip(originals, plan))
    # Merged as they are, nothing can be copied: the merge decodes and re-encodes everything.
    raw = merge_segments([MergeInput(p, frames, h, tr, t) for p, (h, tr, t) in zip(originals, plan)], tmp_path / "raw.mp4", FPS, W, H)
    assert raw.copied_frames == 0 and raw.frames == 3 * frames

    inputs = []
    for k, (path, (head, transition, t)) in enumerate(zip(originals, plan, strict=True)):
        fmt = HouseFormat(W, H, FPS, frames + t, keyframes=(head, frames))
        normalised = normalise_clip(path, fmt)
        assert house_format_problem(normalised, fmt) is None
        out = tmp_path / f"seg{k}.mp4"
        out.write_bytes(normalised)
        info = probe(out)
        assert (info.frames, info.width, info.height, info.fps, info.codec) == (frames + t, W, H, FPS, "h264")
        assert info.has_audio == (k != 1)
        inputs.append(MergeInput(out, frames, head, transition, t))

    stats = merge_segments(inputs, tmp_path / "final.mp4", FPS, W, H)
    seam_frames = 2 * tail  # a crossfade and a fade, each `tail` frames long
    assert stats.frames == 3 * frames and probe(tmp_path / "final.mp4").frames == 3 * frames
    assert stats.copied_segments == 3
    assert stats.encoded_frames == seam_frames and stats.copied_frames == 3 * frames - seam_frames
    assert stats.audio and probe(tmp_path / "final.mp4").has_audio

    decoded = decode_frames(tmp_path / "final.mp4", range(3 * frames))
    red, green = np.array(COLOURS[0], float), np.array(COLOURS[1], float)
    assert np.allclose(decoded[10][H // 2, W // 2], red, atol=12)  # copied body of segment 0
    assert np.allclose(decoded[80][H // 2, W // 2], green, atol=12)  # copied body of segment 1
    crossfade = [decoded[i][H // 2, W // 2].astype(float) for i in range(frames, frames + tail)]
    # The crossfade runs from red to green: every seam frame is a real blend of the two.
    assert all(0.1 < (c[1] - red[1]) / (green[1] - red[1]) < 0.9 for c in crossfade)
    fade = [_luma(decoded[i]) for i in range(2 * frames, 2 * frames + tail)]
    assert min(fade) < 0.6 * _luma(decoded[80])  # through black at the second seam


def test_house_format_is_detected_from_the_packets(tmp_path):
    from longvid.providers.preview import PreviewProvider

    spec = RenderSpec(prompt="a lighthouse at night", duration_s=6, resolution="360p")
    job = RenderPipeline(LocalRunStore(tmp_path)).plan(spec).jobs[1]
    assert job.head_frames and job.tail_frames  # a middle segment: IDR frames wanted at both seams
    provider = PreviewProvider()
    preview = provider.fetch(provider.submit(job))
    assert needs_normalising(preview, job) is None  # the renderer already encodes the house format
    style = encode_provider_style(_solid((10, 20, 30), job.needed_frames, job.width, job.height), job.fps, job.width, job.height)
    assert needs_normalising(style, job) == "another encoder's H.264 parameters"
    assert house_format_problem(normalise_clip(style, house_format(job)), house_format(job)) is None
    assert needs_normalising(b"not a video", job).startswith("unreadable")


SPEC = dict(prompt="a lighthouse at night", duration_s=8, resolution="360p", provider="runway", judge="off",
            continuity="anchor", budget_usd=50)


def _manifest(run_dir):
    return load_manifest((run_dir / "manifest.json").read_text())


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tone_prominence(path, hz):
    """How far the spectrum at `hz` stands above the median of the band around it."""
    from longvid.media.audio import decode_audio

    mono = decode_audio(path).mean(axis=0)
    spectrum = np.abs(np.fft.rfft(mono))
    bin_hz = 48000 / mono.size
    at = int(round(hz / bin_hz))
    band = spectrum[int(hz * 0.7 / bin_hz): int(hz * 1.3 / bin_hz)]
    return float(spectrum[at - 2: at + 3].max() / np.median(band))


def test_render_through_runway_normalises_each_segment(provider_runway, tmp_path):
    runner = InlineSegmentRunner()
    spec = RenderSpec(**SPEC)
    result = RenderPipeline(LocalRunStore(tmp_path), runner, settings=Settings.from_env()).render(spec, run_id="r")
    assert result.frames == spec.total_frames
    assert result.merge.copied_segments == result.segments  # every segment stream-copied between its seams
    manifest = _manifest(tmp_path / "r")
    assert sorted(i for i, _ in runner.normalised) == list(range(result.segments))
    assert all(request.num_cpus == 1 and request.memory_bytes > 0 for _, request in runner.normalised)
    for record in manifest.segments:
        clip = record.clip
        assert record.state is SegmentState.ACCEPTED and clip.normalised
        assert clip.path == segment_path(record.index) and clip.original == original_path(record.index)
        assert _sha(tmp_path / "r" / clip.path) == clip.sha256
        assert probe(tmp_path / "r" / clip.original).fps == 30  # the provider's own file, kept as it came
    assert provider_runway.counts["create"] == result.segments
    # Narrated: the clips' own audio went from the merge to the soundtrack as PCM, mixed under the voice.
    assert result.sound is not None and result.sound["narration_s"] > 0
    assert result.sound["provider_s"] == pytest.approx(spec.duration_s, abs=0.1)  # the clips' own sound, all of it
    # and it is in the final mix: the fake's 220 Hz tone stands out of the voice's spectrum there, not in the voice alone
    assert _tone_prominence(tmp_path / "r" / "final.mp4", 220) > 20 > _tone_prominence(tmp_path / "r" / "narration.wav", 220)
    assert abs(result.sound["loudness_lufs"] + 14) <= 1 and probe(tmp_path / "r" / "final.mp4").has_audio
    assert not list((tmp_path / "r").glob("*.f32")) and not list((tmp_path / "r").glob(".final.mp4*"))  # no scratch left


class CrashWhileNormalising(InlineSegmentRunner):
    """The driver dies in the middle of the first normalisation."""

    def normalise(self, job, mp4, request, want_seam, threads=0):
        raise SystemExit("simulated crash while normalising")


class ArrivingBackwards(InlineSegmentRunner):
    """Clips arrive latest in the timeline first, all at once (one latency for every task)."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.arrived: list[int] = []

    def wait(self, handles):
        backwards = list(reversed(handles))
        self.arrived += [value.index for kind, value in backwards if kind == "ok" and isinstance(value, SegmentResult)]
        return backwards


def test_clips_arriving_together_are_normalised_earliest_in_the_timeline_first(provider_runway, tmp_path):
    runner = ArrivingBackwards(ClusterCapacity(cpus=2, gpus=0, memory_bytes=8 * 1024**3))
    result = RenderPipeline(LocalRunStore(tmp_path), runner, settings=Settings.from_env()).render(RenderSpec(**SPEC), run_id="r")
    started = [index for index, _ in runner.normalised]
    assert len(started) == result.segments >= 3
    assert started == sorted(started) and runner.arrived == sorted(started, reverse=True)  # not in the order they came
    assert all(request.num_cpus == 1.0 for _, request in runner.normalised)


def test_crash_during_normalisation_resumes_without_a_new_provider_task(provider_runway, tmp_path):
    spec = RenderSpec(**SPEC)
    store = LocalRunStore(tmp_path)
    with pytest.raises(SystemExit):
        RenderPipeline(store, CrashWhileNormalising(), settings=Settings.from_env()).render(spec, run_id="r")
    crashed = _manifest(tmp_path / "r")
    # The clips that arrived before the crash wait, recorded but not normalised (the runner
    # collects every arrival before the first normalisation starts).
    waiting = [r for r in crashed.segments if r.state is SegmentState.GENERATED]
    assert waiting and not any(r.clip.normalised for r in waiting)
    assert all((tmp_path / "r" / original_path(r.index)).exists() for r in waiting)
    created, charged = provider_runway.counts["create"], crashed.cost_usd

    runner = InlineSegmentRunner()
    result = RenderPipeline(store, runner, settings=Settings.from_env()).resume("r")
    assert provider_runway.counts["create"] == created  # resumed from the original on disk and polled tasks
    assert result.frames == spec.total_frames and result.merge.copied_segments == result.segments
    manifest = _manifest(tmp_path / "r")
    assert all(r.clip.normalised for r in manifest.segments)
    assert all(manifest.segments[r.index].cost_usd == r.cost_usd > 0 for r in waiting)  # paid once
    assert charged <= manifest.cost_usd
    again = InlineSegmentRunner()
    RenderPipeline(store, again, settings=Settings.from_env()).resume("r")
    assert again.normalised == []  # a finished run is never normalised twice


def test_a_failed_soundtrack_leaves_the_finished_video_as_it_was(provider_runway, tmp_path, monkeypatch):
    """With narration to mix, the merge writes the picture and the clips' audio to scratch
    files and only the soundtrack step writes final.mp4: a soundtrack that fails on a resumed
    (or edited) run leaves the earlier final.mp4, sound and all, and no scratch behind."""
    import longvid.sound.finish as finish

    store = LocalRunStore(tmp_path)
    RenderPipeline(store, InlineSegmentRunner(), settings=Settings.from_env()).render(RenderSpec(**SPEC), run_id="r")
    final = tmp_path / "r" / "final.mp4"
    before = _sha(final)

    def broken(*args, **kwargs):
        raise RuntimeError("the disk is full")

    working = finish.add_sound
    monkeypatch.setattr(finish, "add_sound", broken)
    with pytest.raises(RuntimeError, match="the disk is full"):
        RenderPipeline(store, InlineSegmentRunner(), settings=Settings.from_env()).resume("r")
    assert _sha(final) == before and probe(final).has_audio
    assert not list((tmp_path / "r").glob(".final.mp4.*")) and not list((tmp_path / "r").glob("*.f32"))

    monkeypatch.setattr(finish, "add_sound", working)
    result = RenderPipeline(store, InlineSegmentRunner(), settings=Settings.from_env()).resume("r")
    assert result.sound["provider_s"] > 0 and probe(final).has_audio
