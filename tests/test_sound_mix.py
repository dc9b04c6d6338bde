"""add_sound end to end on tiny videos (64x36 or 128x72, a few seconds), Ray-free: what a
listener and a player get, measured on the written file with libraries independent of the
code under test's block-wise meters (pyloudnorm on the whole signal, scipy's oversampling)."""

from __future__ import annotations

import math

import av
import numpy as np
import pyloudnorm
import pytest
import scipy.signal

from longvid.errors import InputError
from longvid.sound import Cue, SoundOptions, add_sound, check_music
from longvid.sound._burn import render_overlay
from longvid.sound._subtitles import read_mov_text
from sound_helpers import decode_pcm, packets, write_music, write_narration, write_video

RATE = 48_000
CUES = [Cue(1.0, 2.5, "Hello, fox"), Cue(4.0, 5.5, "一只红色的狐狸")]


def loudness(pcm: np.ndarray) -> float:
    return pyloudnorm.Meter(RATE).integrated_loudness(pcm)


def true_peak_db(pcm: np.ndarray) -> float:
    return 20 * math.log10(np.abs(scipy.signal.resample_poly(pcm, 4, 1, axis=0)).max())


def level_db(pcm: np.ndarray, start_s: float, end_s: float) -> float:
    part = pcm[int(start_s * RATE) : int(end_s * RATE)]
    return 10 * math.log10(np.mean(part**2) + 1e-20)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("sound")
    return {
        "video": write_video(d / "video.mp4", 7.0),
        "video_with_audio": write_video(d / "provider.mp4", 7.0, tone_hz=1000),
        # a peaky voice: normalising it to -14 LUFS takes its spikes far over -1 dBTP
        "peaky_narration": write_narration(d / "peaky.wav", [(c.start_s, c.end_s) for c in CUES], 6.0, clicks=0.99),
        # a high voice and low music, so a low-pass shows the music alone under the voice
        "high_narration": write_narration(d / "high.wav", [(c.start_s, c.end_s) for c in CUES], 6.0, rate=48000, pitch=8),
        "music": write_music(d / "music.m4a", 2.5),
        "long_music": write_music(d / "long.mp3", 9.0, codec="libmp3lame"),
        "dir": d,
    }


def test_mix_of_all_sources_is_at_minus_14_lufs_with_true_peak_under_minus_1(inputs):
    out = inputs["dir"] / "all.mp4"
    stats = add_sound(
        inputs["video_with_audio"], out, narration=inputs["peaky_narration"], cues=CUES,
        options=SoundOptions(music=inputs["music"]),
    )
    pcm = decode_pcm(out)
    assert abs(loudness(pcm) - -14.0) <= 1.0
    assert true_peak_db(pcm) <= -1.0
    assert stats.limited_s > 0  # the spikes needed the limiter, not just a lower gain
    assert abs(stats.loudness_lufs - loudness(pcm)) < 0.2 and stats.true_peak_dbtp <= -1.0
    # the provider's 1 kHz tone is still in the mix
    spectrum = np.abs(np.fft.rfft(pcm[int(2.8 * RATE) : int(3.8 * RATE), 0]))
    assert spectrum[1000] > 20 * np.median(spectrum)
    assert set(stats.step_s) >= {"measure_sources", "mix", "normalise", "encode_mux", "verify"}


@pytest.mark.parametrize("cues", [CUES, []], ids=["spans-from-cues", "spans-from-narration-level"])
def test_music_is_ducked_under_speech(inputs, cues):
    out = inputs["dir"] / f"ducked{len(cues)}.mp4"
    options = SoundOptions(music=inputs["music"], fade_in_s=0.3, fade_out_s=0.5)
    add_sound(inputs["video"], out, narration=inputs["high_narration"], cues=cues, options=options)
    low = scipy.signal.sosfiltfilt(scipy.signal.butter(8, 500, "low", fs=RATE, output="sos"), decode_pcm(out)[:, 0])
    under_speech = [level_db(low, 1.5, 2.3), level_db(low, 4.5, 5.3)]
    between = [level_db(low, 0.4, 0.7), level_db(low, 3.1, 3.7)]
    assert max(under_speech) - min(between) <= -10.0  # SoundOptions.duck_db is -14
    assert min(between) > -45.0  # the music is there between phrases


def test_video_stream_is_copied_and_the_subtitle_track_carries_the_cues(inputs):
    out = inputs["dir"] / "copied.mp4"
    stats = add_sound(inputs["video"], out, narration=inputs["high_narration"], cues=CUES, options=SoundOptions())
    assert packets(out) == packets(inputs["video"])  # byte-identical, same timing and keyframes
    read = read_mov_text(out)
    assert [c.text for c in read] == [c.text for c in CUES]
    for got, want in zip(read, CUES):
        assert got.start_s == pytest.approx(want.start_s, abs=0.001) and got.end_s == pytest.approx(want.end_s, abs=0.001)
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert (audio.codec_context.name, audio.rate, audio.channels) == ("aac", 48000, 2)
        assert float(audio.duration * audio.time_base) == pytest.approx(7.0, abs=0.05)
    assert not stats.burned and stats.subtitles == 2


def _frames(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)]


def test_burned_subtitles_change_pixels_only_where_the_text_is(tmp_path):
    video = write_video(tmp_path / "v.mp4", 2.0, width=128, height=72)
    cue = Cue(0.5, 1.5, "字幕 Sub")
    out = tmp_path / "burned.mp4"
    stats = add_sound(video, out, narration=None, cues=[cue], options=SoundOptions(burn_subtitles=True))
    before, after = _frames(video), _frames(out)
    assert len(before) == len(after) == 24 and stats.burned
    overlay = render_overlay(cue.text, 128, 72)
    h, w = overlay.alpha.shape[:2]
    text = np.zeros((72, 128), bool)
    text[overlay.y : overlay.y + h, overlay.x : overlay.x + w] = overlay.alpha[:, :, 0] > 0.5
    near = np.zeros((72, 128), bool)  # the text's box, grown to whole 16-pixel macroblocks
    near[overlay.y // 16 * 16 : -(-(overlay.y + h) // 16) * 16, overlay.x // 16 * 16 : -(-(overlay.x + w) // 16) * 16] = True
    diffs = [np.abs(a - b).max(axis=2) for a, b in zip(before, after)]
    with_text = range(6, 18)  # 0.5 s .. 1.5 s at 12 fps
    # every frame is re-encoded: what differs in frames without text is the codec's noise
    noise = max(d.mean() for k, d in enumerate(diffs) if k not in with_text)
    assert noise < 5
    for k in with_text:
        assert diffs[k][~near].mean() <= 1.25 * noise + 0.5  # away from the text: noise only
        assert diffs[k][text].mean() > 40 > 4 * noise  # the glyphs themselves
    assert [c.text for c in read_mov_text(out)] == [cue.text]  # still a soft track too


def test_short_music_is_looped_to_the_video(inputs):
    out = inputs["dir"] / "looped.mp4"
    stats = add_sound(inputs["video"], out, narration=None, cues=[], options=SoundOptions(music=inputs["music"]))
    pcm = decode_pcm(out)
    levels = [level_db(pcm, s, s + 0.25) for s in np.arange(1.0, 4.75, 0.25)]  # past 2.5 s: the second time round
    assert min(levels) > max(levels) - 6
    assert stats.music_looped and stats.music_s == pytest.approx(2.5, abs=0.05)


def test_long_music_is_trimmed_and_faded_out(inputs):
    out = inputs["dir"] / "trimmed.mp4"
    stats = add_sound(inputs["video"], out, narration=None, cues=[], options=SoundOptions(music=inputs["long_music"]))
    pcm = decode_pcm(out)
    assert len(pcm) / RATE == pytest.approx(7.0, abs=0.05)
    assert level_db(pcm, 6.85, 6.98) < level_db(pcm, 3.0, 4.0) - 15
    assert not stats.music_looped


def test_nothing_to_hear_still_gives_a_silent_audio_track_in_place(inputs):
    out = inputs["dir"] / "silent.mp4"
    out.write_bytes(inputs["video"].read_bytes())
    stats = add_sound(out, out, narration=None, cues=[], options=SoundOptions())  # the video replaced by its finished self
    assert packets(out) == packets(inputs["video"])
    assert stats.loudness_lufs is None and stats.true_peak_dbtp is None
    pcm = decode_pcm(out)
    assert len(pcm) / RATE == pytest.approx(7.0, abs=0.05) and not pcm.any()
    with av.open(str(out)) as container:
        assert not container.streams.subtitles


def _png(path):
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    return path


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: (d / "notes.mp3").write_text("not music at all\n") and d / "notes.mp3", "not audio that can be decoded"),
        (lambda d: (d / "empty.m4a").write_bytes(b"") or d / "empty.m4a", "not audio that can be decoded"),
        (lambda d: _png(d / "cover.png"), "has no audio stream"),
        (lambda d: write_video(d / "silent.mp4", 1.0), "has no audio stream"),
        (lambda d: d / "missing.mp3", "no such file"),
    ],
    ids=["text", "empty", "image", "video-without-audio", "missing"],
)
def test_a_bad_music_file_is_a_one_line_input_error(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(InputError) as caught:
        check_music(path)
    message = str(caught.value)
    assert reason in message and str(path) in message and "\n" not in message
    assert caught.value.exit_code == 2


def test_good_music_files_pass_the_check(inputs):
    check_music(inputs["music"])
    check_music(inputs["long_music"])
    check_music(inputs["video_with_audio"])  # a video's soundtrack is music too


def _damaged_in_the_middle(good, path):
    """`good` with 4 kB of its middle overwritten: its first packets still decode."""
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = b"\xff" * 4000
    path.write_bytes(bytes(data))
    return path


def test_music_damaged_in_its_middle_is_refused_by_the_check(inputs):
    path = _damaged_in_the_middle(inputs["long_music"], inputs["dir"] / "damaged.mp3")
    with pytest.raises(InputError) as caught:
        check_music(path)
    message = str(caught.value)
    assert "damaged at" in message and str(path) in message and "\n" not in message


def test_damaged_packets_met_during_the_mix_are_played_as_silence_with_a_warning(inputs):
    # the video's own audio, or a music file changed after the check: the mix still finishes
    music = _damaged_in_the_middle(write_music(inputs["dir"] / "mid.m4a", 6.0), inputs["dir"] / "damaged.m4a")
    out = inputs["dir"] / "damaged_music.mp4"
    stats = add_sound(inputs["video"], out, narration=None, cues=[], options=SoundOptions(music=music))
    assert any("the music" in w and "damaged packet" in w for w in stats.warnings)
    assert len(decode_pcm(out)) / RATE == pytest.approx(7.0, abs=0.05)
    assert stats.loudness_lufs == pytest.approx(-14.0, abs=1.0)


def test_soft_subtitles_off_leaves_no_subtitle_track_but_still_ducks_under_the_cues(inputs):
    out = inputs["dir"] / "no_subs.mp4"
    stats = add_sound(inputs["video"], out, narration=inputs["high_narration"], cues=CUES,
                      options=SoundOptions(music=inputs["music"], fade_in_s=0.3, fade_out_s=0.5, soft_subtitles=False))
    with av.open(str(out)) as container:
        assert not container.streams.subtitles and container.streams.audio
    assert stats.subtitles == 0
    low = scipy.signal.sosfiltfilt(scipy.signal.butter(8, 500, "low", fs=RATE, output="sos"), decode_pcm(out)[:, 0])
    under_speech = [level_db(low, 1.5, 2.3), level_db(low, 4.5, 5.3)]
    between = [level_db(low, 0.4, 0.7), level_db(low, 3.1, 3.7)]
    assert max(under_speech) - min(between) <= -10.0
