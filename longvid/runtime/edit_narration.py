"""The narration of an edit that changes what a scene says.

An edit keeps every scene's length (the render's narration timing): the scenes are not
re-timed around the new words, so no segment moves or changes length, the other scenes keep
their clips, and a narration-only edit makes no new video at all (only the track and the
subtitles change). New words that do not fit their scene are refused in one line, before any
video is paid; with a paid engine (Gemini) they are first checked at the planners' speaking
rate, before the speech is asked for, and an estimate (`estimate_only`) asks for none of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, RenderError
from ..manifest import RunPlan
from ..settings import Settings
from ..sound.engines import choose_engine
from ..sound.narration import NarrationRecord, Spoken, StoreSpeechCache, speak
from ..sound.phrases import estimated_seconds, split_phrases
from ..sound.speech import SpeechFailed, SpeechUnavailable, clip_key
from ..sound.timing import NarrationTiming, place_phrases, scenes_too_short
from ..spec import RenderSpec, Storyboard
from .narration_step import PAID_ENGINES


@dataclass(frozen=True)
class EditSpeech:
    spoken: Spoken | None  # the new narration in the old scene lengths (None: an estimate with a paid engine)
    warnings: list[str]
    estimate_usd: float  # what the paid speech should cost (0 with a free engine)


def narration_changed(old: Storyboard, new: Storyboard) -> bool:
    return [s.narration for s in old.scenes] != [s.narration for s in new.scenes]


def speak_edit(spec: RenderSpec, plan: RunPlan, storyboard: Storyboard, settings: Settings, store,
               allow_download: bool = False, estimate_only: bool = False) -> EditSpeech:
    """The edited storyboard's narration, said and placed in the run's scene lengths."""
    record = plan.narration
    if record is None:
        raise InputError("this run's scenes were not timed to any narration; an edit keeps every scene's length, so it "
                         "cannot add narration: render again with the narration in the storyboard")
    engine, warnings = choose_engine(spec.speech, settings, allow_download)
    if engine is None:
        raise InputError(f"no speech engine can say the edited narration: {'; '.join(warnings) or 'none is available'}")
    texts = [s.narration for s in storyboard.scenes]
    estimate_usd = 0.0
    paid = engine.name in PAID_ENGINES
    if paid:
        from ..sound.gemini_tts import estimated_phrase_usd

        estimated = [[(text, estimated_seconds(text, record.language)) for text in split_phrases(n)] for n in texts]
        _refuse_too_short([[s for _t, s in scene] for scene in estimated], record, "would take about")
        cache = StoreSpeechCache(store)
        new = {clip_key(engine.identity, record.language, spec.voice, text): (text, seconds)
               for scene in estimated for text, seconds in scene}
        estimate_usd = sum(estimated_phrase_usd(getattr(engine, "model", ""), text, seconds)
                           for key, (text, seconds) in new.items() if cache.get(key) is None)
        if estimate_only:
            return EditSpeech(None, warnings, estimate_usd)
    weights = [s.duration_s or 1.0 for s in storyboard.scenes]
    try:
        spoken = speak(texts, weights, engine, record.language, spec.voice, record.requested_s, record.fps,
                       [StoreSpeechCache(store)] if paid and store is not None else [])
    except SpeechUnavailable as exc:
        raise InputError(f"--speech {spec.speech}: {exc}") from None
    except SpeechFailed as exc:
        raise RenderError(f"the edited narration could not be spoken: {exc}") from None
    return EditSpeech(keep_scene_lengths(spoken, record), warnings, estimate_usd)


def keep_scene_lengths(spoken: Spoken, old: NarrationRecord) -> Spoken:
    """`spoken`'s phrases placed in the old record's scene lengths (pure); refused when the
    words of a scene do not fit its length."""
    scenes: list[list] = [[] for _ in old.scene_frames]
    for phrase in spoken.record.phrases:
        scenes[phrase.scene].append(phrase)
    _refuse_too_short([[p.duration_s for p in scene] for scene in scenes], old, "takes")
    ordered = [p for scene in scenes for p in scene]
    placed = place_phrases([[(p.text, p.duration_s) for p in scene] for scene in scenes], old.scene_frames, old.fps)
    record = spoken.record.model_copy(update={
        "scene_frames": list(old.scene_frames), "requested_s": old.requested_s,
        "phrases": [p.model_copy(update={"start_s": q.start_s}) for p, q in zip(ordered, placed)]})
    timing = NarrationTiming(list(old.scene_frames), placed, old.fps, old.requested_s)
    return Spoken(record, timing, spoken.costs, spoken.clips)


def _refuse_too_short(durations: list[list[float]], old: NarrationRecord, verb: str) -> None:
    short = scenes_too_short(durations, old.scene_frames, old.fps)
    if short:
        scene, need_s, have_s = short[0]
        raise InputError(f"scene {scene + 1}'s narration {verb} {need_s:.1f} s to say (pauses included) but the scene lasts "
                         f"{have_s:.1f} s, and an edit keeps every scene's length; shorten the narration")
