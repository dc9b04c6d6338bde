"""Narration text as speakable pieces: the phrases a scene's narration is spoken (and
subtitled) in, the language it is written in, and how much text fits a given time.

Pure: no audio, no engines. The planners use `fit_words`/`fits` to write narration that
fits a scene; the speak step synthesises each phrase on its own, which is what times the
subtitles (no speech recognition).
"""

from __future__ import annotations

import re

# Speaking rate the planners write for. espeak-ng speaks English at about 3.4 words/s and
# Mandarin at about 2.8 characters/s; neural voices are slower. Narration is written to fill
# NARRATION_FILL of a scene at these rates, so most voices fit without stretching the video.
WORDS_PER_SECOND = 2.5
CJK_CHARS_PER_SECOND = 2.5
NARRATION_FILL = 0.7
MIN_PHRASE_WORDS = 3  # a scene too short for this many words stays silent

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
# A phrase ends after sentence punctuation (Latin or CJK); a long sentence also breaks at
# a semicolon or colon, so that no subtitle cue stays on screen for too long.
_PHRASE_END = re.compile(r"(?<=[.!?;:。！？；：…])\s*")


def language_of(text: str) -> str:
    """'zh', 'ja', 'ko' or 'en': the script the text is mostly written in (a prompt in
    Chinese gets Chinese narration and a Mandarin voice)."""
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    if _CJK.search(text):
        return "zh"
    return "en"


def split_phrases(narration: str) -> list[str]:
    """The phrases of one scene's narration, in order, each stripped; empty for silence."""
    pieces = [p.strip() for p in _PHRASE_END.split(narration.strip())]
    return [p for p in pieces if p and re.search(r"\w", p)]


def spoken_units(text: str) -> int:
    """Words for Latin text, characters for CJK text: what the speaking rate counts."""
    cjk = len(_CJK.findall(text))
    latin_words = len(re.findall(r"[^\W\d_]+(?:['-][^\W\d_]+)*", _CJK.sub(" ", text)))
    return cjk + latin_words


def units_per_second(language: str) -> float:
    return CJK_CHARS_PER_SECOND if language in ("zh", "ja", "ko") else WORDS_PER_SECOND


def estimated_seconds(text: str, language: str | None = None) -> float:
    """How long `text` takes to say at the planners' rate (an estimate, not a measurement)."""
    return spoken_units(text) / units_per_second(language or language_of(text))


def fit_units(scene_s: float, language: str) -> int:
    """How many words (CJK: characters) of narration a scene of `scene_s` seconds holds."""
    units = int(scene_s * units_per_second(language) * NARRATION_FILL)
    return units if units >= MIN_PHRASE_WORDS else 0
