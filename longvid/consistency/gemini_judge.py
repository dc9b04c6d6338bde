"""The original design's vision check: Gemini looks at a segment's keyframes beside its
references and answers a typed verdict.

One `generateContent` call through google-genai per judged segment: the segment's keyframes
and its references (the scene's anchor, the previous segment's tail, the user's reference
images, a character's first appearance) go inline as small PNGs, each introduced by a text
part that says what it is; the answer is JSON constrained by `VisionAnswer` (the response
schema): scores in [0, 1] for character, scene, lighting/colour and motion, pass/fail,
reasons, and suggested prompt adjustments, which the pipeline folds into the prompt of the
segment's regeneration.

Every call is reserved in the render's cost ledger before it is made (tokens estimated from
the parts, at `PRICES_PER_MTOK_USD`) and charged after with the answer's token counts; a
refused or failed call is released or charged at its estimate, as the planner's are not
(a failed judge call may still have been billed). Any failure (a 429, a 5xx, a timeout, an
answer that is not the schema's JSON, the budget) raises `VisionUnavailable` with a
one-line reason that never holds the key; the caller falls back to the local scorers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..planning.gemini import DEFAULT_GEMINI_MODEL, PRICES_PER_MTOK_USD
from ..redaction import sanitize
from ..settings import GeminiSettings

# USD per million tokens (input, output; thinking bills as output): the planner's table
# (planning/gemini.py; unverified, from a third-party listing). A model missing from it is
# booked at DEFAULT_PRICE and the verdict's notes say so.
DEFAULT_PRICE = PRICES_PER_MTOK_USD[DEFAULT_GEMINI_MODEL]
LEDGER_PROVIDER = "gemini-judge"
IMAGE_SIDE = 384  # Gemini bills an image of <= 384 px a side as one 258-token tile
TOKENS_PER_IMAGE = 258
MAX_OUTPUT_TOKENS = 1024  # bounds the reservation; a verdict is ~150 tokens
DEFAULT_TIMEOUT_S = 30.0
PASS_SCORE = 0.6  # a score below this fails the verdict even when Gemini says "passed"

SYSTEM_INSTRUCTION = (
    "You check the visual consistency of one segment of a generated video. You get labelled "
    "frames: REFERENCE frames the segment must agree with, and SEGMENT keyframes in time order. "
    "Score 0..1 (1 = fully consistent): character (each character looks like its reference: "
    "species, shape, clothing, colours), scene (place, layout, objects), lighting (time of day, "
    "lighting, colour palette and tone), motion (smooth and plausible, no cuts, flicker or "
    "morphing). passed is false when any of them is clearly broken. reasons: short sentences "
    "naming what differs. adjustments: short phrases to add to the generation prompt that "
    "would fix it (empty when passed)."
)


class VisionAnswer(BaseModel):
    """The response schema: what Gemini answers for one segment."""

    model_config = ConfigDict(extra="ignore")

    character: float = Field(ge=0.0, le=1.0)
    scene: float = Field(ge=0.0, le=1.0)
    lighting: float = Field(ge=0.0, le=1.0)
    motion: float = Field(ge=0.0, le=1.0)
    passed: bool
    reasons: list[str] = Field(default_factory=list, max_length=8)
    adjustments: list[str] = Field(default_factory=list, max_length=8)

    @property
    def lowest(self) -> float:
        return min(self.character, self.scene, self.lighting, self.motion)


class VisionUnavailable(RuntimeError):
    """The vision judge could not give a verdict; the message is one line, key-free."""


@dataclass(frozen=True)
class VisionResult:
    answer: VisionAnswer
    passed: bool  # Gemini's passed, and no score under PASS_SCORE
    cost_usd: float
    prompt_tokens: int
    output_tokens: int
    model: str
    notes: str = ""


def png_thumbnail(frame: np.ndarray, side: int = IMAGE_SIDE) -> bytes:
    """An RGB frame as a PNG no larger than `side` on its long edge (one image tile)."""
    from PIL import Image

    image = Image.fromarray(np.asarray(frame, np.uint8))
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def estimate_cost_usd(images: int, text_chars: int, price: tuple[float, float]) -> float:
    """The most one call can cost: its images and text in, MAX_OUTPUT_TOKENS out."""
    tokens_in = images * TOKENS_PER_IMAGE + text_chars // 3 + 64
    return round(tokens_in * price[0] / 1e6 + MAX_OUTPUT_TOKENS * price[1] / 1e6, 6)


class GeminiVisionJudge:
    """Asks Gemini for a verdict on one segment. Holds no ledger of its own: `judge` takes
    the render's (CostLedger-like: reserve, charge, release) and books the call there."""

    def __init__(self, settings: GeminiSettings, model: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 http_attempts: int = 1, prices: dict[str, tuple[float, float]] | None = None) -> None:
        key = settings.api_key.get_secret_value().strip() if settings.api_key is not None else ""
        if not key:
            raise ValueError("the Gemini judge needs an API key: set GOOGLE_API_KEY or GEMINI_API_KEY")
        self._api_key = key
        self.model = (model or settings.model or DEFAULT_GEMINI_MODEL).removeprefix("models/")
        self.base_url = settings.base_url
        self.timeout_s = timeout_s
        self.http_attempts = max(1, http_attempts)  # the judge is optional: fall back rather than wait
        prices = PRICES_PER_MTOK_USD if prices is None else prices
        self.price = prices.get(self.model, DEFAULT_PRICE)
        self.price_note = "" if self.model in prices else f"no published price for {self.model}: booked at {DEFAULT_GEMINI_MODEL} rates"
        self.calls = 0

    def __repr__(self) -> str:  # never shows the key
        return f"GeminiVisionJudge(model={self.model!r})"

    def _client(self):
        from google import genai
        from google.genai import types

        options: dict[str, Any] = {
            "timeout": int(self.timeout_s * 1000),  # milliseconds
            "retry_options": types.HttpRetryOptions(attempts=self.http_attempts),
        }
        if self.base_url:
            options["base_url"] = self.base_url
        return genai.Client(vertexai=False, api_key=self._api_key, http_options=types.HttpOptions(**options))

    def contents(self, keyframes: Sequence[np.ndarray], references: Sequence[tuple[str, np.ndarray]], prompt: str) -> list:
        from google.genai import types

        parts: list[Any] = [f"The segment was generated from this prompt: {prompt}"]
        for label, image in references:
            parts += [f"REFERENCE ({label}):", types.Part.from_bytes(data=png_thumbnail(image), mime_type="image/png")]
        for k, frame in enumerate(keyframes):
            parts += [f"SEGMENT keyframe {k + 1} of {len(keyframes)}:", types.Part.from_bytes(data=png_thumbnail(frame), mime_type="image/png")]
        parts.append("Answer with the JSON verdict.")
        return parts

    def judge(self, keyframes: Sequence[np.ndarray], references: Sequence[tuple[str, np.ndarray]], prompt: str,
              ledger: Any, entry_key: str, segment: int, on_reserved: Any = None) -> VisionResult:
        """One verdict, booked in `ledger` under `entry_key`; VisionUnavailable on any failure.
        `on_reserved()` runs after the reservation and before the call (the render writes its
        ledger there, so a crash during the call leaves the call on the books)."""
        from google.genai import errors, types

        from ..providers.ledger import BudgetExceeded

        images = len(keyframes) + len(references)
        text_chars = len(SYSTEM_INSTRUCTION) + len(prompt) + 40 * images
        estimate = estimate_cost_usd(images, text_chars, self.price)
        if ledger is not None:
            try:
                ledger.reserve(entry_key, segment, LEDGER_PROVIDER, estimate)
            except BudgetExceeded as exc:
                raise VisionUnavailable(f"not asked: the budget cannot cover the call ({exc})") from None
            if on_reserved is not None:
                on_reserved()
        config = types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=VisionAnswer, system_instruction=SYSTEM_INSTRUCTION,
            temperature=0.0, max_output_tokens=MAX_OUTPUT_TOKENS,
        )
        self.calls += 1
        try:
            with self._client() as client:
                response = client.models.generate_content(model=self.model, contents=self.contents(keyframes, references, prompt),
                                                          config=config)
        except errors.APIError as exc:
            if ledger is not None:  # an error answer is not billed
                ledger.release(entry_key, note=f"the Gemini judge answered {exc.code}")
            detail = sanitize(exc.message or exc.status or "", [self._api_key], 160)
            raise VisionUnavailable(f"the Gemini judge answered {exc.code} {exc.status or ''}: {detail}".strip()) from None
        except Exception as exc:  # transport: timeouts, refused connections
            if ledger is not None:  # the request may have reached the model: count it
                ledger.charge(entry_key, None, note=f"no answer ({exc.__class__.__name__}); counted at the estimate")
            raise VisionUnavailable(f"the Gemini judge could not be reached ({exc.__class__.__name__})") from None
        usage = response.usage_metadata
        prompt_tokens = (usage.prompt_token_count or 0) if usage else 0
        output_tokens = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
        cost = round(prompt_tokens * self.price[0] / 1e6 + output_tokens * self.price[1] / 1e6, 6) if usage else None
        if ledger is not None:
            ledger.charge(entry_key, cost, note=f"{self.model}: {prompt_tokens} tokens in, {output_tokens} out")
        answer = self._parse(response)
        passed = answer.passed and answer.lowest >= PASS_SCORE
        return VisionResult(answer=answer, passed=passed, cost_usd=cost if cost is not None else estimate,
                            prompt_tokens=prompt_tokens, output_tokens=output_tokens, model=self.model, notes=self.price_note)

    @staticmethod
    def _parse(response) -> VisionAnswer:
        if isinstance(response.parsed, VisionAnswer):
            return response.parsed
        try:
            text = response.text
        except (ValueError, AttributeError):
            text = None
        if not text:
            raise VisionUnavailable("the Gemini judge's answer held no verdict")
        try:
            return VisionAnswer.model_validate_json(text.strip().removeprefix("```json").removesuffix("```"))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise VisionUnavailable(f"the Gemini judge's answer is not a verdict ({first.get('type')} at "
                                    f"{'.'.join(map(str, first.get('loc', ()))) or 'top'})") from None


def vision_summary(result: VisionResult) -> dict[str, Any]:
    """What the attempt record keeps of a verdict."""
    a = result.answer
    return {"model": result.model, "character": a.character, "scene": a.scene, "lighting": a.lighting, "motion": a.motion,
            "passed": result.passed, "reasons": list(a.reasons), "adjustments": list(a.adjustments), "cost_usd": result.cost_usd}

