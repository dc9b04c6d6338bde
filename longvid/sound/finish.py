"""The last step of a render: the final video gets its sound and subtitles.

add_sound mixes the video's own (provider) audio, the narration and the music, normalises
the mix to broadcast loudness, and writes a new MP4: the picture stream-copied (or
re-encoded with the subtitles drawn in), an AAC 48 kHz stereo track and a mov_text
subtitle track.

Memory stays flat with the video's length: every source is decoded, resampled, mixed,
measured, limited and encoded one block (1 s) at a time. Each source is decoded once: its
level is measured as it is decoded, and the decoded samples are kept for the mix in a
scratch file of raw float32 (23 MB per minute). The mix is needed twice (once to measure
its loudness, once to encode it at the right gain), so it is kept the same way; the
sources' files are deleted once it is made. All of them live in a temporary folder beside
`out` and are gone when add_sound returns.

A video with no narration, no music and no audio of its own still gets a (silent) AAC
track: players, editors and upload sites expect a finished video to have one. Nothing is
measured or kept for it, and a source that decodes to nothing but zeros is left out of the
mix.

The written track is not decoded again to report its loudness and true peak: they are
measured on the PCM given to the encoder (on the limiter's trial pass when that changed
nothing, else on the way to the encoder; a loudness that is the mix's times a gain is
computed from the mix's measurement). AAC moves them by a few hundredths of a LU and a
fraction of a dB, which `encoder_headroom_db` allows for; the tests measure the written
file itself.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from ..errors import InputError, RenderError
from . import _pcm
from ._loudness import LoudnessMeter, PeakLimiter, TruePeakMeter, db, gain, overshoot_bound
from ._mix import Measured, Track, level_gain, measure, mixed_blocks, speech_spans
from .cues import Cue

log = logging.getLogger(__name__)

TARGET_LUFS = -14.0  # integrated loudness of the final mix (what streaming platforms play at)
MAX_TRUE_PEAK_DBTP = -1.0
AAC_BITRATE = 192_000


@dataclass(frozen=True)
class SoundOptions:
    music: Path | None = None
    burn_subtitles: bool = False
    target_lufs: float = TARGET_LUFS
    max_true_peak_dbtp: float = MAX_TRUE_PEAK_DBTP
    # AAC's decoded peaks can overshoot the PCM it was given by a fraction of a dB, so the
    # limiter aims this far under the true-peak limit.
    encoder_headroom_db: float = 1.0
    limiter_ramp_s: float = 0.005
    music_level_db: float = -6.0  # the music bed against the voice (or provider audio), between phrases
    duck_db: float = -14.0  # how far the music dips further under narration
    provider_level_db: float = -8.0  # the clip's own audio against the narration, when there is narration
    provider_duck_db: float = -6.0
    duck_attack_s: float = 0.2
    duck_release_s: float = 0.5
    duck_bridge_s: float = 0.6  # pauses shorter than this between phrases keep the music down
    fade_in_s: float = 1.0
    fade_out_s: float = 2.0
    subtitle_language: str | None = None  # ISO 639-2 code for the track's metadata ("eng", "chi")
    soft_subtitles: bool = True  # False: the cues still time the ducking (and any burning), but no subtitle track


@dataclass(frozen=True)
class SoundStats:
    loudness_lufs: float | None  # of the PCM given to the AAC encoder; None when it is silent
    true_peak_dbtp: float | None  # the same (the decoded AAC can be a fraction of a dB higher)
    duration_s: float  # the video's
    narration_s: float
    music_s: float  # the music file's own length (as far as it was read: up to the video's)
    provider_s: float  # the video's own audio mixed in (its length; 0: none, or silent)
    music_looped: bool
    gain_db: float  # applied to the mix to reach the target
    limited_s: float  # seconds of audio the peak limiter turned down
    subtitles: int  # cues in the soft track (and drawn in, when burned)
    burned: bool
    step_s: dict[str, float] = field(default_factory=dict)  # seconds per step ("verify" overlaps "encode_mux": another thread)
    wall_s: float = 0.0  # add_sound's own wall time
    warnings: list[str] = field(default_factory=list)  # e.g. damaged packets played as silence


def check_music(path: Path) -> None:
    """A one-line InputError unless PyAV decodes the file's whole audio stream: a file
    damaged anywhere is refused here, before anything is paid, not found at the mix."""
    path = Path(path)
    where = f"music file {path}"
    if not path.is_file():
        raise InputError(f"{where}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InputError(f"{where}: has no audio stream")
            stream = container.streams.audio[0]
            samples = 0
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:
                    at = f" at {float(packet.pts * packet.time_base):.1f} s" if packet.pts is not None else ""
                    reason = " ".join(str(exc.strerror or type(exc).__name__).split())
                    raise InputError(f"{where}: damaged{at} ({reason}); repair or re-encode it") from None
                samples += sum(frame.samples for frame in frames)
    except av.FFmpegError as exc:
        reason = " ".join(str(exc.strerror or type(exc).__name__).split())
        raise InputError(f"{where}: not audio that can be decoded ({reason})") from None
    if samples < 1024:
        raise InputError(f"{where}: contains no audio samples")


class _Steps:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began


def _video_facts(video: Path) -> tuple[float, bool]:
    with av.open(str(video)) as container:
        if not container.streams.video:
            raise RenderError(f"{video}: has no video stream")
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif stream.frames and stream.average_rate:
            duration = stream.frames / float(stream.average_rate)
        else:
            duration = (container.duration or 0) / av.time_base
        return duration, bool(container.streams.audio)


def _tracks(video: Path, has_provider: bool, narration: Path | None, music: Path | None, total: int,
            options: SoundOptions, scratch: Path, provider_pcm: Path | None = None,
            ) -> tuple[list[Track], Measured | None, Measured | None, Measured | None, list[str]]:
    """Each source measured and set to its level (see SoundOptions), the measurements (the
    narration's, the music's, the video's own audio's), and a warning for each source with damaged packets (played as silence).
    Each is decoded once: its samples are kept in `scratch` for the mix. `provider_pcm`: the
    video's own audio already as such samples (from the merge), read from there."""
    target = options.target_lufs
    spoken = measure(narration, total, with_levels=True, keep_in=scratch / "narration.f32") if narration is not None else None
    tune = measure(music, total, keep_in=scratch / "music.f32") if music is not None else None
    tracks: list[Track] = []
    if spoken is not None and spoken.audible:
        tracks.append(Track(spoken.path, level_gain(spoken, target), duck_db=0.0))
    if provider_pcm is not None:
        provider = measure(provider_pcm, total, raw=True)
    else:
        provider = measure(video, total, keep_in=scratch / "provider.f32") if has_provider else None
    if provider is not None and provider.audible:
        level = target + (options.provider_level_db if spoken else 0.0)
        tracks.append(Track(provider.path, level_gain(provider, level), duck_db=options.provider_duck_db if spoken else 0.0))
    if tune is not None and tune.audible:
        bed = target + (options.music_level_db if (spoken or has_provider) else 0.0)
        tracks.append(Track(
            tune.path, level_gain(tune, bed), duck_db=options.duck_db if spoken else 0.0,
            loop_length=tune.samples if 0 < tune.samples <= total else 0,
            fade_in_s=options.fade_in_s, fade_out_s=options.fade_out_s,
        ))
    warnings = [f"{name}: {len(m.damaged_s)} damaged packet(s) from {m.damaged_s[0]:.1f} s played as silence"
                for name, m in (("the narration", spoken), ("the video's own audio", provider), ("the music", tune))
                if m is not None and m.damaged_s]
    return tracks, spoken, tune, provider, warnings


def _limited(blocks: Iterator[np.ndarray], mix_gain: float, limiter: PeakLimiter | None) -> Iterator[np.ndarray]:
    for block in blocks:
        block = block * np.float32(mix_gain)
        if limiter is None:
            yield block
        else:
            yield from limiter.push(block)
    if limiter is not None:
        yield from limiter.finish()


def _normalised_gain(scratch: Path, mix_lufs: float, mix_sample_peak: float, options,
                     steps) -> tuple[float, PeakLimiter | None, tuple[float, float] | None]:
    """The gain that puts the mix at the target, a limiter when that gain would take the
    true peak over the ceiling, and the loudness and true peak of the result when this
    already measured them.

    No true peak can pass the ceiling when the sample peak times overshoot_bound does not:
    then nothing is read again. Otherwise a first pass runs the limiter over the whole mix
    at that gain. When it turns nothing down, the mix needs no limiter, and the loudness and
    true peak measured on that pass are those of the final track. When it does, the limiter
    has taken some loudness away: the gain is raised by what was lost (once: the limiter
    then works a little harder, and the result lands within a few tenths of a LU)."""
    if not math.isfinite(mix_lufs):
        return 1.0, None, None
    mix_gain = gain(options.target_lufs - mix_lufs)
    ceiling = gain(options.max_true_peak_dbtp - options.encoder_headroom_db)
    if mix_sample_peak * mix_gain * overshoot_bound() <= ceiling:
        return mix_gain, None, None
    ramp = max(1, int(options.limiter_ramp_s * _pcm.RATE))
    with steps("normalise"):
        # the true peak is at least the (gained) sample peak: nothing under it need be oversampled
        limiter, meter, peaks = PeakLimiter(ceiling, ramp), LoudnessMeter(_pcm.RATE), TruePeakMeter(floor=mix_sample_peak * mix_gain)
        for block in _limited(_pcm.raw_pieces(scratch), mix_gain, limiter):
            meter.add(block)
            if not limiter.reduced_samples:  # the true peak is only worth knowing while nothing is limited
                peaks.add(block)
        if not limiter.reduced_samples:
            return mix_gain, None, (meter.integrated(), peaks.finish())
        lost = options.target_lufs - meter.integrated()
        if math.isfinite(lost):
            mix_gain *= gain(max(0.0, min(6.0, lost)))
    return mix_gain, PeakLimiter(ceiling, ramp), None


def _metered(blocks: Iterator[np.ndarray], meter: LoudnessMeter | None, peaks: TruePeakMeter, steps) -> Iterator[np.ndarray]:
    for block in blocks:
        with steps("verify"):
            if meter is not None:
                meter.add(block)
            peaks.add(block)
        yield block


def _silence(total: int) -> Iterator[np.ndarray]:
    for start in range(0, total, _pcm.BLOCK):
        yield np.zeros((_pcm.CHANNELS, min(_pcm.BLOCK, total - start)), np.float32)


def _aac_packets(stream, blocks: Iterator[np.ndarray]) -> Iterator[av.Packet]:
    pts = 0
    for block in blocks:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, dtype=np.float32), format="fltp", layout="stereo")
        frame.sample_rate = _pcm.RATE
        frame.pts = pts
        pts += block.shape[1]
        yield from stream.encode(frame)
    yield from stream.encode(None)


def _copied_packets(source_container, source_stream, stream) -> Iterator[av.Packet]:
    for packet in source_container.demux(source_stream):
        if packet.dts is None:  # the demuxer's end-of-stream marker
            continue
        packet.stream = stream
        yield packet


def _timed(packets: Iterator[av.Packet]) -> Iterator[tuple[float, av.Packet]]:
    """(seconds, packet) for each packet of one stream: the stream's time base read once
    (PyAV makes a new Fraction on every read, a third of the muxing loop's time)."""
    unit = None
    for packet in packets:
        if unit is None:
            unit = float(packet.time_base) if packet.time_base else 0.0
        stamp = packet.dts if packet.dts is not None else packet.pts
        yield (stamp * unit if stamp is not None else 0.0), packet


class _Ahead:
    """The blocks of `source`, made on a thread of their own a few blocks ahead of the reader.

    The soundtrack's PCM (the mix read back, the limiter and the meters: numpy and scipy) and
    its AAC encoding (FFmpeg) each take about half of add_sound's time for a narrated video;
    both release the GIL for most of it, so on two threads they take little more than the
    longer of the two. An error on the thread is raised to the reader; a reader that stops
    early (an error of its own) closes it, which stops the thread at its next block."""

    _END = object()

    def __init__(self, source: Iterator[np.ndarray], depth: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._fill, args=(source,), name="soundtrack-pcm", daemon=True)
        self._thread.start()

    def _fill(self, source: Iterator[np.ndarray]) -> None:
        try:
            for block in source:
                while not self._stopped.is_set():
                    try:
                        self._queue.put(block, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stopped.is_set():
                    return
        except BaseException as exc:  # raised again on the reading thread
            self._error = exc
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while not self._stopped.is_set():
            try:
                self._queue.put(self._END, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[np.ndarray]:
        while (block := self._queue.get()) is not self._END:
            yield block
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()


def _write(video: Path, out: Path, audio: Iterator[np.ndarray], cues: Sequence[Cue], options: SoundOptions) -> None:
    from ._burn import BurnedVideo
    from ._subtitles import MovTextTrack

    partial = out.with_name(f".{out.name.lstrip('.')}.partial.mp4")  # a scratch `out` keeps one leading dot
    ahead = _Ahead(audio)
    audio = iter(ahead)
    try:
        with av.open(str(video)) as source, av.open(str(partial), "w", options={"movflags": "+faststart"}) as target:
            source_video = source.streams.video[0]
            if options.burn_subtitles and cues:
                burned = BurnedVideo(target, source_video, cues)
                pictures = burned.packets(source, source_video)
            else:
                copied = target.add_stream_from_template(source_video)
                pictures = _copied_packets(source, source_video, copied)
            sound = target.add_stream("aac", rate=_pcm.RATE)
            sound.layout, sound.format, sound.bit_rate = "stereo", "fltp", AAC_BITRATE
            # FFmpeg's AAC encoder's "fast" coder: a third of the default's time, and at
            # 192 kb/s nothing a listener hears
            sound.codec_context.options = {"aac_coder": "fast"}
            streams = [pictures, _aac_packets(sound, audio)]
            if cues and options.soft_subtitles:
                streams.append(MovTextTrack(target, cues, options.subtitle_language).packets())
            for _at, packet in heapq.merge(*map(_timed, streams), key=lambda timed: timed[0]):
                target.mux(packet)
        os.replace(partial, out)
    finally:
        ahead.close()
        partial.unlink(missing_ok=True)


def add_sound(video: Path, out: Path, *, narration: Path | None, cues: Sequence[Cue], options: SoundOptions,
              provider_pcm: Path | None = None) -> SoundStats:
    """Write `out`: `video`'s picture with the mixed, normalised sound and the cues as
    subtitles. `out` is written under a temporary name and renamed, so it may be `video`
    itself, and no half-written file ever stands where a finished one should.
    `provider_pcm`: the video's own audio as raw PCM (the merge's, TimelineMerge's
    `audio_pcm`), used instead of any audio track `video` has."""
    video, out = Path(video), Path(out)
    began = time.perf_counter()
    steps = _Steps()
    duration, has_provider = _video_facts(video)
    has_provider = has_provider or provider_pcm is not None
    total = int(round(duration * _pcm.RATE))
    mix_gain, limiter, lufs, peak = 1.0, None, -math.inf, 0.0
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem.lstrip('.')}.sound.") as folder:
        folder = Path(folder)
        with steps("measure_sources"):
            tracks, spoken, tune, provider, warnings = _tracks(video, has_provider, narration, options.music, total, options, folder,
                                                     provider_pcm)
            spans = speech_spans(spoken, [(c.start_s, c.end_s) for c in cues], options.duck_bridge_s)
        if not tracks:
            with steps("encode_mux"):
                _write(video, out, _silence(total), cues, options)
        else:
            mix = folder / "mix.f32"
            with steps("mix"):
                meter, sample_peak = LoudnessMeter(_pcm.RATE), 0.0
                with open(mix, "wb") as handle:
                    for block in mixed_blocks(tracks, total, spans, options.duck_attack_s, options.duck_release_s):
                        meter.add(block)
                        sample_peak = max(sample_peak, float(np.abs(block).max(initial=0.0)))
                        _pcm.write_raw(handle, block)
                mix_lufs = meter.integrated()
                for source in folder.glob("*.f32"):
                    if source != mix:
                        source.unlink()  # the sources are in the mix now: only one copy on disk from here
            mix_gain, limiter, measured = _normalised_gain(mix, mix_lufs, sample_peak, options, steps)
            audio = _limited(_pcm.raw_pieces(mix), mix_gain, limiter)
            if measured is None:  # measured on its way to the encoder (loudness only when limited)
                out_meter = LoudnessMeter(_pcm.RATE) if limiter is not None else None
                # without a limiter the true peak is at least the gained sample peak: nothing
                # under it need be oversampled
                out_peaks = TruePeakMeter(floor=sample_peak * mix_gain if limiter is None else 0.0)
                audio = _metered(audio, out_meter, out_peaks, steps)
            with steps("encode_mux"):  # the "verify" metering above runs beside it, on _Ahead's thread
                _write(video, out, audio, cues, options)
            with steps("verify"):
                if measured is not None:
                    lufs, peak = measured
                elif limiter is None:  # the mix times a gain: its loudness is the mix's at that gain
                    lufs, peak = meter.integrated(scale=mix_gain), out_peaks.finish()
                else:
                    lufs, peak = out_meter.integrated(), out_peaks.finish()
    for line in warnings:
        log.warning(line)
    lufs_or_none = lufs if math.isfinite(lufs) else None
    peak_or_none = db(peak) if peak > 0 else None
    return SoundStats(
        loudness_lufs=lufs_or_none, true_peak_dbtp=peak_or_none, duration_s=duration,
        narration_s=spoken.seconds if spoken else 0.0, music_s=tune.seconds if tune else 0.0,
        provider_s=provider.seconds if provider is not None and provider.audible else 0.0,
        music_looped=any(t.loop_length for t in tracks), gain_db=db(mix_gain),
        limited_s=limiter.reduced_samples / _pcm.RATE if limiter else 0.0,
        subtitles=len(cues) if options.soft_subtitles or options.burn_subtitles else 0,
        burned=bool(options.burn_subtitles and cues), step_s=dict(steps.seconds), warnings=warnings,
        wall_s=time.perf_counter() - began,
    )
