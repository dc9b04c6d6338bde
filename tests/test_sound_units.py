"""The sound library's pure parts, in milliseconds: block-wise meters against the same
measurement on the whole signal, the limiter, the gain curves, the loop seam, cues."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import scipy.signal

from longvid.sound import Cue
from longvid.sound._envelopes import duck_gain, fade_gain, merge_spans, speech_spans_from_levels
from longvid.sound._loudness import LoudnessMeter, PeakLimiter, TruePeakMeter, sample_true_peaks
from longvid.sound._pcm import _apply_edge_ramps, blocks, rebatched

RATE = 48_000


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.4 * np.sin(2 * np.pi * 440 * t) * (t % 2 < 1.2)  # loud and quiet stretches: gating matters
    return np.stack([tone, 0.05 * rng.standard_normal(t.size)]).astype(np.float32)


def _chunks(x: np.ndarray, size: int):
    return [x[:, s : s + size] for s in range(0, x.shape[1], size)]


@pytest.mark.parametrize("seconds, chunk", [(7.33, 12_345), (3.0, 48_000), (5.01, 1_000)])
def test_block_wise_loudness_equals_pyloudnorm_on_the_whole_signal(seconds, chunk):
    x = _signal(seconds)
    meter = LoudnessMeter(RATE)
    for part in _chunks(x, chunk):
        meter.add(part)
    assert meter.integrated() == pytest.approx(pyloudnorm.Meter(RATE).integrated_loudness(x.T.astype(np.float64)), abs=1e-6)


def test_loudness_of_silence_or_a_too_short_signal_is_minus_infinity():
    silent, short = LoudnessMeter(RATE), LoudnessMeter(RATE)
    silent.add(np.zeros((2, RATE), np.float32))
    short.add(_signal(0.2))
    assert silent.integrated() == short.integrated() == -np.inf


def test_block_wise_true_peak_equals_oversampling_the_whole_signal():
    x = _signal(2.5, seed=3)
    x[0, 50_000] = 0.9  # an inter-sample overshoot at a place a chunk boundary passes near
    x[0, 50_001] = -0.9
    meter = TruePeakMeter()
    for part in _chunks(x, 50_001):
        meter.add(part)
    whole = np.abs(scipy.signal.resample_poly(x.astype(np.float64), 4, 1, axis=1)).max()
    assert meter.finish() == pytest.approx(whole, rel=1e-6)
    assert whole > np.abs(x).max()  # the test signal does peak between samples


def test_limiter_keeps_true_peak_under_its_ceiling_and_leaves_quiet_parts_alone():
    x = _signal(3.0)
    x[:, 30_000:30_010] = 0.95
    limiter = PeakLimiter(ceiling=0.3, ramp=240)
    out = [y for part in _chunks(x, 7_000) for y in limiter.push(part)] + list(limiter.finish())
    y = np.concatenate(out, axis=1)
    assert y.shape == x.shape
    assert sample_true_peaks(y).max() <= 0.3 * 1.01
    quiet = slice(int(1.3 * RATE), int(1.9 * RATE))  # the tone is off there, only the noise channel
    assert np.array_equal(y[:, quiet], x[:, quiet])
    assert 0 < limiter.reduced_samples < x.shape[1]


def test_duck_gain_is_down_by_its_depth_in_speech_and_back_between():
    spans = [(1.0, 2.0)]
    g = 20 * np.log10(duck_gain(0, 4 * RATE, RATE, spans, -12.0, attack_s=0.2, release_s=0.5))
    at = lambda s: g[int(s * RATE)]  # noqa: E731
    assert at(0.5) == 0 and at(1.0) == pytest.approx(-12) and at(1.9) == pytest.approx(-12)
    assert -12 < at(0.9) < 0 and -12 < at(2.25) < 0 and at(2.6) == 0
    # block by block gives the same curve
    parts = np.concatenate([duck_gain(s, 10_000, RATE, spans, -12.0, 0.2, 0.5) for s in range(0, 4 * RATE, 10_000)])
    assert np.allclose(20 * np.log10(parts[: 4 * RATE]), g)


def test_fade_gain_rises_from_zero_and_falls_to_zero():
    g = fade_gain(0, 10 * RATE, RATE, 10 * RATE, 1.0, 2.0)
    assert g[0] == 0 and g[RATE // 2] == pytest.approx(0.5, abs=1e-4) and g[5 * RATE] == 1
    assert g[-1] == pytest.approx(0, abs=1e-4) and g[9 * RATE] == pytest.approx(0.5, abs=1e-4)


def test_speech_spans_from_a_narrations_level():
    levels = [-90.0] * 10 + [-20.0] * 20 + [-90.0] * 4 + [-22.0] * 10 + [-90.0] * 40
    flat = lambda spans: [t for span in spans for t in span]  # noqa: E731
    assert flat(speech_spans_from_levels(levels, 0.05, floor_db=-30, bridge_s=0.1)) == pytest.approx([0.5, 1.5, 1.7, 2.2])
    assert flat(speech_spans_from_levels(levels, 0.05, floor_db=-30, bridge_s=0.5)) == pytest.approx([0.5, 2.2])
    assert merge_spans([(3, 4), (0, 1), (1.2, 2)], 0.3) == [(0, 2), (3, 4)]
    assert speech_spans_from_levels([-np.inf] * 5, 0.05, -30, 0.1) == []


def test_blocks_cut_pad_and_rebatch():
    pieces = [np.ones((2, 700), np.float32) * k for k in range(1, 4)]  # 2100 samples
    out = list(blocks(iter(pieces), 2500, 1000))
    assert [b.shape[1] for b in out] == [1000, 1000, 500]
    joined = np.concatenate(out, axis=1)
    assert joined[0, 699] == 1 and joined[0, 700] == 2 and joined[0, 2099] == 3 and not joined[:, 2100:].any()
    assert [b.shape[1] for b in rebatched(iter(pieces), 1000)] == [1400, 700]


def test_loop_seam_ramps_fade_each_repetition_in_and_out():
    length, seam = 1000, 100
    ramp = np.linspace(0, 1, seam, dtype=np.float32)
    whole = np.ones((2, length), np.float32)
    _apply_edge_ramps(whole, 0, length, ramp)
    pieced = np.ones((2, length), np.float32)
    for start in range(0, length, 333):
        part = pieced[:, start : start + 333]
        _apply_edge_ramps(part, start, length, ramp)
    assert np.array_equal(whole, pieced)
    assert whole[0, 0] == 0 and whole[0, -1] == 0 and whole[0, 500] == 1


def test_a_cue_must_end_after_it_starts():
    with pytest.raises(ValueError, match="start"):
        Cue(2.0, 1.0, "backwards")
    assert Cue(0, 1.5, "fine").end_s == 1.5


@pytest.mark.parametrize("floor", [0.05, 0.3, 0.6])
def test_true_peaks_with_a_floor_are_exact_above_it_and_never_above_it_elsewhere(floor):
    rng = np.random.default_rng(7)
    x = _signal(1.5, seed=5)
    x[:, 20_000:20_002] = [[0.7, -0.7], [0.2, -0.2]]  # an overshoot between samples
    x[1, 50_000:] = np.sign(rng.standard_normal(x.shape[1] - 50_000)) * 0.25  # the bound's worst case
    whole = np.abs(scipy.signal.resample_poly(x.astype(np.float64), 4, 1, axis=1)).reshape(2, -1, 4).max(axis=(0, 2))
    got = sample_true_peaks(x, floor=floor)
    above = whole > floor
    assert above.any() and (~above).any()
    assert got[above] == pytest.approx(whole[above], rel=1e-9)
    assert (got[~above] <= floor).all()


def test_loudness_at_a_gain_equals_pyloudnorm_on_the_scaled_signal_with_silent_gaps():
    x = _signal(6.0, seed=2)
    x[:, RATE : 3 * RATE] = 0.0  # digital silence: where the filters' state would go subnormal
    meter = LoudnessMeter(RATE)
    for part in _chunks(x, RATE):
        meter.add(part)
    for scale in (1.0, 0.3, 2.5):
        whole = pyloudnorm.Meter(RATE).integrated_loudness(scale * x.T.astype(np.float64))
        assert meter.integrated(scale=scale) == pytest.approx(whole, abs=1e-6)


def test_true_peak_meter_with_the_sample_peak_as_floor_is_still_exact():
    x = _signal(2.5, seed=4)
    x[1, 70_000:70_002] = [0.8, -0.8]
    meter = TruePeakMeter(floor=float(np.abs(x).max()))
    for part in _chunks(x, 30_000):
        meter.add(part)
    whole = np.abs(scipy.signal.resample_poly(x.astype(np.float64), 4, 1, axis=1)).max()
    assert meter.finish() == pytest.approx(whole, rel=1e-9)
