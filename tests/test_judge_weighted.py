"""Weighted VBench metrics (consistency/weighted.py): DINOv2 subject consistency, CLIP background
consistency and the LAION aesthetic score, loaded through the product's own loaders from tiny
random models saved in tmp folders. With random weights nothing is *seen*, so these tests
assert what is honest: features per frame, identical frames score 1.0, a clip whose second half
is another picture scores lower, absent weights skip with a note, a missing model is named."""

import numpy as np
import pytest

from longvid.consistency import TINY_CLIP_NAME, ConsistencyJudge, JudgeConfig, WeightsUnavailable, write_tiny_clip_checkpoint
from longvid.consistency.weighted import WeightedMetrics, evenly_spaced, vbench_consistency
from longvid.consistency.weighted_models import dinov2_features, load_aesthetic_head, load_dinov2, pixel_values
from longvid.errors import InputError
from longvid.manifest import AttemptRecord
from longvid.testing import drift_clips as dc
from longvid.testing.tiny_judge_models import build_tiny_dinov2, write_tiny_aesthetic_head


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    return build_tiny_dinov2(tmp_path_factory.mktemp("dinov2"))


@pytest.fixture(scope="module")
def job():
    return dc.tiny_jobs(duration_s=12)[0]  # 128x72; its scene has the fox


@pytest.fixture(scope="module")
def swap_clip(job):
    """The clean clip's first frame, then the same frame with the subject swapped in its own
    colours: the same layout and palette, another subject."""
    clean, swapped = dc.clean(job)[0], dc.subject_swap(job)[0]
    assert not np.array_equal(clean, swapped)
    return [clean] * 4 + [swapped] * 4


def test_vbench_consistency_formula():
    e = np.eye(4, dtype=np.float32)
    assert vbench_consistency(e[[0, 0, 0]]) == 1.0
    # frame 1 is orthogonal to frame 0; frame 2 equals frame 1: ((0+0)/2 + (0+1)/2) / 2
    assert vbench_consistency(e[[0, 1, 1]]) == 0.25
    assert vbench_consistency(np.stack([e[0], -e[0]])) == 0.0  # negative cosines clip at 0
    assert vbench_consistency(e[[0]]) is None
    assert evenly_spaced(47, 8)[0] == 0 and evenly_spaced(47, 8)[-1] == 47 and len(evenly_spaced(47, 8)) == 8
    assert evenly_spaced(2, 8) == [0, 1, 2]


def test_dinov2_features_are_computed_per_frame(dino_dir, job, swap_clip):
    loaded = load_dinov2(JudgeConfig(dinov2_path=dino_dir, device="cpu"))
    assert loaded.source == str(dino_dir) and loaded.device == "cpu"
    features = dinov2_features(loaded, swap_clip, batch_size=3)  # batches of 3 cover 8 frames
    assert features.shape == (8, 32)
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    assert np.allclose(features[0], features[3], atol=1e-5) and not np.allclose(features[3], features[4], atol=1e-3)
    # The tensor preprocessing is the image processor's own, to a grey level's rounding.
    frames = [swap_clip[0], swap_clip[-1][:, :50]]  # a wide frame and a tall one
    ours = pixel_values(loaded, frames).numpy()
    theirs = loaded.processor(images=frames, return_tensors="pt")["pixel_values"].numpy()
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() < 1.5 / 255 / min(loaded.processor.image_std)


def test_subject_consistency_static_is_one_and_a_swap_scores_lower(dino_dir, swap_clip):
    metrics = WeightedMetrics(JudgeConfig(dinov2_path=dino_dir, device="cpu"), clip_dim=None)
    assert metrics.active and "DINOv2 from" in metrics.notes
    static = metrics.score([swap_clip[0]] * 8, None)
    swapped = metrics.score(swap_clip, None)
    assert static.subject == 1.0
    assert swapped.subject < static.subject
    assert static.background is None and static.aesthetic is None  # no CLIP: skipped
    assert "need CLIP" in metrics.notes


def test_absent_dinov2_is_skipped_with_a_note_naming_where_it_looked(tmp_path, swap_clip):
    metrics = WeightedMetrics(JudgeConfig(cache_dir=tmp_path, device="cpu"), clip_dim=None)
    assert metrics.dinov2 is None and not metrics.active
    assert "subject consistency skipped" in metrics.notes and str(tmp_path) in metrics.notes
    assert "facebook/dinov2-small" in metrics.notes
    assert metrics.score(swap_clip, None).subject is None


def test_a_missing_dinov2_folder_is_an_error_that_names_it(tmp_path):
    missing = tmp_path / "no-such-dinov2"
    with pytest.raises(WeightsUnavailable, match="no-such-dinov2/config.json") as caught:
        WeightedMetrics(JudgeConfig(dinov2_path=missing, device="cpu"), clip_dim=None)
    assert "--allow-download" in str(caught.value)
    with pytest.raises(WeightsUnavailable, match="looked in: .*" + str(tmp_path)):
        load_dinov2(JudgeConfig(cache_dir=tmp_path, device="cpu"))


def test_aesthetic_head_formats_fold_to_the_same_affine_map(tmp_path):
    from safetensors.numpy import load_file, save_file

    mlp = load_aesthetic_head(write_tiny_aesthetic_head(tmp_path / "mlp.safetensors", dim=32))
    raw = load_file(str(tmp_path / "mlp.safetensors"))
    x = np.random.default_rng(1).standard_normal((5, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    direct = (x @ raw["layers.0.weight"].T + raw["layers.0.bias"]) @ raw["layers.2.weight"].T + raw["layers.2.bias"]
    assert np.allclose(mlp.rate(x), direct[:, 0], atol=1e-4) and mlp.dim == 32
    # LAION's v1 linear layout ('weight', 'bias'), here written as safetensors
    save_file({"weight": raw["layers.2.weight"] @ raw["layers.0.weight"], "bias": raw["layers.2.bias"]}, str(tmp_path / "lin.safetensors"))
    assert np.allclose(load_aesthetic_head(tmp_path / "lin.safetensors").rate(x), mlp.rate(x), atol=1e-4)
    with pytest.raises(WeightsUnavailable, match="nope.safetensors .no such file"):
        load_aesthetic_head(tmp_path / "nope.safetensors")
    save_file({"other": np.zeros(3, np.float32)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(InputError, match="no linear layers"):
        load_aesthetic_head(tmp_path / "bad.safetensors")


def test_judge_reports_weighted_metrics_per_segment_and_folds_them_into_the_verdict(tmp_path, dino_dir, job, swap_clip):
    """The whole path on the judge: tiny CLIP + tiny DINOv2 + a tiny head, one decode pass."""
    ckpt = write_tiny_clip_checkpoint(tmp_path / "clip.pt")
    head = write_tiny_aesthetic_head(tmp_path / "head.safetensors", dim=32)
    strict = JudgeConfig().weighted_thresholds.model_copy(update={"subject": 1.0, "aesthetic": None})
    config = JudgeConfig(backend="clip", model_name=TINY_CLIP_NAME, checkpoint_path=ckpt, pretrained="openai", device="cpu",
                         dinov2_path=dino_dir, aesthetic_head=head, weighted_thresholds=strict)
    judge = ConsistencyJudge(config)
    assert "aesthetic score from" in judge.notes and "background consistency on the judge's CLIP" in judge.notes
    clip_job = job.model_copy(update={"frames": 8})
    static = judge.score_segment(dc.mp4(clip_job, [swap_clip[0]] * 8), clip_job)
    swapped = judge.score_segment(dc.mp4(clip_job, swap_clip), clip_job)
    for scores in (static, swapped):
        assert None not in (scores.subject, scores.background, scores.aesthetic)
        assert 0.0 <= scores.aesthetic <= 1.0
    assert static.subject > swapped.subject and static.background > swapped.background
    assert static.passed and not swapped.passed
    assert any(f.startswith("subject ") for f in swapped.failures)
    record = AttemptRecord(seed=0, passed=swapped.passed, quality=0.0, file="x", sha256="0",
                           **swapped.model_dump(exclude={"passed"}))
    assert record.measured["subject"] == swapped.subject and "aesthetic" in record.measured
    # By default the weighted metrics are record-only (no threshold measured on real weights):
    # the same swapped clip is scored and recorded, and no weighted check fails it.
    assert JudgeConfig().weighted_thresholds.model_dump() == {"subject": None, "background": None, "aesthetic": None}
    default = ConsistencyJudge(config.model_copy(update={"weighted_thresholds": JudgeConfig().weighted_thresholds}))
    recorded = default.score_segment(dc.mp4(clip_job, swap_clip), clip_job)
    assert recorded.subject == swapped.subject and recorded.background == swapped.background and recorded.aesthetic is not None
    assert not [f for f in recorded.failures if f.split(" ", 1)[0] in ("subject", "background", "aesthetic")], recorded.failures
    # A head made for another CLIP is refused with both sizes named.
    with pytest.raises(InputError, match="takes 48-d CLIP embeddings.*gives 32-d"):
        ConsistencyJudge(config.model_copy(update={"aesthetic_head": write_tiny_aesthetic_head(tmp_path / "l14.safetensors", dim=48)}))


def test_structural_judge_without_weights_is_unchanged(tmp_path, job):
    judge = ConsistencyJudge(JudgeConfig(backend="structural", cache_dir=tmp_path))
    assert not judge.weighted.active
    scores = judge.score_segment(dc.mp4(job, dc.clean(job)), job)
    assert scores.subject is None and scores.background is None and scores.aesthetic is None
    assert "subject consistency skipped" in judge.notes


def test_an_aesthetic_head_needs_openais_clip_of_its_size():
    """LAION's heads were trained on OpenAI CLIP embeddings: open_clip's laion2b ViT-B-32 (the
    judge's default) has the same size and another space."""
    from longvid.consistency.aesthetic_check import clip_embed_dim, head_mismatch

    assert clip_embed_dim("ViT-B-32") == 512 and clip_embed_dim("ViT-L-14") == 768 and clip_embed_dim(TINY_CLIP_NAME) == 32
    assert clip_embed_dim("hf-hub:someone/model") is None
    default = JudgeConfig()
    why = head_mismatch(default.model_name, default.pretrained, 512, 512)
    assert why is not None and "OpenAI" in why and "--clip-pretrained openai" in why and "laion2b" in why
    assert head_mismatch("ViT-B-32", "openai", 512, 512) is None
    wrong_size = head_mismatch("ViT-B-32", "openai", 768, 512)
    assert "768-d" in wrong_size and "sa_0_4_vit_b_32_linear.pth" in wrong_size
    assert "known size" in head_mismatch("hf-hub:someone/model", "openai", 512, None)


@pytest.mark.parametrize("content, expected", [
    (b"\x00\x01 not a safetensors file", "cannot be read"),
    (None, "no linear layers"),  # a valid file of other tensors
    ("l14", "takes 48-d CLIP embeddings, but the judge's CLIP .* gives 32-d"),
    ("laion", "trained on OpenAI's CLIP embeddings.*--clip-pretrained openai"),
])
def test_a_bad_aesthetic_head_is_one_line_exit_2_before_ray(tmp_path, capsys, content, expected):
    import re

    from safetensors.numpy import save_file

    from longvid.cli import main

    head, args = tmp_path / "head.safetensors", ["--clip-pretrained", "openai"]
    if content is None:
        save_file({"other": np.zeros(3, np.float32)}, str(head))
    elif content == "l14":
        write_tiny_aesthetic_head(head, dim=48)
    elif content == "laion":
        write_tiny_aesthetic_head(head, dim=32)
        args = []  # the default CLIP: laion2b
    else:
        head.write_bytes(content)
    ckpt = tmp_path / "clip.pt"  # never loaded: the head is refused first
    # An address where no Ray listens: reaching Ray (in a process without it) would fail otherwise.
    code = main(["render", "a kite", "-d", "5", "--store", str(tmp_path / "store"), "--judge", "clip", "--clip-model", TINY_CLIP_NAME,
                 "--clip-checkpoint", str(ckpt), "--aesthetic-head", str(head), "--ray-address", "127.0.0.1:9", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"longvid: error: aesthetic head {head}"), err
    assert re.search(expected, err[0]), err[0]
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())  # no run was started
