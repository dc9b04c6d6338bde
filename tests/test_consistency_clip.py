"""CLIP loading and scoring, with a tiny random-weight CLIP loaded through load_clip."""

import subprocess
import sys

import numpy as np
import pytest

from longvid.consistency import (
    TINY_CLIP_NAME,
    ClipScorer,
    JudgeConfig,
    StructuralScorer,
    WeightsUnavailable,
    load_clip,
    make_scorer,
    write_tiny_clip_checkpoint,
)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return write_tiny_clip_checkpoint(tmp_path_factory.mktemp("clip") / "tiny.pt")


@pytest.fixture(scope="module")
def tiny_config(tiny_ckpt):
    return JudgeConfig(backend="clip", model_name=TINY_CLIP_NAME, checkpoint_path=tiny_ckpt, device="cpu")


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    out = []
    for k in range(11):
        frame = np.zeros((72, 128, 3), np.uint8)
        frame[:, :] = rng.integers(0, 256, 3)
        frame[10 + k : 40 + k, 20 + 3 * k : 60 + 3 * k] = rng.integers(0, 256, 3)
        out.append(frame)
    return out


def test_tiny_clip_loads_through_load_clip(tiny_config, tiny_ckpt):
    loaded = load_clip(tiny_config)
    model, preprocess, tokenizer = loaded
    assert loaded.source == str(tiny_ckpt) and loaded.device == "cpu" and loaded.precision == "fp32"
    assert not model.training
    assert tokenizer(["a red fox"]).shape == (1, 16)
    assert loaded.preprocess_cfg["size"] in (64, (64, 64))


def test_checkpoint_weights_are_the_ones_loaded(tiny_config, tmp_path, frames):
    # Another seed, other weights: the loaded model must follow the file.
    other = write_tiny_clip_checkpoint(tmp_path / "other.pt", seed=1)
    a = ClipScorer(tiny_config).embed(frames[:2])
    b = ClipScorer(tiny_config.model_copy(update={"checkpoint_path": other})).embed(frames[:2])
    assert not np.allclose(a, b, atol=1e-3)


def test_embeddings_are_unit_rows(tiny_config, frames):
    scorer = ClipScorer(tiny_config)
    emb = scorer.embed(frames)
    assert emb.shape == (len(frames), 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert scorer.similarity(emb[:1], emb[:1]) == pytest.approx(1.0, abs=1e-5)
    assert scorer.embed([]).shape == (0, 32)


def test_batching_matches_one_by_one(tiny_config, frames):
    batched = ClipScorer(tiny_config.model_copy(update={"batch_size": 4})).embed(frames)  # 4 + 4 + 3
    single = ClipScorer(tiny_config.model_copy(update={"batch_size": 1})).embed(frames)
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_clip_preprocessing_matches_open_clip_transform(tiny_config, frames):
    # The tensor path must be what open_clip's own PIL transform gives (up to resampling).
    import torch
    from PIL import Image

    scorer = ClipScorer(tiny_config)
    ours = scorer._preprocess(frames[:3])
    theirs = torch.stack([scorer.loaded.preprocess(Image.fromarray(f)) for f in frames[:3]])
    assert ours.shape == theirs.shape == (3, 3, 64, 64)
    assert float((ours - theirs).abs().mean()) < 0.05


def test_text_similarity_with_clip_and_none_without(tiny_config, frames):
    scorer = ClipScorer(tiny_config)
    value = scorer.text_similarity(scorer.embed(frames[:3]), "a red fox in the snow")
    assert isinstance(value, float) and -1.0 <= value <= 1.0
    assert StructuralScorer().text_similarity(StructuralScorer().embed(frames[:3]), "a red fox") is None


def test_clip_without_weights_raises_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailable) as err:
        make_scorer(JudgeConfig(backend="clip", cache_dir=tmp_path))
    message = str(err.value)
    assert "ViT-B-32" in message and "laion2b_s34b_b79k" in message
    assert str(tmp_path) in message  # where it looked
    assert "checkpoint_path" in message and "allow_download" in message and "structural" in message


def test_missing_checkpoint_file_is_named(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsUnavailable, match="nope.safetensors"):
        load_clip(JudgeConfig(backend="clip", checkpoint_path=missing))


def test_auto_without_weights_falls_back_to_structural_and_says_so(tmp_path):
    scorer = make_scorer(JudgeConfig(backend="auto", cache_dir=tmp_path))
    assert isinstance(scorer, StructuralScorer) and scorer.backend == "structural"
    assert "fell back" in scorer.notes and "ViT-B-32" in scorer.notes


def test_auto_with_weights_uses_clip(tiny_config):
    scorer = make_scorer(tiny_config.model_copy(update={"backend": "auto"}))
    assert isinstance(scorer, ClipScorer) and scorer.backend == "clip"


def test_weights_are_found_in_a_local_hugging_face_cache(tmp_path, tiny_ckpt, monkeypatch, frames):
    """A tagged model resolves from the HF cache layout without any request."""
    import shutil

    from open_clip import pretrained

    monkeypatch.setitem(pretrained._PRETRAINED, TINY_CLIP_NAME, {"test": {"url": "", "hf_hub": "longvid/tiny-clip-test/"}})
    snapshot = tmp_path / "models--longvid--tiny-clip-test" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_ckpt, snapshot / "open_clip_pytorch_model.bin")
    (tmp_path / "models--longvid--tiny-clip-test" / "refs").mkdir()
    (tmp_path / "models--longvid--tiny-clip-test" / "refs" / "main").write_text("0" * 40)

    config = JudgeConfig(backend="clip", model_name=TINY_CLIP_NAME, pretrained="test", cache_dir=tmp_path, device="cpu")
    loaded = load_clip(config)
    assert loaded.source.startswith("cache:") and "open_clip_pytorch_model.bin" in loaded.source
    direct = ClipScorer(JudgeConfig(backend="clip", model_name=TINY_CLIP_NAME, checkpoint_path=tiny_ckpt, device="cpu"))
    np.testing.assert_allclose(ClipScorer(config, loaded).embed(frames[:2]), direct.embed(frames[:2]), atol=1e-6)


def test_importing_the_package_loads_no_heavy_modules():
    code = "import sys, longvid.consistency; print(sorted(m for m in ('torch', 'open_clip', 'ray', 'av') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
