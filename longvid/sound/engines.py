"""Which speech engine speaks a render's narration (`--speech`).

- espeak: espeak-ng, offline, free (the default: the README's commands narrate with it);
- piper: a local Piper voice (a voice file on disk; downloads only with --allow-download);
- gemini: Gemini speech through google-genai (paid, needs GOOGLE_API_KEY/GEMINI_API_KEY,
  model LONGVID_TTS_MODEL);
- auto: espeak-ng when it is installed, else no narration with a warning that says how to
  get it. A paid voice is never picked without being asked for: `--speech gemini`.

An engine asked for by name that cannot run here is an error before anything is paid; under
`auto` a missing espeak-ng is a warning and the render goes on silent.
"""

from __future__ import annotations

from ..errors import InputError
from ..settings import Settings
from .espeak import INSTALL_HINT, EspeakEngine, espeak_binary
from .speech import SpeechEngine, SpeechUnavailable


def choose_engine(choice: str, settings: Settings, allow_download: bool = False) -> tuple[SpeechEngine | None, list[str]]:
    """(the engine, warnings); (None, [why]) when `auto` finds no engine."""
    try:
        if choice == "gemini":
            from .gemini_tts import GeminiSpeech

            return GeminiSpeech(settings.gemini, settings.speech.tts_model), []
        if choice == "piper":
            from .piper_voice import PiperEngine

            return PiperEngine(settings.speech.piper_voices, allow_download), []
        if choice == "espeak" or espeak_binary() is not None:
            return EspeakEngine(), []
    except SpeechUnavailable as exc:
        raise InputError(f"--speech {choice}: {exc}") from None
    return None, [f"no narration: espeak-ng is not installed ({INSTALL_HINT}), or pass --speech gemini/piper"]
