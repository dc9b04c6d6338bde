"""Character memory: bounded, type-safe, saved atomically."""

import os

import numpy as np
import pytest

from longvid.consistency import CharacterMemory


def unit(rng, n, d=8):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_score_is_best_match_against_references_and_appearances():
    rng = np.random.default_rng(0)
    memory = CharacterMemory(backend="structural")
    refs = unit(rng, 2)
    memory.add_reference("Red Fox", refs, backend="structural")
    assert memory.score("red fox", refs[:1]) == pytest.approx(1.0, abs=1e-6)  # names are case-blind
    assert memory.score("nobody", refs[:1]) is None
    other = unit(rng, 1)
    before = memory.score("Red Fox", other)
    memory.add_appearance("Red Fox", other)
    after = memory.score("Red Fox", other)
    assert after == pytest.approx(1.0, abs=1e-6) and after > before
    assert memory.names() == ["Red Fox"] and "RED FOX" in memory and len(memory) == 1


def test_appearances_are_bounded_and_references_kept():
    rng = np.random.default_rng(1)
    memory = CharacterMemory(max_appearances=4)
    memory.add_reference("fox", unit(rng, 3))
    for _ in range(50):
        memory.add_appearance("fox", unit(rng, 2))
    assert len(memory.embeddings("fox")) == 3 + 4


def test_refuses_to_mix_scorers():
    rng = np.random.default_rng(2)
    memory = CharacterMemory()
    memory.add_reference("fox", unit(rng, 1, 8), backend="clip")
    with pytest.raises(ValueError, match="'clip'"):
        memory.add_reference("fox", unit(rng, 1, 8), backend="structural")
    with pytest.raises(ValueError, match="8-d"):
        memory.add_appearance("fox", unit(rng, 1, 16))


def test_save_and_load_round_trip_atomically(tmp_path):
    rng = np.random.default_rng(3)
    memory = CharacterMemory(backend="clip", max_appearances=5)
    memory.add_reference("Fox", unit(rng, 2))
    memory.add_appearance("Fox", unit(rng, 3))
    memory.add_appearance("Owl", unit(rng, 1))
    path = tmp_path / "memory" / "characters.npz"
    memory.save(path)
    memory.save(path)  # replacing an existing file
    loaded = CharacterMemory.load(path)
    assert loaded.backend == "clip" and loaded.dim == 8 and loaded.max_appearances == 5
    assert loaded.names() == ["Fox", "Owl"]
    for name in ("Fox", "Owl"):
        np.testing.assert_array_equal(loaded.embeddings(name), memory.embeddings(name))
    assert sorted(os.listdir(path.parent)) == ["characters.npz"]  # no temp file left behind


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    path = tmp_path / "characters.npz"
    memory = CharacterMemory()
    memory.add_reference("fox", unit(rng, 1))
    memory.save(path)
    good = path.read_bytes()
    memory.add_reference("owl", unit(rng, 1))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        memory.save(path)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["characters.npz"]
