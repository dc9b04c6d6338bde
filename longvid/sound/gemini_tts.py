"""Gemini speech (TTS) through google-genai: one generate_content call per phrase with
response_modalities AUDIO; the answer's inlineData is raw 16-bit little-endian mono PCM
(`audio/L16;codec=pcm;rate=24000`), base64 on the wire.

Retries (429, 5xx, timeouts) are the SDK's own HttpRetryOptions, as the planner's are. The
cost of each phrase comes from the answer's usage tokens at PRICES_PER_MTOK_USD; the speak
step books it in the run's ledger. The key comes from Settings only.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..transport_errors import is_transport_error
from ..redaction import sanitize
from ..settings import GeminiSettings
from .speech import SpeechClip, SpeechFailed, SpeechUnavailable, trim_silence

DEFAULT_VOICE = "Kore"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_HTTP_ATTEMPTS = 3  # the SDK's retries, first call included
# USD per million tokens (text in, audio out): Google's published Nov 2026 prices for the
# Flash TTS models (PROVIDERS.md). A model not listed is booked at the Flash price.
PRICES_PER_MTOK_USD: dict[str, tuple[float, float]] = {
    "gemini-3.8-flash-tts": (0.50, 6.00),
}
FALLBACK_PRICE = (0.50, 6.00)
# BCP-47 language codes for the speech config, by narration language (phrases.language_of).
LANGUAGE_CODES = {"en": "en-US", "zh": "cmn-CN", "ja": "ja-JP", "ko": "ko-KR"}
_RATE = re.compile(r"rate=(\d+)")


class GeminiSpeech:
    name = "gemini"

    def __init__(self, settings: GeminiSettings, model: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 http_attempts: int = DEFAULT_HTTP_ATTEMPTS, retry_initial_delay_s: float = 1.0,
                 retry_max_delay_s: float = 8.0):
        key = settings.api_key.get_secret_value().strip() if settings.api_key is not None else ""
        if not key:
            raise SpeechUnavailable("Gemini speech needs an API key: set GOOGLE_API_KEY or GEMINI_API_KEY (or use --speech espeak)")
        self._api_key = key
        self.model = model.removeprefix("models/")
        self.base_url = settings.base_url
        self.timeout_s = timeout_s
        self.http_attempts = max(1, int(http_attempts))
        self.retry_initial_delay_s = retry_initial_delay_s
        self.retry_max_delay_s = retry_max_delay_s
        self.requests = 0

    def __repr__(self) -> str:  # never shows the key
        return f"GeminiSpeech(model={self.model!r}, base_url={self.base_url!r})"

    @property
    def identity(self) -> str:
        return f"gemini/{self.model}"

    def _client(self):
        from google import genai
        from google.genai import types

        options: dict[str, Any] = {
            "timeout": int(self.timeout_s * 1000),  # milliseconds
            "retry_options": types.HttpRetryOptions(
                attempts=self.http_attempts, initial_delay=self.retry_initial_delay_s,
                max_delay=self.retry_max_delay_s, jitter=min(1.0, self.retry_initial_delay_s),
            ),
        }
        if self.base_url:
            options["base_url"] = self.base_url
        return genai.Client(vertexai=False, api_key=self._api_key, http_options=types.HttpOptions(**options))

    def synthesise(self, text: str, language: str, voice: str | None) -> SpeechClip:
        from google.genai import errors, types

        config = types.GenerateContentConfig(
            response_modalities=["AUDIO"],
            speech_config=types.SpeechConfig(
                voice_config=types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=voice or DEFAULT_VOICE)),
                language_code=LANGUAGE_CODES.get(language, language),
            ),
        )
        self.requests += 1
        try:
            with self._client() as client:
                response = client.models.generate_content(model=self.model, contents=f"Say in a calm narrator's voice: {text}",
                                                          config=config)
        except errors.APIError as exc:
            detail = sanitize(exc.message or str(exc.details), [self._api_key], 300)
            if exc.code in (400, 401, 403, 404):  # the key, the model or the voice: the user's to fix
                raise SpeechUnavailable(f"Gemini speech ({self.model}) refused the request ({exc.code} {exc.status or ''}): "
                                        f"{detail}; check the key, LONGVID_TTS_MODEL and --voice") from None
            raise SpeechFailed(f"Gemini speech ({self.model}) answered {exc.code} {exc.status or ''}: {detail}"
                               f" (after {self.http_attempts} attempt(s))") from None
        except Exception as exc:
            if not is_transport_error(exc):
                raise
            raise SpeechFailed(f"Gemini speech could not be reached ({type(exc).__name__} after {self.http_attempts} attempt(s))") from None
        pcm, rate = _audio_of(response)
        return trim_silence(SpeechClip(pcm, rate, _cost(self.model, response.usage_metadata)))


def _audio_of(response) -> tuple[np.ndarray, int]:
    for candidate in response.candidates or []:
        for part in (candidate.content.parts if candidate.content else None) or []:
            blob = part.inline_data
            if blob is not None and blob.data and (blob.mime_type or "").startswith("audio/"):
                mime = blob.mime_type.lower()
                if "l16" not in mime and "pcm" not in mime:
                    raise SpeechFailed(f"Gemini speech answered {blob.mime_type}, not raw 16-bit PCM")
                rate = int(m.group(1)) if (m := _RATE.search(mime)) else 24000
                data = blob.data[: len(blob.data) // 2 * 2]
                return np.frombuffer(data, dtype="<i2").astype(np.int16), rate
    reason = response.candidates[0].finish_reason if response.candidates else "no candidates"
    raise SpeechFailed(f"Gemini speech answered without audio ({reason})")


# Audio tokens per second of speech (Gemini counts 25 a second of audio) and text
# tokens per character (about four characters a token): for estimates before anything is paid.
AUDIO_TOKENS_PER_S = 25
TEXT_CHARS_PER_TOKEN = 4


def estimated_phrase_usd(model: str, text: str, seconds: float) -> float:
    """What saying `text` in about `seconds` should cost, before it is asked (the booked cost
    comes from the answer's usage tokens)."""
    price_in, price_out = PRICES_PER_MTOK_USD.get(model, FALLBACK_PRICE)
    return round(len(text) / TEXT_CHARS_PER_TOKEN * price_in / 1e6 + seconds * AUDIO_TOKENS_PER_S * price_out / 1e6, 8)


def _cost(model: str, usage) -> float:
    if usage is None:
        return 0.0
    price_in, price_out = PRICES_PER_MTOK_USD.get(model, FALLBACK_PRICE)
    return round((usage.prompt_token_count or 0) * price_in / 1e6 + (usage.candidates_token_count or 0) * price_out / 1e6, 8)
