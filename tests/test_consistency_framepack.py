"""FramePack context: the newest frame full size, everything packed under 2x its pixels."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longvid.consistency import FramePackCompressor, pack_sizes

SIZES = [(18, 32), (36, 64), (72, 128), (48, 48), (17, 31), (128, 72), (45, 80)]


def frame(h, w, value):
    out = np.empty((h, w, 3), np.uint8)
    out[...] = (value * 37) % 256
    out[: h // 2, : w // 3, 1] = (value * 11) % 256  # some structure
    return out


@settings(max_examples=300, deadline=None)
@given(
    height=st.integers(1, 4320),
    width=st.integers(1, 7680),
    lambda_=st.floats(math.sqrt(2), 6.0),
    min_side=st.integers(1, 64),
)
def test_geometry_stays_under_twice_the_newest_frame(height, width, lambda_, min_side):
    sizes = pack_sizes(height, width, lambda_, min_side)
    assert sizes[0] == (height, width)
    assert sum(h * w for h, w in sizes) < 2 * height * width
    assert all(min(h, w) >= min_side for h, w in sizes[1:])
    assert all(a[0] >= b[0] and a[1] >= b[1] for a, b in zip(sizes, sizes[1:]))  # shrinking
    # The number of levels depends on the frame, never on the history.
    assert len(sizes) <= 1 + max(0, math.floor(math.log(max(min(height, width), 1) / min_side, lambda_) + 1e-9))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=st.integers(1, 1000),
    size=st.sampled_from(SIZES),
    lambda_=st.sampled_from([math.sqrt(2), 1.5, 2.0, 3.0]),
    min_side=st.sampled_from([1, 4, 16]),
    overflow=st.sampled_from(["merge", "drop"]),
)
def test_pushing_any_history_keeps_the_bound_and_the_memory_flat(history, size, lambda_, min_side, overflow):
    h, w = size
    packer = FramePackCompressor(lambda_=lambda_, min_side=min_side, device="cpu", overflow=overflow)
    levels_cap = len(pack_sizes(h, w, lambda_, min_side))
    full_bytes = None
    for i in range(history):
        packer.push(frame(h, w, i))
        assert packer.stored_pixels < 2 * h * w or (packer.levels == 1 and packer.stored_pixels == h * w)
        assert packer.levels <= levels_cap
        if i + 1 >= levels_cap:  # full: memory must not change any more
            full_bytes = full_bytes or packer.nbytes
            assert packer.nbytes == full_bytes
    packed = packer.packed()
    np.testing.assert_array_equal(packed[0], frame(h, w, history - 1))  # newest, untouched, full size
    assert sum(p.shape[0] * p.shape[1] for p in packed) < 2 * h * w or len(packed) == 1
    assert [p.shape[:2] for p in packed] == pack_sizes(h, w, lambda_, min_side)[: len(packed)]
    assert packer.pushed == history


def test_a_thousand_360p_pushes_hold_the_same_memory_as_five():
    packer = FramePackCompressor(lambda_=2.0, min_side=16, device="cpu")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (360, 640, 3), np.uint8) for _ in range(4)]
    for i in range(5):
        packer.push(frames[i % 4])
    after_five = packer.stats()
    for i in range(995):
        packer.push(frames[i % 4])
    after_thousand = packer.stats()
    assert after_five["sizes"] == after_thousand["sizes"] == [[360, 640], [180, 320], [90, 160], [45, 80], [22, 40]]
    assert after_thousand["nbytes"] == after_five["nbytes"] < 2 * 360 * 640 * 3
    assert after_thousand["ratio_to_newest"] == pytest.approx(4 / 3, abs=0.01)


def test_drop_keeps_the_k_th_older_frame_and_merge_blends_the_rest():
    def run(overflow):
        packer = FramePackCompressor(lambda_=2.0, min_side=4, device="cpu", overflow=overflow)
        for value in range(10):
            packer.push(np.full((32, 32, 3), 10 * value, np.uint8))  # flat frames: resizing keeps the value
        return [int(level[0, 0, 0]) for level in packer.packed()]

    # 32x32, min_side 4: levels 32, 16, 8, 4 -> the 4 newest frames (90, 80, 70, 60).
    assert run("drop") == [90, 80, 70, 60]
    merged = run("merge")
    assert merged[:3] == [90, 80, 70]
    assert 30 < merged[3] < 60  # 60 blended with older frames (50, 40, ...)


def test_older_levels_are_shrunk_copies_of_their_frames():
    packer = FramePackCompressor(lambda_=2.0, min_side=8, device="cpu", overflow="drop")
    first = np.zeros((64, 64, 3), np.uint8)
    first[:32] = 200  # top half bright
    packer.push(first)
    packer.push(np.zeros((64, 64, 3), np.uint8))
    older = packer.packed()[1]
    assert older.shape == (32, 32, 3)
    assert older[:16].min() == 200 and older[16:].max() == 0


def test_a_frame_size_change_rescales_the_history():
    packer = FramePackCompressor(lambda_=2.0, min_side=8, device="cpu")
    for i in range(5):
        packer.push(frame(64, 128, i))
    packer.push(frame(36, 64, 9))
    assert [p.shape[:2] for p in packer.packed()] == pack_sizes(36, 64, 2.0, 8)
    assert packer.stored_pixels < 2 * 36 * 64


def test_pillow_fallback_without_torch():
    packer = FramePackCompressor(lambda_=2.0, min_side=4, device="cpu")
    packer._torch = None  # as if torch were not importable
    for i in range(20):
        packer.push(frame(32, 48, i))
    assert [p.shape[:2] for p in packer.packed()] == pack_sizes(32, 48, 2.0, 4)
    assert packer.stored_pixels < 2 * 32 * 48


def test_lambda_below_sqrt2_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="sqrt"):
        FramePackCompressor(lambda_=1.3)
    with pytest.raises(ValueError):
        FramePackCompressor(min_side=0)
