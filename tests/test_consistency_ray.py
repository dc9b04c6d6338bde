"""The judge and the compressor as Ray actors; their resource options as pure functions."""

import numpy as np
import pytest

from longvid.consistency import (
    TINY_CLIP_NAME,
    JudgeConfig,
    SegmentScores,
    compressor_actor_options,
    create_compressor_actor,
    create_judge_actor,
    head_frames,
    judge_actor_options,
    write_tiny_clip_checkpoint,
)


def test_judge_asks_for_a_gpu_fraction_only_when_there_is_a_gpu():
    assert judge_actor_options({"CPU": 16, "GPU": 2}) == {"num_cpus": 1, "num_gpus": 0.25}
    assert judge_actor_options({"CPU": 16}) == {"num_cpus": 1, "num_gpus": 0}
    assert judge_actor_options({"CPU": 16, "GPU": 0.0}) == {"num_cpus": 1, "num_gpus": 0}
    assert judge_actor_options({"CPU": 16, "GPU": 0.1}) == {"num_cpus": 1, "num_gpus": 0.1}  # what there is
    assert judge_actor_options({"GPU": 1}, gpu_fraction=0.5)["num_gpus"] == 0.5


def test_judge_wants_no_gpu_when_it_cannot_use_one(tmp_path):
    empty_cache = {"cache_dir": tmp_path}  # no DINOv2 cached there, whatever this machine's cache holds
    assert judge_actor_options({"GPU": 4}, JudgeConfig(backend="structural", **empty_cache))["num_gpus"] == 0
    assert judge_actor_options({"GPU": 4}, JudgeConfig(device="cpu"))["num_gpus"] == 0
    with pytest.raises(ValueError, match="no GPU"):
        judge_actor_options({"CPU": 4}, JudgeConfig(device="cuda"))


def test_a_structural_judge_with_dinov2_asks_for_the_gpu_slice(tmp_path):
    """DINOv2 runs on the judge actor's device: configured (a folder, a download allowed) or in
    the Hugging Face cache, the structural judge wants its GPU fraction too."""
    structural = dict(backend="structural", cache_dir=tmp_path)
    assert judge_actor_options({"GPU": 1}, JudgeConfig(**structural, dinov2_path=tmp_path / "dinov2"))["num_gpus"] == 0.25
    assert judge_actor_options({"GPU": 1}, JudgeConfig(**structural, allow_download=True))["num_gpus"] == 0.25
    cached = tmp_path / "models--facebook--dinov2-small"
    (cached / "refs").mkdir(parents=True)
    (cached / "refs" / "main").write_text("abc123")
    (cached / "snapshots" / "abc123").mkdir(parents=True)
    (cached / "snapshots" / "abc123" / "config.json").write_text("{}")
    assert judge_actor_options({"GPU": 1}, JudgeConfig(**structural))["num_gpus"] == 0.25
    assert judge_actor_options({"GPU": 1}, JudgeConfig(**structural, weighted=False))["num_gpus"] == 0
    assert judge_actor_options({"GPU": 1}, JudgeConfig(**structural, dinov2_path=tmp_path, device="cpu"))["num_gpus"] == 0


def test_compressor_options():
    assert compressor_actor_options({"CPU": 16, "GPU": 1}) == {"num_cpus": 1, "num_gpus": 0.05}
    assert compressor_actor_options({"CPU": 16}) == {"num_cpus": 1, "num_gpus": 0}
    # On a laptop-sized cluster helpers reserve no core, so segments keep both cores.
    assert compressor_actor_options({"CPU": 2}) == {"num_cpus": 0, "num_gpus": 0}
    assert judge_actor_options({"CPU": 2}) == {"num_cpus": 0, "num_gpus": 0}
    assert compressor_actor_options({"GPU": 1}, device="cpu")["num_gpus"] == 0


@pytest.fixture(scope="module")
def short_segment():
    from longvid.planning import OfflinePlanner, segment_storyboard
    from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
    from longvid.spec import RenderSpec

    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=5, resolution="360p")
    jobs = segment_storyboard(OfflinePlanner().plan(spec, 3), spec, PREVIEW_CAPABILITIES.durations)
    provider = PreviewProvider()
    return jobs, [provider.fetch(provider.submit(j)) for j in jobs[:2]]


@pytest.mark.ray
def test_judge_actor_scores_a_segment_with_tiny_clip(ray_session, tmp_path, short_segment):
    ray = ray_session
    jobs, clips = short_segment
    config = JudgeConfig(backend="clip", model_name=TINY_CLIP_NAME, checkpoint_path=write_tiny_clip_checkpoint(tmp_path / "tiny.pt"))
    actor = create_judge_actor(config)
    try:
        info = ray.get(actor.info.remote(), timeout=120)
        assert info["backend"] == "clip" and info["device"] == "cpu"  # no GPU here: num_gpus 0
        anchors = head_frames(clips[0], 1)
        scores = ray.get(actor.score_segment.remote(clips[1], jobs[1], anchors, None, jobs[1].prompt), timeout=120)
        assert isinstance(scores, SegmentScores) and scores.backend == "clip"
        assert scores.anchor is not None and scores.prompt is not None and scores.seam is None
        emb = ray.get(actor.embed.remote(anchors), timeout=60)
        assert emb.shape == (1, 32)
    finally:
        ray.kill(actor)


@pytest.mark.ray
def test_compressor_actor_keeps_a_packed_context(ray_session):
    ray = ray_session
    actor = create_compressor_actor(lambda_=2.0, min_side=8)
    try:
        frames = [np.full((72, 128, 3), 5 * i, np.uint8) for i in range(40)]
        ray.get([actor.push.remote(f) for f in frames], timeout=120)  # an actor runs calls in order
        packed = ray.get(actor.packed.remote(), timeout=60)
        assert [p.shape[:2] for p in packed] == [(72, 128), (36, 64), (18, 32), (9, 16)]
        assert int(packed[0][0, 0, 0]) == 5 * 39
        stats = ray.get(actor.stats.remote(), timeout=60)
        assert stats["pushed"] == 40 and stats["ratio_to_newest"] < 2
    finally:
        ray.kill(actor)
