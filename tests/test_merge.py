
import av
import numpy as np
import pytest

from conftest import decode_rgb
from longvid.media import MergeInput, merge_segments, probe
from longvid.media.merge import transition_alpha
from longvid.planning import OfflinePlanner, segment_storyboard
from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
from longvid.spec import RenderSpec, Transition
from media_helpers import solid_frames, write_clip, write_foreign_clip

RED, BLUE = (220, 20, 20), (20, 20, 220)


def _two_solid_clips(tmp_path, overlap):
    a = write_clip(tmp_path / "a.mp4", solid_frames(RED, 48 + overlap), keyframes={48})
    b = write_clip(tmp_path / "b.mp4", solid_frames(BLUE, 48), keyframes={overlap})
    return a, b


@pytest.mark.parametrize("stream_copy", [True, False])
def test_crossfade_frames_are_blends_of_both_sides(tmp_path, stream_copy):
    a, b = _two_solid_clips(tmp_path, 6)
    out = tmp_path / "out.mp4"
    stats = merge_segments(
        [MergeInput(a, 48, tail_frames=6), MergeInput(b, 48, head_frames=6, head_transition=Transition.CROSSFADE)],
        out, 24, 64, 48, stream_copy=stream_copy,
    )
    frames = decode_rgb(out)
    assert len(frames) == 96 == stats.frames
    reds = [float(f[..., 0].mean()) for f in frames]
    blues = [float(f[..., 2].mean()) for f in frames]
    assert reds[47] > 200 and blues[47] < 40  # last pure frame of A
    seam = range(48, 54)
    for k in seam:
        assert 25 < reds[k] < 215 and 25 < blues[k] < 215, f"frame {k} is not a blend"
        expected_blue = 20 + (220 - 20) * transition_alpha(k - 48, 6)
        assert abs(blues[k] - expected_blue) < 12
    assert all(x > y for x, y in zip([reds[k] for k in seam], [reds[k] for k in seam][1:]))
    assert blues[54] > 200 and reds[54] < 40
    if stream_copy:
        assert stats.copied_frames > 0 and stats.encoded_frames < 96


def test_cut_has_no_blended_frames(tmp_path):
    a = write_clip(tmp_path / "a.mp4", solid_frames(RED, 48))
    b = write_clip(tmp_path / "b.mp4", solid_frames(BLUE, 48))
    out = tmp_path / "out.mp4"
    merge_segments([MergeInput(a, 48), MergeInput(b, 48)], out, 24, 64, 48)
    reds = [float(f[..., 0].mean()) for f in decode_rgb(out)]
    assert len(reds) == 96
    assert all(r > 200 for r in reds[:48]) and all(r < 40 for r in reds[48:])


def test_fade_goes_through_black(tmp_path):
    a = write_clip(tmp_path / "a.mp4", solid_frames(RED, 60), keyframes={48})
    b = write_clip(tmp_path / "b.mp4", solid_frames(BLUE, 48), keyframes={12})
    out = tmp_path / "out.mp4"
    merge_segments(
        [MergeInput(a, 48, tail_frames=12), MergeInput(b, 48, head_frames=12, head_transition=Transition.FADE)],
        out, 24, 64, 48,
    )
    frames = decode_rgb(out)
    brightness = [float(f.mean()) for f in frames]
    assert len(frames) == 96
    assert min(brightness[48:60]) < 12  # near black in the middle of the fade
    assert brightness[47] > 60 and brightness[60] > 60


@pytest.fixture(scope="module")
def preview_segments(tmp_path_factory):
    """Three real preview segments (360p, 2-3 s each) as a render would make them."""
    folder = tmp_path_factory.mktemp("preview")
    spec = RenderSpec(prompt="a red fox. a frozen river. a ridge at dusk.", duration_s=8, resolution="360p", seed=3)
    jobs = segment_storyboard(OfflinePlanner().plan(spec, 4), spec, PREVIEW_CAPABILITIES.durations)
    provider = PreviewProvider()
    inputs = []
    for job in jobs:
        path = folder / f"seg{job.index}.mp4"
        path.write_bytes(provider.fetch(provider.submit(job)))
        inputs.append(MergeInput(path, job.frames, job.head_frames, job.head_transition, job.tail_frames))
    return spec, inputs


def test_seam_window_merge_matches_a_full_reencode(preview_segments, tmp_path):
    spec, inputs = preview_segments
    fast = merge_segments(inputs, tmp_path / "fast.mp4", 24, 640, 360, stream_copy=True)
    slow = merge_segments(inputs, tmp_path / "slow.mp4", 24, 640, 360, stream_copy=False)
    assert fast.frames == slow.frames == spec.total_frames
    assert fast.copied_segments == len(inputs)
    seam_frames = sum(i.head_frames for i in inputs)
    assert fast.encoded_frames == seam_frames  # IDRs at the seams: only the transitions re-encode
    assert slow.copied_frames == 0
    a, b = decode_rgb(tmp_path / "fast.mp4"), decode_rgb(tmp_path / "slow.mp4")
    assert len(a) == len(b) == spec.total_frames
    worst = max(float(np.abs(x.astype(np.int16) - y).mean()) for x, y in zip(a, b))
    assert worst < 2.0  # the same picture, up to compression noise
    with av.open(str(tmp_path / "fast.mp4")) as container:
        pts = [f.pts for f in container.decode(video=0)]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


def test_foreign_segments_are_normalised_and_padded(tmp_path):
    ours = write_clip(tmp_path / "ours.mp4", solid_frames(RED, 54), keyframes={48})
    # 30 fps, 96x64, mpeg4, and 1 s long although 2 s + seam are asked of it: held on its last frame.
    foreign = write_foreign_clip(tmp_path / "foreign.mp4", BLUE, 30)
    out = tmp_path / "out.mp4"
    stats = merge_segments(
        [MergeInput(ours, 48, tail_frames=6), MergeInput(foreign, 48, head_frames=6, head_transition=Transition.CROSSFADE)],
        out, 24, 64, 48,
    )
    info = probe(out)
    assert (info.frames, info.width, info.height, info.fps, info.codec, info.pix_fmt) == (96, 64, 48, 24.0, "h264", "yuv420p")
    assert stats.copied_segments == 1  # ours only
    blues = [float(f[..., 2].mean()) for f in decode_rgb(out)]
    assert all(b > 200 for b in blues[54:])


def test_audio_is_carried_and_fills_silent_segments(tmp_path):
    with_tone = write_foreign_clip(tmp_path / "tone.mp4", RED, 48, fps=24, width=64, height=48, tone_hz=440, codec="libx264")
    silent = write_clip(tmp_path / "silent.mp4", solid_frames(BLUE, 48))
    out = tmp_path / "out.mp4"
    stats = merge_segments([MergeInput(with_tone, 42, tail_frames=6), MergeInput(silent, 48, head_frames=6, head_transition=Transition.CROSSFADE)], out, 24, 64, 48)
    assert stats.audio
    with av.open(str(out)) as container:
        pcm = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    seconds = pcm.shape[1] / 48000
    assert abs(seconds - 90 / 24) < 0.1
    first, last = pcm[:, 4800:76800], pcm[:, -48000:]
    assert np.sqrt((first**2).mean()) > 0.1  # the tone
    assert np.sqrt((last**2).mean()) < 0.01  # silence where the segment had none


def test_failed_merge_leaves_the_old_file_and_no_partial(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous good video")
    missing = MergeInput(tmp_path / "missing.mp4", 24)
    with pytest.raises(Exception):
        merge_segments([missing], out, 24, 64, 48)
    assert out.read_bytes() == b"previous good video"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_a_segment_that_fails_mid_merge_stops_the_audio_side_cleanly(tmp_path):
    """The audio track is encoded on its own thread into the same container: when the video
    side fails, the thread stops before the container closes (no write into a closed file),
    the error is the video's, and no partial output is left."""
    first, broken = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_foreign_clip(first, (200, 0, 0), 48, fps=24, tone_hz=440)
    with av.open(str(broken), "w") as container:  # audio that mixes fine, and no picture
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "stereo"
        for i in range(60):
            frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    inputs = [MergeInput(first, 48, tail_frames=6), MergeInput(broken, 48, head_frames=6, head_transition=Transition.CROSSFADE)]
    with pytest.raises(ValueError, match="no video stream"):
        merge_segments(inputs, tmp_path / "out.mp4", 24, 96, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]
