"""The speak step of a render, between planning and segmentation, and its files.

At plan time: the narration choice is applied to the storyboard (`--narration off` silences
it, a narration file replaces it), each phrase is synthesised, and the timing fixes every
scene's length (the segmenter then cuts inside them). At render time: the clips go into the
run folder, with narration.wav (the whole track, aligned to t=0) and subtitles.srt / .vtt;
what Gemini speech cost is booked in the run's ledger. On resume everything is read back
from the run folder: nothing is synthesised twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import InputError, RenderError
from ..manifest import RunManifest
from ..providers.ledger import EntryState, LedgerEntry
from ..settings import Settings
from ..sound.engines import choose_engine
from ..sound.narration import (NarrationRecord, RunSpeechFolder, Spoken, StoreSpeechCache, estimated_timing, speak,
                               speech_path, write_narration_track)
from ..sound.phrases import language_of
from ..sound.speech import SpeechClip, SpeechFailed, SpeechUnavailable
from ..sound.timing import SegmentFit
from ..sound.subtitles import to_srt, to_vtt
from ..spec import MAX_DURATION_S, RenderSpec, Storyboard

NARRATION_WAV = "narration.wav"
SUBTITLES_SRT = "subtitles.srt"
SUBTITLES_VTT = "subtitles.vtt"
SPEECH_LEDGER_SEGMENT = -1  # ledger entries of the narration belong to no segment
SPEECH_PROVIDER = "gemini-tts"


def apply_narration_choice(spec: RenderSpec, storyboard: Storyboard) -> Storyboard:
    """The storyboard with the spec's narration: as planned ("auto"), silent ("off"), or
    the narration file's texts, one per scene (a count that differs is refused)."""
    if spec.narration == "auto":
        return storyboard
    if spec.narration == "off":
        texts = [""] * len(storyboard.scenes)
    else:
        texts = list(spec.narration)
        if len(texts) != len(storyboard.scenes):
            raise InputError(f"the narration file has {len(texts)} text(s) but the storyboard has "
                             f"{len(storyboard.scenes)} scene(s); give one text per scene, separated by blank lines")
    scenes = [s.model_copy(update={"narration": t.strip()}) for s, t in zip(storyboard.scenes, texts)]
    return storyboard.model_copy(update={"scenes": scenes})


PAID_ENGINES = ("gemini",)


def speak_storyboard(spec: RenderSpec, storyboard: Storyboard, settings: Settings, store,
                     allow_download: bool = False, max_s: float = MAX_DURATION_S,
                     check_scene_frames: Callable[[list[int]], object] | None = None,
                     fit: SegmentFit | None = None) -> tuple[Spoken | None, list[str]]:
    """The storyboard's narration synthesised and timed, or (None, warnings) for a silent one.

    Refused (InputError) when the narration would make the video longer than `max_s` (the
    API's maximum is lower than the CLI's). With a paid engine, the request is first checked
    against the timing estimated at the planners' speaking rate (length, and
    `check_scene_frames`: the budget) so that nothing is paid for a request that is refused;
    free engines are checked on the measured timing alone (exact, and refusing costs nothing).
    Scene lengths are planned around `fit`, the segmenter's, when given."""
    if not any(s.narration.strip() for s in storyboard.scenes):
        return None, []
    engine, warnings = choose_engine(spec.speech, settings, allow_download)
    if engine is None:
        return None, warnings
    language = language_of(storyboard.prompt or spec.prompt)
    texts = [s.narration for s in storyboard.scenes]
    weights = [s.duration_s or 1.0 for s in storyboard.scenes]
    if engine.name in PAID_ENGINES:
        estimate = estimated_timing(texts, weights, language, spec.duration_s, spec.fps, fit)
        _refuse_longer_than(estimate.total_s, max_s, "would take about")
        if check_scene_frames is not None:
            check_scene_frames(estimate.scene_frames)
    # A paid engine's clips also go to the store-wide cache, so planning and rendering the
    # same words (or rendering them twice) pays once; free clips travel in memory.
    stores = [StoreSpeechCache(store)] if engine.name in PAID_ENGINES and store is not None else []
    try:
        spoken = speak(texts, weights, engine, language, spec.voice, spec.duration_s, spec.fps, stores, fit)
    except SpeechUnavailable as exc:
        raise InputError(f"--speech {spec.speech}: {exc}") from None
    except SpeechFailed as exc:
        raise RenderError(f"the narration could not be spoken: {exc}") from None
    _refuse_longer_than(spoken.timing.total_s, max_s, "takes")
    return spoken, [*warnings, *spoken.timing.warnings]


def _refuse_longer_than(total_s: float, max_s: float, verb: str) -> None:
    if total_s > max_s:
        raise InputError(f"the narration {verb} {total_s:.0f} s to say, longer than the longest video "
                         f"({max_s:g} s); shorten it")


def book_speech_costs(manifest: RunManifest, costs: list[tuple[str, float]]) -> RunManifest:
    """Gemini speech calls in the ledger (charged: their cost is known from the usage tokens).
    Each carries its clip's key as its task id: the call was answered (the clip is stored),
    so it is no create call whose task may be billed unseen (ledger.unanswered). Entries
    booked before that rule get their task id here too, so a resumed run does not warn."""
    known = {e.key for e in manifest.ledger}
    entries = [LedgerEntry(key=f"speech/{key}", segment=SPEECH_LEDGER_SEGMENT, provider=SPEECH_PROVIDER, estimate_usd=cost,
                           state=EntryState.CHARGED, cost_usd=cost, task_id=f"speech/{key}", note="narration phrase")
               for key, cost in costs if f"speech/{key}" not in known]
    ledger = [e.model_copy(update={"task_id": e.key}) if e.provider == SPEECH_PROVIDER and e.task_id is None else e
              for e in manifest.ledger]
    if not entries and ledger == manifest.ledger:
        return manifest
    return manifest.model_copy(update={"ledger": [*ledger, *entries]})


def write_narration(run, manifest: RunManifest, record: NarrationRecord, clips: dict[str, bytes], store,
                    settings: Settings) -> RunManifest:
    """speech/<key>.wav for every phrase (from memory, the store's cache, or - only when lost
    - synthesised again and booked), then narration.wav and the subtitle files."""
    folder = RunSpeechFolder(run)
    missing: dict[str, str] = {}  # key -> text of the phrases no store has
    for phrase in record.phrases:
        if run.exists(speech_path(phrase.key)) or phrase.key in missing:  # stored (a phrase said twice is stored once)
            continue
        data = clips.get(phrase.key) or StoreSpeechCache(store).get(phrase.key)
        if data is None:
            missing[phrase.key] = phrase.text
        else:
            folder.put(phrase.key, data)
    costs = _synthesise_again(missing, record, settings, folder) if missing else []
    manifest = book_speech_costs(manifest, costs)
    total_s = sum(record.scene_frames) / record.fps
    partial = run.scratch_path(NARRATION_WAV + ".partial")
    try:
        write_narration_track(partial, record, lambda key: SpeechClip.from_wav(folder.get(key)), total_s)
        run.publish(NARRATION_WAV, partial)
    finally:
        partial.unlink(missing_ok=True)
    cues = record.cues()
    run.write_bytes(SUBTITLES_SRT, to_srt(cues).encode())
    run.write_bytes(SUBTITLES_VTT, to_vtt(cues).encode())
    return manifest


def _synthesise_again(texts: dict[str, str], record: NarrationRecord, settings: Settings,
                      folder: RunSpeechFolder) -> list[tuple[str, float]]:
    """Lost clips made again and stored in the run folder; their costs. A local engine that
    speaks a batch in one process (espeak-ng) speaks them as `speak` did, so their lengths
    match the recorded timing as closely as they can."""
    engine, _ = choose_engine(record.engine, settings)
    many = getattr(engine, "synthesise_many", None)
    costs: list[tuple[str, float]] = []
    try:
        if many is not None:
            made = zip(texts, many(list(texts.values()), record.language, record.voice))
        else:  # one at a time, each stored as soon as it is made: a paid clip is never made twice
            made = ((key, engine.synthesise(text, record.language, record.voice)) for key, text in texts.items())
        for key, clip in made:
            folder.put(key, clip.to_wav())
            if clip.cost_usd > 0:
                costs.append((key, clip.cost_usd))
    except (SpeechUnavailable, SpeechFailed) as exc:
        raise RenderError(f"the narration could not be spoken: {exc}") from None
    return costs


# ISO 639-2 codes for the subtitle track's metadata, by narration language.
SUBTITLE_LANGUAGES = {"en": "eng", "zh": "chi", "ja": "jpn", "ko": "kor"}


def soundtrack_mixes(spec: RenderSpec, narration: NarrationRecord | None) -> bool:
    """Whether add_soundtrack mixes the merged video's own audio with narration or music
    (and so decodes the merge's track again), rather than keeping it as it is."""
    return narration is not None or spec.music is not None


def add_soundtrack(run, spec: RenderSpec, narration: NarrationRecord | None, merged=None, merged_audio: bool = False,
                   still_owner: Callable[[], None] = lambda: None) -> dict | None:
    """final.mp4 with its soundtrack (narration, music, provider audio; -14 LUFS) and the
    cues as a soft subtitle track (drawn in with burn_subtitles), the picture stream-copied
    unless burned. A video with only its provider's audio keeps the merge's output as it is;
    one with nothing to hear at all gets a silent AAC track (players, editors and upload
    sites expect one; add_sound encodes silence without measuring anything). `merged`: the
    merge's outputs.MergeTarget when it wrote the picture and the clips' audio (as raw PCM;
    `merged_audio`: it had some) to scratch files instead of final.mp4: final.mp4 is written
    from them here, and they are deleted. `still_owner` raises when this process no longer
    owns the run (its lease was lost): called before final.mp4 is replaced. Returns
    add_sound's figures (None when the merge's output was kept)."""
    import os
    from dataclasses import asdict

    from ..media.audio import has_audio
    from ..media.timeline import new_scratch_tag, scratch_beside
    from ..sound.finish import SoundOptions, add_sound
    from .layout import FINAL

    if merged is None and not soundtrack_mixes(spec, narration) and has_audio(run.local_path(FINAL)):
        return None
    cues = narration.cues() if narration is not None else []
    options = SoundOptions(music=spec.music, burn_subtitles=spec.burn_subtitles, soft_subtitles=spec.subtitles,
                           subtitle_language=SUBTITLE_LANGUAGES.get(narration.language) if narration else None)
    # add_sound's output, under a name of this invocation's own (as the merge's scratch files):
    # a driver that lost the run never writes over the new owner's
    out = scratch_beside(run.scratch_path(FINAL), new_scratch_tag(), "sound.mp4")
    video = merged.picture if merged is not None else run.local_path(FINAL)
    pcm = merged.audio_pcm if merged is not None and merged_audio else None
    try:
        still_owner()  # a lapsed driver's merged files may be gone: the new owner swept them
        if pcm is not None and not pcm.exists():  # never a finished video silently without the clips' sound
            raise RenderError("the merged audio is gone from the scratch folder (did another process take the run over?); "
                              "resume the run to merge it again")
        stats = add_sound(video, out, narration=run.local_path(NARRATION_WAV) if narration else None,
                          cues=cues, options=options, provider_pcm=pcm)
    finally:
        if merged is not None:
            merged.remove()
    final = run.scratch_path(FINAL)
    try:
        still_owner()
        os.replace(out, final)  # same folder: atomic; later steps (copy_out, review) read the new one
    finally:
        out.unlink(missing_ok=True)
    run.publish(FINAL, final)
    return asdict(stats)


def copy_subtitles_out(run, output) -> None:
    """subtitles.srt / .vtt beside the user's output file (fox.mp4 -> fox.srt, fox.vtt)."""
    from .store import atomic_copy

    for name in (SUBTITLES_SRT, SUBTITLES_VTT):
        if run.exists(name):
            atomic_copy(run.local_path(name), Path(output).with_suffix(Path(name).suffix))
