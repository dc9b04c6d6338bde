"""Loudness, true peak and a peak limiter for signals that arrive in blocks.

Integrated loudness (ITU-R BS.1770 as pyloudnorm implements it) needs the mean square of
every 400 ms block (100 ms apart) of the K-weighted signal, nothing more. So each block of
audio is K-weighted here with pyloudnorm's own filter coefficients (scipy's lfilter, its
state carried from block to block) and reduced to one mean square per 100 ms per channel:
6 000 numbers for ten minutes instead of 230 MB of float32. pyloudnorm's own gating then
runs on a stand-in signal at 10 Hz whose every sample is the root mean square of one
100 ms hop: its 400 ms blocks (4 samples, 1 apart) have exactly the mean squares of the
real signal's blocks, and its "custom" (empty) filter set leaves them as they are.

A silent stretch makes the K-weighting's state decay into subnormal floats, which the CPU
handles ten times slower than normal ones (a narration with pauses took 0.5 s per minute of
audio instead of 0.05 s). A constant ±1e-20 at the Nyquist frequency is added before the
filters, so their state never decays that far: it passes the K-weighting and adds 1e-40 to
mean squares of order 1e-3, far below what a float64 can resolve in the result.

True peak is measured as BS.1770 describes it, by 4x oversampling (scipy's resample_poly)
and taking the largest magnitude; blocks are oversampled with enough signal on each side
that the result is the same as oversampling the whole signal at once. Oversampling is most
of the cost, and mostly not needed: every oversampled value is a weighted sum of the input
samples within 10 of it, so none exceeds their largest magnitude times the largest sum of
absolute weights (overshoot_bound, 2.24 or +7 dB). Only stretches loud enough by that bound
to matter (pass the limiter's ceiling, or beat the peak found so far) are oversampled.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import numpy as np
import pyloudnorm
import scipy.ndimage
import scipy.signal

OVERSAMPLE = 4
_HOPS_PER_SECOND = 10  # BS.1770: 400 ms blocks with 75 % overlap = one new block per 100 ms
_OVERSAMPLE_CONTEXT = 32  # input samples each side; resample_poly's filter spans 10
_DENORMAL_GUARD = 1e-20
_SPAN = 512  # samples: the unit sample_true_peaks oversamples or skips (shorter rows cost resample_poly more per sample)
_EDGE = 16  # real samples each side of a span (resample_poly's filter reaches 10)
_LOOSE = 0.35  # the closer bound sums a phase's largest taps until the rest weigh at most this


def db(value: float) -> float:
    return 20 * math.log10(value) if value > 0 else -math.inf


def gain(db_value: float) -> float:
    return 10 ** (db_value / 20)


class LoudnessMeter:
    """Integrated loudness of a (channels, n) signal fed in blocks, in memory that grows by
    a few numbers per 100 ms."""

    def __init__(self, rate: int, channels: int = 2):
        stages = pyloudnorm.Meter(rate)._filters.values()  # the K-weighting pyloudnorm uses
        self._stages = [(f.b, f.a, f.passband_gain) for f in stages]
        self._state = [np.zeros((channels, max(len(f.a), len(f.b)) - 1)) for f in stages]
        self._hop = rate // _HOPS_PER_SECOND
        self._channels = channels
        self._sums: list[np.ndarray] = []  # (channels, hops) sum of squares per full hop
        self._partial = np.zeros(channels)
        self._partial_n = 0

    def add(self, pcm: np.ndarray) -> None:
        x = pcm.astype(np.float64)
        x[:, 0::2] += _DENORMAL_GUARD  # see the module's docstring
        x[:, 1::2] -= _DENORMAL_GUARD
        for k, (b, a, passband) in enumerate(self._stages):
            x, self._state[k] = scipy.signal.lfilter(b, a, x, axis=1, zi=self._state[k])
            x *= passband
        squares = x * x
        first = min(squares.shape[1], self._hop - self._partial_n)
        self._partial += squares[:, :first].sum(axis=1)
        self._partial_n += first
        if self._partial_n < self._hop:
            return
        self._sums.append(self._partial[:, None].copy())
        rest = squares[:, first:]
        whole = rest.shape[1] // self._hop
        if whole:
            self._sums.append(rest[:, : whole * self._hop].reshape(self._channels, whole, self._hop).sum(axis=2))
        tail = rest[:, whole * self._hop :]
        self._partial = tail.sum(axis=1)
        self._partial_n = tail.shape[1]

    def integrated(self, scale: float = 1.0) -> float:
        """LUFS; -inf for silence or a signal shorter than one 400 ms block. With `scale`:
        the loudness of the same signal multiplied by it (the K-weighting is linear, so
        every mean square is scaled by its square and the gating runs again)."""
        sums = list(self._sums)
        if 2 * self._partial_n > self._hop:
            # pyloudnorm rounds the block count, so a last block more than half there counts,
            # its mean square taken over a full block's length
            sums.append(self._partial[:, None])
        if not sums:
            return -math.inf
        mean_squares = np.concatenate(sums, axis=1) * (scale * scale / self._hop)
        if mean_squares.shape[1] < 4:
            return -math.inf
        stand_in = np.sqrt(mean_squares).T
        meter = pyloudnorm.Meter(_HOPS_PER_SECOND, filter_class="custom", block_size=0.4)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(meter.integrated_loudness(stand_in))
        return value if math.isfinite(value) else -math.inf


@functools.cache
def _interpolation_filter() -> np.ndarray:
    # resample_poly's own default design for 4x up, made once instead of on every call
    return scipy.signal.firwin(2 * 10 * OVERSAMPLE + 1, 1 / OVERSAMPLE, window=("kaiser", 5.0))


@functools.cache
def overshoot_bound() -> float:
    """No oversampled value exceeds the largest input magnitude within 10 samples of it
    times this: the largest sum of absolute taps over the filter's four polyphase branches."""
    taps = np.abs(_interpolation_filter()) * OVERSAMPLE  # resample_poly's gain of `up`
    return float(max(taps[phase::OVERSAMPLE].sum() for phase in range(OVERSAMPLE)))


@functools.cache
def _nearest_taps() -> tuple[tuple[tuple[tuple[int, float], ...], float], ...]:
    """Per phase p: its largest taps as (input offset, weight), where oversampled value
    4n + p = sum of weight * x[n + offset] over all 21, as few as leave the others' absolute
    weights summing to at most _LOOSE (1 for phase 0, the input sample itself; 5 or 6 for
    the others), and that sum."""
    taps = _interpolation_filter() * OVERSAMPLE
    reach = (taps.size - 1) // (2 * OVERSAMPLE)  # 10
    phases = []
    for phase in range(OVERSAMPLE):
        weights = {reach - k: taps[OVERSAMPLE * k + phase] for k in range(-(-(taps.size - phase) // OVERSAMPLE))}
        largest, rest = [], sum(abs(w) for w in weights.values())
        for offset in sorted(weights, key=lambda offset: -abs(weights[offset])):
            if rest <= _LOOSE:
                break
            largest.append(offset)
            rest -= abs(weights[offset])
        rest = sum(abs(w) for offset, w in weights.items() if offset not in largest)  # summed, not subtracted: never under
        phases.append((tuple((offset, float(weights[offset])) for offset in largest), float(rest)))
    return tuple(phases)


def _span_bounds(rows: np.ndarray) -> np.ndarray:
    """For rows of span + _EDGE each side: a bound on each span's oversampled magnitudes,
    tighter than overshoot_bound: each phase's largest taps summed exactly, plus the other
    taps' absolute weights times the row's largest magnitude."""
    loudest = np.abs(rows).max(axis=1, keepdims=True)
    bound = np.zeros((rows.shape[0], _SPAN))
    for taps, rest in _nearest_taps():
        near = sum(weight * rows[:, _EDGE + offset : _EDGE + offset + _SPAN] for offset, weight in taps)
        np.maximum(bound, np.abs(near) + rest * loudest, out=bound)
    return bound.max(axis=1)


def sample_true_peaks(pcm: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """For each input sample, the largest magnitude of the 4x oversampled signal in its
    interval, over all channels: exact wherever it could exceed `floor`; elsewhere a value
    no larger than `floor` (the sample's own magnitude). The signal is looked at in spans
    of _SPAN samples, and only spans whose neighbourhood is loud enough to reach `floor`
    are oversampled, all in one resample_poly call, each with _EDGE real samples each side."""
    channels, n = pcm.shape
    magnitude = np.abs(pcm).max(axis=0) if channels else np.zeros(n)
    if not n:
        return magnitude.astype(np.float64)
    spans = -(-n // _SPAN)
    loudest = np.zeros(spans + 2)
    np.maximum.reduceat(magnitude, np.arange(0, n, _SPAN), out=loudest[1:-1])
    reach = np.maximum(np.maximum(loudest[:-2], loudest[1:-1]), loudest[2:])  # a span and its neighbours
    hot = np.flatnonzero(reach * overshoot_bound() > floor)
    magnitude = magnitude.astype(np.float64)
    if not hot.size:
        return magnitude
    width = _SPAN + 2 * _EDGE
    padded = np.zeros((channels, spans * _SPAN + 2 * _EDGE))
    padded[:, _EDGE : _EDGE + n] = pcm
    rows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=1)[:, hot * _SPAN]
    if floor > 0:  # a closer look at the spans the coarse bound let through
        close = _span_bounds(rows.reshape(-1, width)).reshape(channels, hot.size).max(axis=0) > floor
        hot, rows = hot[close], rows[:, close]
        if not hot.size:
            return magnitude
    up = scipy.signal.resample_poly(rows.reshape(-1, width), OVERSAMPLE, 1, axis=1, window=_interpolation_filter())
    core = np.abs(up[:, OVERSAMPLE * _EDGE : OVERSAMPLE * (_EDGE + _SPAN)])
    # the largest of each sample's four values: strided slices, as numpy reduces a length-4
    # axis fifteen times slower
    exact = functools.reduce(np.maximum, (core[:, phase::OVERSAMPLE] for phase in range(OVERSAMPLE)))
    whole = np.empty(spans * _SPAN)
    whole[:n] = magnitude
    whole.reshape(spans, _SPAN)[hot] = exact.reshape(channels, hot.size, _SPAN).max(axis=0)
    return whole[:n]


class Lookaround:
    """Runs `fn` (a (channels, n) window -> (n,) values) over a signal fed in blocks, so that
    every value is computed with `context` real samples on each side (or the signal's edge):
    the same values as `fn` over the whole signal at once. Output lags input by `context`."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], context: int):
        self._fn = fn
        self._context = context
        self._history: np.ndarray | None = None
        self._pending: np.ndarray | None = None

    def push(self, pcm: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self._pending = pcm if self._pending is None else np.concatenate([self._pending, pcm], axis=1)
        ready = self._pending.shape[1] - self._context
        if ready > 0:
            yield self._run(ready)

    def finish(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self._pending is not None and self._pending.shape[1]:
            yield self._run(self._pending.shape[1])

    def _run(self, ready: int) -> tuple[np.ndarray, np.ndarray]:
        before = 0 if self._history is None else self._history.shape[1]
        window = self._pending if self._history is None else np.concatenate([self._history, self._pending], axis=1)
        values = self._fn(window)[before : before + ready]
        out = self._pending[:, :ready]
        kept = out if self._history is None else np.concatenate([self._history, out], axis=1)
        self._history = kept[:, -self._context :]
        self._pending = self._pending[:, ready:]
        return out, values


class TruePeakMeter:
    """The true peak of a signal fed in blocks. With a `floor` known to be under it (a
    sample peak), nothing that cannot pass the floor is oversampled from the start: the
    result is exact whenever it is above `floor`, and otherwise says only that the true
    peak is at most `floor`."""

    def __init__(self, floor: float = 0.0):
        self._peaks = Lookaround(self._true_peaks, _OVERSAMPLE_CONTEXT)
        self.floor = floor
        self.peak = 0.0

    def _true_peaks(self, window: np.ndarray) -> np.ndarray:
        # only what could beat the peak so far
        return sample_true_peaks(window, floor=max(self.peak, self.floor))

    def add(self, pcm: np.ndarray) -> None:
        for _out, values in self._peaks.push(pcm):
            self.peak = max(self.peak, float(values.max(initial=0.0)))

    def finish(self) -> float:
        for _out, values in self._peaks.finish():
            self.peak = max(self.peak, float(values.max(initial=0.0)))
        return self.peak


class PeakLimiter:
    """Scales the signal down wherever its true peak would pass `ceiling` (linear), with
    a smooth gain: the needed gain is held over +-`ramp` samples (a minimum filter), then
    averaged over the same span, so the gain at every sample is at most what that sample
    needs and it moves over `ramp` samples instead of jumping. It looks both ways, which
    an offline mix can afford."""

    def __init__(self, ceiling: float, ramp: int):
        self.ceiling = ceiling
        self.ramp = ramp
        self.reduced_samples = 0  # how many samples the limiter turned down
        self._gains = Lookaround(self._gain, _OVERSAMPLE_CONTEXT + 2 * ramp)

    def _gain(self, window: np.ndarray) -> np.ndarray:
        peaks = sample_true_peaks(window, floor=self.ceiling)  # exact wherever it matters
        with np.errstate(divide="ignore"):
            needed = np.minimum(1.0, self.ceiling / np.maximum(peaks, 1e-12))
        size = 2 * self.ramp + 1
        held = scipy.ndimage.minimum_filter1d(needed, size, mode="nearest")
        return np.minimum(scipy.ndimage.uniform_filter1d(held, size, mode="nearest"), 1.0)

    def push(self, pcm: np.ndarray) -> Iterator[np.ndarray]:
        for out, gains in self._gains.push(pcm):
            yield self._apply(out, gains)

    def finish(self) -> Iterator[np.ndarray]:
        for out, gains in self._gains.finish():
            yield self._apply(out, gains)

    def _apply(self, out: np.ndarray, gains: np.ndarray) -> np.ndarray:
        self.reduced_samples += int(np.count_nonzero(gains < 1.0))
        return (out * gains).astype(np.float32)
