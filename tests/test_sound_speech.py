"""Speech engines and the speak step: espeak-ng for real, Gemini speech against the local
fake (wire format, 429/500, cost), Piper's missing-voice error, cue timing measured on the
synthesised audio, and a narration stored once never synthesised again. Ray-free."""

import numpy as np
import pytest
from pydantic import SecretStr

from longvid.errors import InputError
from longvid.manifest import RunManifest, RunPlan
from longvid.planning import OfflinePlanner
from longvid.runtime.narration_step import (NARRATION_WAV, SUBTITLES_SRT, SUBTITLES_VTT, apply_narration_choice,
                                            speak_storyboard, write_narration)
from longvid.runtime.store import LocalRunStore
from longvid.settings import GeminiSettings, Settings, SpeechSettings
from longvid.sound.engines import choose_engine
from longvid.sound.espeak import EspeakEngine, espeak_binary
from longvid.sound.gemini_tts import GeminiSpeech
from longvid.sound.piper_voice import PiperEngine
from longvid.sound.speech import SpeechClip, SpeechFailed, SpeechUnavailable
from longvid.sound.subtitles import read_srt
from longvid.spec import RenderSpec
from longvid.testing import fake_gemini_tts
from longvid.testing.fake_gemini import Fault, start_fake_gemini

needs_espeak = pytest.mark.skipif(espeak_binary() is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")


@pytest.fixture
def fake():
    with start_fake_gemini() as server:
        yield server


def _gemini_settings(server) -> Settings:
    return Settings(gemini=GeminiSettings(api_key=SecretStr(server.api_key), base_url=server.url))


def _onsets(track: np.ndarray, rate: int, cues, window_s: float = 0.005, threshold: int = 300):
    """Where the voice starts near each cue: the first loud 5 ms window, searched from 0.2 s
    before the cue (inside the breath between phrases, PHRASE_GAP_S) to the cue's end."""
    window = int(rate * window_s)
    onsets = []
    for cue in cues:
        lo = max(0, int((cue.start_s - 0.2) * rate))
        hi = int(cue.end_s * rate)
        piece = np.abs(track[lo:hi].astype(np.int32))
        peaks = piece[: len(piece) // window * window].reshape(-1, window).max(axis=1)
        loud = np.flatnonzero(peaks > threshold)
        onsets.append(lo / rate + loud[0] * window_s if loud.size else None)
    return onsets


@needs_espeak
def test_espeak_speaks_english_and_mandarin_without_leading_silence():
    engine = EspeakEngine()
    english = engine.synthesise("A red fox explores a snowy forest.", "en", None)
    chinese = engine.synthesise("一只红色的狐狸在雪林中探索。", "zh", None)
    with pytest.raises(SpeechUnavailable, match="no voice 'nosuchvoice'"):
        engine.synthesise("Hello.", "en", "nosuchvoice")
    for clip in (english, chinese):
        assert clip.rate == 22050 and 1.0 < clip.duration_s < 6.0 and clip.cost_usd == 0
        assert np.abs(clip.pcm[: int(0.02 * clip.rate)]).max() > 300  # trimmed: the words start at once
    assert SpeechClip.from_wav(english.to_wav()).duration_s == english.duration_s
    # one process for several phrases (with & and < in them), cut apart at the long pauses
    texts = ["A red fox explores a snowy forest.", "Fish & chips < soup, said the fox.", "一只红色的狐狸在雪林中探索。"]
    batch = engine.synthesise_many(texts, "en", None)
    singles = [engine.synthesise(t, "en", None) for t in texts]
    assert len(batch) == 3
    for together, alone in zip(batch, singles):
        assert abs(together.duration_s - alone.duration_s) < 0.2


@needs_espeak
def test_each_cue_starts_within_100_ms_of_its_spoken_phrase(tmp_path):
    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=30, resolution="360p")
    board = OfflinePlanner().plan(spec)
    spoken, warnings = speak_storyboard(spec, board, Settings(), None)
    assert warnings == [] and not spoken.timing.stretched  # the planner's narration fits its scenes
    run = LocalRunStore(tmp_path).create("r1")
    manifest = RunManifest(run_id="r1", spec=spec, segments=[])
    write_narration(run, manifest, spoken.record, spoken.clips, None, Settings())
    clip = SpeechClip.from_wav((run.path / NARRATION_WAV).read_bytes())
    assert clip.duration_s == pytest.approx(spoken.timing.total_s, abs=0.01)
    cues = read_srt((run.path / SUBTITLES_SRT).read_text())
    assert [c.text for c in cues] == [p.text for p in spoken.record.phrases] and len(cues) >= 3
    for cue, onset in zip(cues, _onsets(clip.pcm, clip.rate, cues)):
        assert onset is not None and abs(onset - cue.start_s) < 0.1, (cue, onset)
    assert (run.path / SUBTITLES_VTT).read_text().startswith("WEBVTT")
    # plan.json carries the record; it reads back to the same cues
    plan = RunPlan(storyboard=board, segments=[], narration=spoken.record)
    assert RunPlan.model_validate_json(plan.model_dump_json()).narration.cues() == spoken.timing.cues()


def test_gemini_speech_speaks_the_wire_format_and_books_its_cost(fake):
    engine = GeminiSpeech(_gemini_settings(fake).gemini, "gemini-3.8-flash-tts", http_attempts=1)
    clip = engine.synthesise("Hello there, fox.", "en", "Puck")
    request = fake.fake.requests[-1]
    assert request.model == "gemini-3.8-flash-tts"
    assert fake_gemini_tts.wants_audio(request.generation_config)
    assert fake_gemini_tts.voice_name(request.generation_config) == "Puck"
    expected = fake_gemini_tts.speech_pcm(request.prompt_text)
    # 24 kHz L16 decoded, the fake's lead-in silence trimmed, the tone kept
    assert clip.rate == 24000 and len(expected) / 24000 - fake_gemini_tts.LEAD_SILENCE_S - 0.02 < clip.duration_s <= len(expected) / 24000
    audio_tokens = int(len(expected) / 24000 * 25)
    prompt_tokens = max(1, len(request.prompt_text) // 4)
    assert clip.cost_usd == pytest.approx(prompt_tokens * 0.5e-6 + audio_tokens * 6e-6)


def test_gemini_speech_retries_a_429_through_the_sdk_and_explains_a_500(fake):
    settings = _gemini_settings(fake).gemini
    fake.fake.inject(Fault.RATE_LIMIT, times=1)
    engine = GeminiSpeech(settings, "gemini-3.8-flash-tts", http_attempts=2, retry_initial_delay_s=0.01, retry_max_delay_s=0.02)
    assert engine.synthesise("Again.", "en", None).duration_s > 0
    assert fake.fake.request_count == 2  # the 429, then the answer: retried by HttpRetryOptions
    fake.fake.inject(Fault.SERVER_ERROR, times=None)
    engine = GeminiSpeech(settings, "gemini-3.8-flash-tts", http_attempts=1)
    with pytest.raises(SpeechFailed, match="answered 500 INTERNAL") as failed:
        engine.synthesise("Broken.", "en", None)
    assert fake.api_key not in str(failed.value)
    fake.fake.clear()
    fake.fake.inject(Fault.RATE_LIMIT, times=None)
    with pytest.raises(SpeechFailed, match="429 RESOURCE_EXHAUSTED"):
        engine.synthesise("Still busy.", "en", None)


def test_gemini_speech_with_a_rejected_key_is_the_users_to_fix(fake):
    settings = GeminiSettings(api_key=SecretStr("AIza-wrong-key-0123456789"), base_url=fake.url)
    with pytest.raises(SpeechUnavailable, match="refused the request \\(400 INVALID_ARGUMENT\\)") as refused:
        GeminiSpeech(settings, "gemini-3.8-flash-tts", http_attempts=1).synthesise("Hi.", "en", None)
    assert "AIza-wrong-key" not in str(refused.value)


def test_gemini_speech_without_a_key_is_refused_up_front():
    with pytest.raises(InputError, match="GOOGLE_API_KEY or GEMINI_API_KEY"):
        choose_engine("gemini", Settings())


def test_piper_without_its_voice_says_where_it_looked(tmp_path):
    engine = PiperEngine(tmp_path / "voices")
    with pytest.raises(SpeechUnavailable, match=r"en_US-lessac-medium.*not found.*voices.*--allow-download"):
        engine.synthesise("Hello.", "en", None)
    settings = Settings(speech=SpeechSettings(piper_voices=tmp_path / "voices"))
    spec = RenderSpec(prompt="a fox in the snow", duration_s=20, speech="piper")
    with pytest.raises(InputError, match="--speech piper: Piper voice"):
        speak_storyboard(spec, OfflinePlanner().plan(spec), settings, None)


def test_without_espeak_auto_renders_silent_and_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without espeak-ng
    engine, warnings = choose_engine("auto", Settings())
    assert engine is None and "apt-get install espeak-ng" in warnings[0]
    with pytest.raises(InputError, match="espeak-ng is not installed"):
        choose_engine("espeak", Settings())


def test_a_narration_file_must_have_one_text_per_scene():
    spec = RenderSpec(prompt="a fox", duration_s=20, narration=["one.", "two."])
    board = OfflinePlanner().plan(spec)
    assert [s.narration for s in board.scenes] == ["one.", "two."]  # the planner plans one scene per text
    three = RenderSpec(prompt="a fox", duration_s=20, narration=["a.", "b.", "c."])
    with pytest.raises(InputError, match="narration file has 3 text.*storyboard has 2 scene"):
        apply_narration_choice(three, board)
    off = apply_narration_choice(spec.model_copy(update={"narration": "off"}), board)
    assert all(s.narration == "" for s in off.scenes)


def test_a_stored_narration_is_never_synthesised_or_paid_twice(fake, tmp_path):
    """Gemini speech: planning pays once (clips go to the store's speech cache), the render
    copies them into the run folder, a resumed run reads them from there."""
    settings = _gemini_settings(fake)
    store = LocalRunStore(tmp_path / "runs")
    spec = RenderSpec(prompt="a fox", duration_s=20, speech="gemini", narration=["The fox wakes. It runs.", "It sleeps."])
    board = OfflinePlanner().plan(spec)
    spoken, _ = speak_storyboard(spec, board, settings, store)
    assert fake.fake.request_count == 3 and len(spoken.costs) == 3
    run = store.create("r1")
    manifest = RunManifest(run_id="r1", spec=spec, segments=[])
    manifest = write_narration(run, manifest, spoken.record, {}, store, settings)  # from the store's cache
    again, _ = speak_storyboard(spec, board, settings, store)  # planning the same words again
    assert fake.fake.request_count == 3 and again.costs == []
    for cached in (tmp_path / "runs" / "state" / "speech").rglob("*.wav"):
        cached.unlink()  # even with the store's cache gone, the run folder has every clip
    write_narration(run, manifest, spoken.record, {}, store, settings)
    assert fake.fake.request_count == 3
    # a run folder that lost a clip (and no cache) synthesises just that one, and books it
    (run.path / f"speech/{spoken.record.phrases[0].key}.wav").unlink()
    manifest = write_narration(run, manifest, spoken.record, {}, store, settings)
    assert fake.fake.request_count == 4
    assert [e.key for e in manifest.ledger] == [f"speech/{spoken.record.phrases[0].key}"]
    assert manifest.ledger[0].provider == "gemini-tts" and manifest.cost_usd > 0
    assert fake.api_key not in manifest.model_dump_json()


@needs_espeak
def test_narration_longer_than_the_longest_video_is_refused():
    spec = RenderSpec(prompt="a fox", duration_s=20, narration=["The fox runs far away. " * 80] * 6)
    with pytest.raises(InputError, match="longer than the longest video"):
        speak_storyboard(spec, OfflinePlanner().plan(spec), Settings(), None)


def test_speech_settings_are_read_once_from_the_environment():
    settings = Settings.from_env({"LONGVID_TTS_MODEL": "models/gemini-3.8-flash-lite-tts", "LONGVID_PIPER_VOICES": "/voices"})
    assert settings.speech.tts_model == "gemini-3.8-flash-lite-tts" and str(settings.speech.piper_voices) == "/voices"
    assert Settings.from_env({}).speech == SpeechSettings(tts_model="gemini-3.8-flash-tts", piper_voices=None)


def test_booked_speech_is_never_taken_for_an_unanswered_create_call():
    """A speech call was answered (its clip is stored): ledger.unanswered must not list it,
    or every narrated render warns that a gemini-tts task may have been paid for unseen."""
    from longvid.providers.ledger import CostLedger, LedgerEntry
    from longvid.runtime.narration_step import book_speech_costs

    manifest = RunManifest(run_id="r1", spec=RenderSpec(prompt="a fox", duration_s=20), segments=[])
    booked = book_speech_costs(manifest, [("k1", 0.01), ("k2", 0.02)])
    assert [e.task_id for e in booked.ledger] == ["speech/k1", "speech/k2"]
    assert CostLedger(entries=list(booked.ledger)).unanswered() == []
    # an entry booked before task ids were given (a run resumed after upgrading) gets one too
    old = manifest.model_copy(update={"ledger": [LedgerEntry(key="speech/k0", segment=-1, provider="gemini-tts",
                                                             estimate_usd=0.01, state="charged", cost_usd=0.01)]})
    assert CostLedger(entries=list(book_speech_costs(old, []).ledger)).unanswered() == []


def test_espeak_that_hangs_is_a_speech_failure_with_a_reason(tmp_path, monkeypatch):
    import longvid.sound.espeak as espeak

    hanging = tmp_path / "espeak-ng"
    hanging.write_text("#!/bin/sh\nexec sleep 5\n")
    hanging.chmod(0o755)
    monkeypatch.setattr(espeak, "TIMEOUT_S", 0.2)
    with pytest.raises(SpeechFailed, match=r"did not finish within 0\.2 s"):
        EspeakEngine(binary=str(hanging)).synthesise("hello", "en", None)


LONG_TEXT = "The fox runs far across the frozen river and into the dark pines. " * 6  # ~50 s to say


def test_a_paid_voice_refuses_narration_too_long_before_any_speech_is_paid(fake):
    spec = RenderSpec(prompt="a fox", duration_s=20, speech="gemini", narration=[LONG_TEXT, LONG_TEXT])
    with pytest.raises(InputError, match=r"would take about \d+ s to say, longer than the longest video \(60 s\)"):
        speak_storyboard(spec, OfflinePlanner().plan(spec), _gemini_settings(fake), None, max_s=60)
    assert fake.fake.request_count == 0


def test_a_paid_voice_refused_by_the_budget_makes_no_speech_call(fake, tmp_path):
    from dataclasses import replace

    from longvid.providers import registry
    from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
    from longvid.runtime import InlineSegmentRunner, RenderPipeline

    class PaidPreview(PreviewProvider):
        capabilities = replace(PREVIEW_CAPABILITIES, name="paid-preview", price_per_second_usd=0.5)

    saved = dict(registry._FACTORIES)
    registry.register_provider("paid-preview", PaidPreview.capabilities, lambda settings: PaidPreview())
    try:
        spec = RenderSpec(prompt="a fox", duration_s=8, provider="paid-preview", budget_usd=1.0, speech="gemini",
                          narration=["The fox wakes.", "It runs."])
        pipeline = RenderPipeline(LocalRunStore(tmp_path / "runs"), InlineSegmentRunner(), settings=_gemini_settings(fake))
        with pytest.raises(InputError, match="budget"):
            pipeline.plan(spec)
    finally:
        registry._FACTORIES.clear()
        registry._FACTORIES.update(saved)
    assert fake.fake.request_count == 0


@needs_espeak
def test_a_callers_lower_maximum_holds_for_the_narrated_length():
    # the API's 120 s is lower than the CLI's 600 s: a short request must not grow past it
    spec = RenderSpec(prompt="a fox", duration_s=5, narration=["The fox runs far across the frozen river. " * 3])
    with pytest.raises(InputError, match=r"longer than the longest video \(5 s\)"):
        speak_storyboard(spec, OfflinePlanner().plan(spec), Settings(), None, max_s=5)


def test_the_api_refuses_a_short_request_whose_narration_passes_its_maximum(fake):
    from serve.planning import PlanService

    answer = PlanService("offline", _gemini_settings(fake)).plan(
        {"prompt": "a fox", "duration_s": 5, "speech": "gemini", "narration": [LONG_TEXT] * 4})
    assert answer["error"]["code"] == "invalid_request"  # the API answers it 422
    assert "longer than the longest video (120 s)" in answer["error"]["message"]
    assert fake.fake.request_count == 0


def test_a_clip_longer_than_recorded_loses_its_own_tail_never_the_next_phrases_start(tmp_path):
    from longvid.sound.narration import TRACK_RATE, NarrationRecord, PhraseRecord, write_narration_track

    first = SpeechClip(np.full(int(1.5 * TRACK_RATE), 1000, np.int16), TRACK_RATE)  # recorded as 1.0 s: 0.25 s too long
    second = SpeechClip(np.arange(1, TRACK_RATE + 1, dtype=np.int16) % 30000 + 1, TRACK_RATE)
    record = NarrationRecord(engine="espeak", identity="espeak-ng/default", language="en", fps=24, requested_s=4.0,
                             scene_frames=[96], phrases=[PhraseRecord(scene=0, text="a.", key="a", start_s=0.3, duration_s=1.0),
                                                         PhraseRecord(scene=0, text="b.", key="b", start_s=1.55, duration_s=1.0)])
    path = tmp_path / "n.wav"
    write_narration_track(path, record, {"a": first, "b": second}.__getitem__, 4.0)
    track = SpeechClip.from_wav(path.read_bytes())
    assert len(track.pcm) == 4 * TRACK_RATE
    b = int(1.55 * TRACK_RATE)
    assert np.array_equal(track.pcm[b : b + len(second.pcm)], second.pcm)  # the second phrase whole, at its cue
    assert (track.pcm[int(0.3 * TRACK_RATE) : b] == 1000).all()  # the first one up to it


@needs_espeak
def test_lost_espeak_clips_are_spoken_again_as_a_batch_matching_the_recorded_timing(tmp_path):
    spec = RenderSpec(prompt="a fox", duration_s=20, narration=["The fox wakes. It runs to the river.", "It sleeps."])
    board = OfflinePlanner().plan(spec)
    spoken, _ = speak_storyboard(spec, board, Settings(), None)
    store = LocalRunStore(tmp_path / "runs")
    run = store.create("r1")
    write_narration(run, RunManifest(run_id="r1", spec=spec, segments=[]), spoken.record, {}, store, Settings())  # a crash lost them
    for phrase in spoken.record.phrases:
        again = SpeechClip.from_wav((run.path / f"speech/{phrase.key}.wav").read_bytes())
        assert again.duration_s == pytest.approx(phrase.duration_s, abs=0.005)


def test_a_video_with_nothing_to_hear_still_gets_a_silent_audio_track(tmp_path):
    import av
    from sound_helpers import write_video

    from longvid.runtime.layout import FINAL
    from longvid.runtime.narration_step import add_soundtrack

    run = LocalRunStore(tmp_path / "runs").create("r1")
    write_video(run.path / FINAL, 2.0)
    stats = add_soundtrack(run, RenderSpec(prompt="a fox", duration_s=5, narration="off"), None)
    assert stats is not None and stats["loudness_lufs"] is None
    with av.open(str(run.path / FINAL)) as final:
        assert [s.type for s in final.streams] == ["video", "audio"]
    # a video with its provider's own audio and nothing to add is kept as the merge wrote it
    write_video(run.path / FINAL, 2.0, tone_hz=440)
    before = (run.path / FINAL).read_bytes()
    assert add_soundtrack(run, RenderSpec(prompt="a fox", duration_s=5, narration="off"), None) is None
    assert (run.path / FINAL).read_bytes() == before
