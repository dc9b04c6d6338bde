"""espeak-ng: the offline default voice (a Debian package, many languages, no download).

Runs /usr/bin/espeak-ng (or the one on PATH) as a subprocess that writes a WAV file; the
clip is read back with the standard library and its silence trimmed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from xml.sax.saxutils import escape

from .speech import SpeechClip, SpeechFailed, SpeechUnavailable, split_at_silences, trim_silence

INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng`"
# espeak-ng voice per narration language (phrases.language_of).
VOICES = {"en": "en-us", "zh": "cmn", "ja": "ja", "ko": "ko"}
TIMEOUT_S = 60.0
BATCH_BREAK_S = 2.0  # silence between phrases spoken in one process; no phrase pauses this long inside


def espeak_binary() -> str | None:
    return shutil.which("espeak-ng")


class EspeakEngine:
    name = "espeak"

    def __init__(self, binary: str | None = None, words_per_minute: int | None = None):
        self.binary = binary or espeak_binary()
        if self.binary is None:
            raise SpeechUnavailable(f"espeak-ng is not installed: {INSTALL_HINT}")
        self.words_per_minute = words_per_minute

    @property
    def identity(self) -> str:
        return f"espeak-ng/{self.words_per_minute or 'default'}"

    def synthesise(self, text: str, language: str, voice: str | None) -> SpeechClip:
        return trim_silence(self._run(text, language, voice, ssml=False))

    def synthesise_many(self, texts: list[str], language: str, voice: str | None) -> list[SpeechClip]:
        """Several phrases in one espeak-ng process (starting one costs more than speaking a
        sentence): spoken with BATCH_BREAK_S of silence between them, then cut apart at those
        silences. Falls back to one process per phrase if the cut does not give one clip each."""
        if len(texts) < 2:
            return [self.synthesise(t, language, voice) for t in texts]
        pause = f'<break time="{int(BATCH_BREAK_S * 1000)}ms"/>'
        whole = self._run("<speak>" + pause.join(escape(t) for t in texts) + "</speak>", language, voice, ssml=True)
        pieces = split_at_silences(whole, BATCH_BREAK_S / 2)
        if len(pieces) != len(texts):
            return [self.synthesise(t, language, voice) for t in texts]
        return pieces

    def _run(self, text: str, language: str, voice: str | None, ssml: bool) -> SpeechClip:
        args = [self.binary, "-v", voice or VOICES.get(language, language)]
        if self.words_per_minute:
            args += ["-s", str(self.words_per_minute)]
        if ssml:
            args.append("-m")
        with tempfile.TemporaryDirectory(prefix="longvid-espeak-") as folder:
            out = Path(folder) / "phrase.wav"
            # The text goes on stdin, never through a shell; "--" would not stop a leading "-".
            try:
                done = subprocess.run([*args, "-w", str(out), "--stdin"], input=text.encode(), capture_output=True,
                                      timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise SpeechFailed(f"espeak-ng did not finish within {TIMEOUT_S:g} s ({len(text)} characters)") from None
            if done.returncode != 0 or not out.is_file():
                why = done.stderr.decode(errors="replace").strip().splitlines()
                if any("voice does not exist" in line for line in why):  # the user's --voice: input to fix
                    raise SpeechUnavailable(f"espeak-ng has no voice {args[2]!r}; `espeak-ng --voices` lists them")
                raise SpeechFailed(f"espeak-ng failed (exit {done.returncode}): {why[-1] if why else 'no output'}")
            return SpeechClip.from_wav(out.read_bytes())
