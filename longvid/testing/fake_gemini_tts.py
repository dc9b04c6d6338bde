"""Gemini speech (TTS) answers for the fake Gemini API (fake_gemini.py serves them).

A request whose generationConfig asks for `responseModalities: ["AUDIO"]` is answered the
way PROVIDERS.md describes: `candidates[0].content.parts[0].inlineData` with mimeType
`audio/L16;codec=pcm;rate=24000` and base64 raw 16-bit little-endian mono PCM. The "voice"
is a tone, SECONDS_PER_CHAR long per character of the text, after LEAD_SILENCE_S of
silence (real TTS audio starts with a little silence too); usage counts 25 audio tokens
per second, as Gemini's audio does. Faults (429, 500, …) are fake_gemini's.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

RATE = 24000
MIME = f"audio/L16;codec=pcm;rate={RATE}"
SECONDS_PER_CHAR = 0.05
LEAD_SILENCE_S = 0.12
AUDIO_TOKENS_PER_S = 25


def _get(d: dict, *names: str) -> Any:
    for name in names:
        if name in d:
            return d[name]
    return None


def wants_audio(generation_config: dict[str, Any]) -> bool:
    modalities = _get(generation_config, "responseModalities", "response_modalities") or []
    return any(str(m).upper() == "AUDIO" for m in modalities)


def voice_name(generation_config: dict[str, Any]) -> str | None:
    speech = _get(generation_config, "speechConfig", "speech_config") or {}
    voice = _get(speech, "voiceConfig", "voice_config") or {}
    prebuilt = _get(voice, "prebuiltVoiceConfig", "prebuilt_voice_config") or {}
    return _get(prebuilt, "voiceName", "voice_name")


def speech_pcm(text: str) -> np.ndarray:
    """The fake's 'speech' for `text`: silence, then a 220 Hz tone as long as the text."""
    seconds = max(0.2, len(text) * SECONDS_PER_CHAR)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
    return np.concatenate([np.zeros(int(LEAD_SILENCE_S * RATE), np.int16), tone])


def audio_answer(prompt_text: str, model_version: str) -> dict[str, Any]:
    pcm = speech_pcm(prompt_text)
    prompt_tokens = max(1, len(prompt_text) // 4)
    audio_tokens = int(len(pcm) / RATE * AUDIO_TOKENS_PER_S)
    return {
        "candidates": [{
            "content": {"role": "model", "parts": [{"inlineData": {"mimeType": MIME,
                                                                   "data": base64.b64encode(pcm.astype("<i2").tobytes()).decode()}}]},
            "finishReason": "STOP", "index": 0,
        }],
        "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": audio_tokens,
                          "totalTokenCount": prompt_tokens + audio_tokens},
        "modelVersion": model_version,
    }
