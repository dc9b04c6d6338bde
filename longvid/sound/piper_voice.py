"""Piper (`piper-tts`): local neural voices. A voice is an `.onnx` model plus its
`.onnx.json` config on disk; it is looked up by path or name in the voices folder
(LONGVID_PIPER_VOICES, else ~/.local/share/piper-voices), and downloaded (piper's own
`download_voice`) only when the user passed --allow-download.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

from .speech import SpeechClip, SpeechFailed, SpeechUnavailable, trim_silence

DEFAULT_VOICES = {"en": "en_US-lessac-medium", "zh": "zh_CN-huayan-medium"}
CACHE_DIR = Path.home() / ".local" / "share" / "piper-voices"


def find_voice(voice: str, folders: list[Path]) -> Path | None:
    """The .onnx file for `voice` (a path, or a name looked up in `folders`) with its config beside it."""
    candidates = [Path(voice)] + [folder / f"{voice}.onnx" for folder in folders]
    for model in candidates:
        if model.suffix == ".onnx" and model.is_file() and model.with_suffix(".onnx.json").is_file():
            return model
    return None


class PiperEngine:
    name = "piper"

    def __init__(self, voices_dir: Path | None = None, allow_download: bool = False):
        try:
            import piper  # noqa: F401
        except ImportError:
            raise SpeechUnavailable("Piper is not installed: pip install piper-tts (or use --speech espeak)") from None
        self.folders = [voices_dir] if voices_dir is not None else [CACHE_DIR]
        self.allow_download = allow_download
        self._loaded: dict[Path, object] = {}

    @property
    def identity(self) -> str:
        return "piper"

    def voice_file(self, language: str, voice: str | None) -> Path:
        name = voice or DEFAULT_VOICES.get(language)
        if name is None:
            raise SpeechUnavailable(f"no default Piper voice for language {language!r}: pass --voice NAME or a path to an .onnx voice")
        found = find_voice(name, self.folders)
        if found is None and self.allow_download and not name.endswith(".onnx"):
            from piper.download_voices import download_voice

            self.folders[0].mkdir(parents=True, exist_ok=True)
            try:
                download_voice(name, self.folders[0])
            except Exception as exc:
                raise SpeechUnavailable(f"could not download Piper voice {name!r}: {exc.__class__.__name__}: {exc}") from None
            found = find_voice(name, self.folders)
        if found is None:
            where = ", ".join(str(f) for f in self.folders)
            raise SpeechUnavailable(
                f"Piper voice {name!r} not found (looked for {name}.onnx and {name}.onnx.json in {where}); "
                "put the voice there, set LONGVID_PIPER_VOICES, pass --voice /path/to/voice.onnx, "
                "or pass --allow-download to fetch it")
        return found

    def synthesise(self, text: str, language: str, voice: str | None) -> SpeechClip:
        from piper import PiperVoice

        model = self.voice_file(language, voice)
        if model not in self._loaded:
            self._loaded[model] = PiperVoice.load(model)
        out = io.BytesIO()
        try:
            with wave.open(out, "wb") as w:
                self._loaded[model].synthesize_wav(text, w)
        except Exception as exc:
            raise SpeechFailed(f"Piper failed on voice {model.name}: {exc.__class__.__name__}: {exc}") from None
        return trim_silence(SpeechClip.from_wav(out.getvalue()))
