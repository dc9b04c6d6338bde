"""A planner that asks Gemini (through google-genai) for the storyboard.

Gemini answers in JSON constrained by `StoryPlan` (the response schema); the answer is
validated against longvid's rules (scene count, enums, hex palettes, characters) and
turned into a `Storyboard`. What can be repaired is (colour names to hex, lists and text
cut to their limits, unusable scenes dropped when enough usable ones remain) and the
planner's warnings say so; an answer that cannot be used is asked for again with the
validation error in the prompt, a bounded number of times; after that, or when the
API fails (network, 429, 5xx, unknown model…), the offline planner makes the plan and a
warning says why. A rejected key is the user's to fix: it raises `InputError`.

The response schema is in gemini_schema, the prompt building in gemini_prompts and the
checking and repair of answers in gemini_repair; their public names are re-exported here.

No message this module produces (warnings, exceptions) ever contains the API key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from ..errors import InputError, RenderError, describe_validation_error
from ..transport_errors import is_transport_error
from ..redaction import sanitize
from ..settings import GEMINI_DEFAULT_MODEL, GeminiSettings
from ..spec import RenderSpec, Storyboard
from .gemini_prompts import (
    MAX_IMAGE_SIDE,
    PROMPT_BEGIN,
    PROMPT_END,
    REPHRASE_INSTRUCTION,
    SYSTEM_INSTRUCTION,
    build_prompt,
    build_rephrase_prompt,
    image_part,
)
from .gemini_repair import (
    MAX_PALETTE,
    MAX_SCENE_CHARACTERS,
    MIN_PALETTE,
    PlanRejected,
    strip_fences,
    to_storyboard,
)
from .gemini_schema import PlanCharacter, PlanScene, Rephrased, StoryPlan, scene_bounds
from .offline import MAX_SCENES, OfflinePlanner
from .result import PlanResult as BasePlanResult

__all__ = [  # the planner, and what its helper modules define, importable from here
    "DEFAULT_GEMINI_MODEL",
    "MAX_IMAGE_SIDE",
    "MAX_PALETTE",
    "MAX_SCENE_CHARACTERS",
    "MIN_PALETTE",
    "MODEL_ENV",
    "PRICES_PER_MTOK_USD",
    "PROMPT_BEGIN",
    "PROMPT_END",
    "REPHRASE_INSTRUCTION",
    "SYSTEM_INSTRUCTION",
    "GeminiPlanner",
    "GeminiUsage",
    "PlanCharacter",
    "PlanRejected",
    "PlanResult",
    "PlanScene",
    "Rephrased",
    "StoryPlan",
    "build_prompt",
    "build_rephrase_prompt",
    "gemini_available",
    "scene_bounds",
    "to_storyboard",
]

log = logging.getLogger(__name__)

# Gemini 3.8 Flash: the SDK (google-genai 3.6) documents it as the current, most capable
# Flash model and uses it in its own examples. 2.0 Flash is shut down and 2.5 Flash retires
# 2026-12-01 (PROVIDERS.md). Model ids move often: override with LONGVID_GEMINI_MODEL
# (GeminiSettings.model); "gemini-flash-latest" follows the newest Flash automatically.
DEFAULT_GEMINI_MODEL = GEMINI_DEFAULT_MODEL
MODEL_ENV = "LONGVID_GEMINI_MODEL"

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_HTTP_ATTEMPTS = 3  # the SDK's own retries (429, 5xx, timeouts), first call included
DEFAULT_VALIDATION_RETRIES = 2  # new requests after a malformed or out-of-bounds answer
# Google's guidance for Gemini 3 models is to leave temperature at its default of 1.0
# (lower values can cause looping or degraded output).
DEFAULT_TEMPERATURE = 1.0

# USD per million tokens (input, output; thinking bills as output). Unverified: taken from a
# third-party gateway's listing, not Google's price page. Unknown models cost None.
PRICES_PER_MTOK_USD: dict[str, tuple[float, float]] = {
    "gemini-3.8-flash": (0.75, 3.75),
}

_AUTH_MARKERS = ("API_KEY_INVALID", "API key not valid", "API_KEY_SERVICE_BLOCKED", "UNAUTHENTICATED")


# -- results ------------------------------------------------------------------------------


@dataclass
class GeminiUsage:
    """Token counts over every request one plan() made (retries included)."""

    model: str = ""
    model_version: str = ""
    requests: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0  # candidatesTokenCount
    thoughts_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0

    def add(self, metadata: Any) -> None:
        if metadata is None:
            return
        self.prompt_tokens += metadata.prompt_token_count or 0
        self.output_tokens += metadata.candidates_token_count or 0
        self.thoughts_tokens += metadata.thoughts_token_count or 0
        self.cached_tokens += metadata.cached_content_token_count or 0
        self.total_tokens += metadata.total_token_count or 0

    def cost_usd(self, input_per_mtok: float, output_per_mtok: float) -> float:
        """Cost at the given prices (USD per million tokens); thinking bills as output."""
        billed_out = self.output_tokens + self.thoughts_tokens
        return round(self.prompt_tokens * input_per_mtok / 1e6 + billed_out * output_per_mtok / 1e6, 6)

    def estimated_cost_usd(self, prices: dict[str, tuple[float, float]] | None = None) -> float | None:
        """Cost from a price table (PRICES_PER_MTOK_USD by default); None if the model is not in it."""
        price = (PRICES_PER_MTOK_USD if prices is None else prices).get(self.model)
        return None if price is None else self.cost_usd(*price)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PlanResult(BasePlanResult):
    """A plan with what Gemini's calls cost and whether the offline planner stood in."""

    usage: GeminiUsage = field(default_factory=GeminiUsage)
    fell_back: bool = False


class _ApiFailure(Exception):
    """The API call failed for a reason the offline planner can cover."""


# -- helpers ------------------------------------------------------------------------------


def gemini_available(settings: GeminiSettings) -> bool:
    """True when a Gemini key is configured (what `--planner auto` should look at)."""
    return settings.api_key is not None


# -- the planner --------------------------------------------------------------------------


class GeminiPlanner:
    """Storyboards from Gemini, with the offline planner as the safety net.

    `plan(spec, max_scenes)` has the OfflinePlanner's signature; after each call,
    `warnings` says what went wrong or what was repaired in Gemini's plan (empty when it was
    used as it came) and `usage` holds the token counts. `plan_with_report` returns both instead (use it when one planner
    serves several renders at once).
    """

    name = "gemini"

    def __init__(
        self,
        settings: GeminiSettings,
        *,
        api_version: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        http_attempts: int = DEFAULT_HTTP_ATTEMPTS,
        retry_initial_delay_s: float = 1.0,
        retry_max_delay_s: float = 8.0,
        validation_retries: int = DEFAULT_VALIDATION_RETRIES,
        temperature: float | None = DEFAULT_TEMPERATURE,
        thinking_level: str | None = None,
        fallback: OfflinePlanner | None = None,
        allow_fallback: bool = True,
    ):
        key = settings.api_key.get_secret_value().strip() if settings.api_key is not None else ""
        if not key:
            raise InputError(
                "the Gemini planner needs an API key: set GOOGLE_API_KEY or GEMINI_API_KEY "
                "(or use the offline planner)"
            )
        self._api_key, self.key_source = key, settings.key_source or "the Gemini API key"
        self.model = (settings.model or DEFAULT_GEMINI_MODEL).removeprefix("models/")
        self.base_url = settings.base_url  # None: the SDK's default endpoint
        self.api_version = api_version
        self.timeout_s = timeout_s
        self.http_attempts = max(1, int(http_attempts))
        self.retry_initial_delay_s = retry_initial_delay_s
        self.retry_max_delay_s = retry_max_delay_s
        self.validation_retries = max(0, int(validation_retries))
        self.temperature = temperature
        self.thinking_level = thinking_level  # e.g. "LOW" for Gemini 3 models; None: the model's default
        self.fallback = fallback or OfflinePlanner()
        self.allow_fallback = allow_fallback
        self.warnings: list[str] = []
        self.usage = GeminiUsage(model=self.model)

    def __repr__(self) -> str:  # never shows the key
        return f"GeminiPlanner(model={self.model!r}, base_url={self.base_url!r})"

    # -- public --------------------------------------------------------------------------

    def plan(self, spec: RenderSpec, max_scenes: int = MAX_SCENES) -> Storyboard:
        result = self.plan_with_report(spec, max_scenes)
        self.warnings, self.usage = result.warnings, result.usage
        return result.storyboard

    def plan_with_report(self, spec: RenderSpec, max_scenes: int = MAX_SCENES) -> PlanResult:
        usage = GeminiUsage(model=self.model)
        try:
            repairs: list[str] = []
            storyboard = self._plan_with_gemini(spec, max_scenes, usage, repairs)
            warnings = [f"Gemini planner ({self.model}): repaired its plan: {sanitize(r, [self._api_key])}" for r in repairs]
            return PlanResult(storyboard=storyboard, warnings=warnings, usage=usage)
        except (PlanRejected, _ApiFailure) as exc:
            reason = sanitize(exc, [self._api_key], 1000)  # never cut: its parts are cut already
        if not self.allow_fallback:
            raise RenderError(f"the Gemini planner failed: {reason}")
        warning = f"Gemini planner ({self.model}) failed, used the offline planner instead: {reason}"
        log.info(warning)  # the caller records it (manifest warnings)
        storyboard = self.fallback.plan(spec, max_scenes=max_scenes)
        return PlanResult(storyboard=storyboard, warnings=[warning], usage=usage, fell_back=True)

    def rephrase(self, text: str, reason: str) -> str:
        """A segment prompt the video provider refused for safety, rewritten once by Gemini
        to keep the picture without what was refused; the offline rewording if Gemini fails."""
        from google.genai import types

        reason = sanitize(reason, [self._api_key], 300)
        try:
            with self._client() as client:
                config = types.GenerateContentConfig(
                    response_mime_type="application/json",
                    response_schema=Rephrased,
                    system_instruction=REPHRASE_INSTRUCTION,
                    temperature=self.temperature,
                )
                response = self._call(client, [build_rephrase_prompt(text, reason)], config)
            if isinstance(response.parsed, Rephrased):
                return response.parsed.prompt
            return Rephrased.model_validate_json(strip_fences(response.text or "")).prompt
        except (_ApiFailure, ValidationError, ValueError) as exc:
            log.info("Gemini could not rephrase a refused prompt (%s); used the offline rewording", exc.__class__.__name__)
            return self.fallback.rephrase(text, reason)

    # -- internals -----------------------------------------------------------------------

    def _client(self):
        from google import genai
        from google.genai import types

        options: dict[str, Any] = {
            "timeout": int(self.timeout_s * 1000),  # milliseconds
            "retry_options": types.HttpRetryOptions(
                attempts=self.http_attempts,
                initial_delay=self.retry_initial_delay_s,
                max_delay=self.retry_max_delay_s,
                jitter=min(1.0, self.retry_initial_delay_s),
            ),
        }
        if self.base_url:
            options["base_url"] = self.base_url
        if self.api_version:
            options["api_version"] = self.api_version
        return genai.Client(vertexai=False, api_key=self._api_key, http_options=types.HttpOptions(**options))

    def _plan_with_gemini(self, spec: RenderSpec, max_scenes: int, usage: GeminiUsage, repairs: list[str]) -> Storyboard:
        """Gemini's storyboard, asked again (with the reason) while an answer is unusable;
        what was repaired in the answer used is appended to `repairs`."""
        from google.genai import types

        try:
            images = [image_part(p) for p in spec.reference_images]
        except OSError as exc:
            raise InputError(f"cannot read a reference image for the Gemini planner: {exc.__class__.__name__}") from None
        feedback: list[str] = []
        with self._client() as client:
            for _attempt in range(self.validation_retries + 1):
                config = types.GenerateContentConfig(
                    response_mime_type="application/json",
                    response_schema=StoryPlan,
                    system_instruction=SYSTEM_INSTRUCTION,
                    temperature=self.temperature,
                    seed=spec.seed,
                    thinking_config=(
                        types.ThinkingConfig(thinking_level=self.thinking_level.upper()) if self.thinking_level else None
                    ),
                )
                contents = [*images, build_prompt(spec, max_scenes, feedback)]
                response = self._call(client, contents, config)
                usage.requests += 1
                usage.add(response.usage_metadata)
                usage.model_version = response.model_version or usage.model_version
                try:
                    notes: list[str] = []
                    storyboard = to_storyboard(self._parse(response), spec, max_scenes, self.name, notes)
                    repairs.extend(notes)
                    return storyboard
                except PlanRejected as exc:
                    problem = sanitize(exc, [self._api_key], 600)
                    log.info("Gemini plan rejected (attempt %d): %s", len(feedback) + 1, problem)
                    feedback.append(problem)
        tries = len(feedback)
        raise PlanRejected(f"{tries} answer{'s' if tries != 1 else ''} failed validation, the last: {feedback[-1]}")

    def _call(self, client, contents, config):
        from google.genai import errors

        try:
            return client.models.generate_content(model=self.model, contents=contents, config=config)
        except errors.APIError as exc:
            code = exc.code or 0
            text = f"{exc.status or ''} {exc.message or ''} {json.dumps(exc.details, default=str)[:2000]}"
            if code in (401, 403) or (code == 400 and any(m in text for m in _AUTH_MARKERS)):
                raise InputError(
                    f"{self.key_source} was rejected by the Gemini API ({code} {exc.status or ''}".rstrip()
                    + "); check the key, or use the offline planner"
                ) from None
            detail = sanitize(exc.message or str(exc.details), [self._api_key], 300)
            hint = f"; is the model id right? set {MODEL_ENV} to change it" if code == 404 else ""
            raise _ApiFailure(f"the Gemini API answered {code} {exc.status or ''}: {detail}{hint}") from None
        except Exception as exc:
            if not is_transport_error(exc):
                raise
            kind = "timed out" if "Timeout" in type(exc).__name__ else "could not be reached"
            raise _ApiFailure(
                f"the Gemini API {kind} ({type(exc).__name__} after {self.http_attempts} attempt(s))"
            ) from None

    @staticmethod
    def _parse(response) -> StoryPlan:
        if isinstance(response.parsed, StoryPlan):
            return response.parsed
        text = None
        try:
            text = response.text
        except (ValueError, AttributeError):
            pass
        if not text:
            reason = "no answer"
            if response.candidates:
                reason = f"finish reason {response.candidates[0].finish_reason}"
            elif response.prompt_feedback is not None and response.prompt_feedback.block_reason:
                reason = f"prompt blocked ({response.prompt_feedback.block_reason})"
            raise PlanRejected(f"the answer held no JSON ({reason})")
        try:
            return StoryPlan.model_validate_json(strip_fences(text))
        except ValidationError as exc:
            if any(e.get("type") == "json_invalid" for e in exc.errors()):
                raise PlanRejected(f"the answer is not valid JSON ({exc.errors()[0].get('msg', 'invalid')})") from None
            raise PlanRejected(describe_validation_error(exc)) from None
