import io

import av
import numpy as np
import pytest
from PIL import Image

from longvid.planning import OfflinePlanner, segment_storyboard
from longvid.providers import TaskState, VideoProvider, create_provider, generate
from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider, render_frames
from longvid.settings import Settings
from longvid.spec import RenderSpec


@pytest.fixture(scope="module")
def jobs():
    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=45, resolution="360p")
    return segment_storyboard(OfflinePlanner().plan(spec, 6), spec, PREVIEW_CAPABILITIES.durations)


def _mean_diff(a, b):
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_preview_speaks_the_provider_protocol():
    provider = create_provider("preview", Settings())
    assert isinstance(provider, VideoProvider)
    assert provider.price(10) == 0.0


def test_rendering_is_deterministic(jobs):
    a = list(render_frames(jobs[0], frame_count=3))
    b = list(render_frames(jobs[0], frame_count=3))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == (360, 640, 3) and a[0].dtype == np.uint8


def test_scene_changes_are_visible_and_scenes_are_stable(jobs):
    # Consecutive frames inside a scene barely differ; the first frame of the next scene does.
    by_scene = {}
    for job in jobs:
        by_scene.setdefault(job.scene_index, job)
    first, second = by_scene[0], by_scene[1]
    frames = list(render_frames(first, frame_count=first.frames))
    within = max(_mean_diff(a, b) for a, b in zip(frames, frames[1:]))
    across = _mean_diff(frames[-1], next(render_frames(second, frame_count=1)))
    assert across > 4 * within
    assert across > 5


def test_segments_of_one_scene_join_without_a_jump(jobs):
    pairs = [(a, b) for a, b in zip(jobs, jobs[1:]) if a.scene_index == b.scene_index]
    assert pairs, "the plan should have a scene with two segments"
    a, b = pairs[0]
    end_of_a = list(render_frames(a, frame_count=a.frames + 1))[-1]  # the frame where b starts
    start_of_b = next(render_frames(b, frame_count=1))
    assert _mean_diff(end_of_a, start_of_b) < 0.5


def test_conditioning_frame_is_where_the_segment_starts(jobs):
    image = np.zeros((360, 640, 3), np.uint8)
    image[:, :, 0] = 200  # a red picture nothing like the scene
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    frames = list(render_frames(jobs[1], png.getvalue(), frame_count=20))
    unconditioned = list(render_frames(jobs[1], frame_count=20))
    assert _mean_diff(frames[0], image) < 1.0
    assert _mean_diff(frames[-1], unconditioned[-1]) < 0.5  # eased back into its own render
    assert _mean_diff(frames[6], image) > 1.0


def test_generate_returns_a_real_mp4_with_requested_keyframes(jobs):
    job = jobs[1].model_copy(update={"generate_duration_s": 2.0, "frames": 40, "head_frames": 6, "tail_frames": 6})
    provider = PreviewProvider()
    statuses = []
    task_id, data = generate(provider, job, on_status=lambda t, s: statuses.append(s.state), sleep=lambda s: None)
    assert task_id.startswith("preview-") and statuses == [TaskState.SUCCEEDED]
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        keyframes = sorted(round(float(p.pts * stream.time_base) * 24) for p in packets if p.is_keyframe)
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
    assert len(packets) == 48
    assert {0, 6, 40} <= set(keyframes)
