"""A planner that asks Gemini (through google-genai) for the storyboard.

Gemini answers in JSON constrained by `StoryPlan` (the response schema); the answer is
validated against longvid's rules (scene count, enums, hex palettes, characters) and
turned into a `Storyboard`. What can be repaired is (colour names to hex, lists and text
cut to their limits, unusable scenes dropped when enough usable ones remain) and the
planner's warnings say so; an answer that cannot be used is asked for again with the
validation error in the prompt, a bounded number of times; after that, or when the
API fails (network, 429, 5xx, unknown model…), the offline planner makes the plan and a
warning says why. A rejected key is the user's to fix: it raises `InputError`.

No message this module produces (warnings, exceptions) ever contains the API key.
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from ..errors import InputError, RenderError, describe_validation_error
from ..redaction import sanitize
from ..settings import GEMINI_DEFAULT_MODEL, GeminiSettings
from ..spec import CameraMove, Character, Lighting, RenderSpec, Scene, Storyboard, Transition
from .offline import MAX_SCENES, MIN_SCENES, OfflinePlanner

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
MAX_IMAGE_SIDE = 1024  # reference images are downscaled to this before upload

# USD per million tokens (input, output; thinking bills as output). Unverified: taken from a
# third-party gateway's listing, not Google's price page. Unknown models cost None.
PRICES_PER_MTOK_USD: dict[str, tuple[float, float]] = {
    "gemini-3.8-flash": (0.75, 3.75),
}

# The prompt text carries the user's prompt between these markers (fake_gemini reads them).
PROMPT_BEGIN = "<<<PROMPT"
PROMPT_END = "PROMPT>>>"

_AUTH_MARKERS = ("API_KEY_INVALID", "API key not valid", "API_KEY_SERVICE_BLOCKED", "UNAUTHENTICATED")

SYSTEM_INSTRUCTION = """\
You are the storyboard planner of a text-to-video pipeline. You turn one video prompt into
a short sequence of scenes. Each scene is rendered separately by a video model that sees
only that scene's fields, so:
- every scene description restates the setting and what each character looks like
  (clothing, colours, build) in concrete visual terms, one continuous shot, present tense;
- characters keep exactly the same name and appearance in every scene; list each
  character once in `characters` and refer to it by that name in the scenes;
- the scenes follow one story arc (establish, develop, climax, resolve);
- `duration_s` is the scene's share of the video in seconds;
- `color_palette` holds 2 to 6 colours as #rrggbb hex strings that fit the scene;
- `camera_movement`, `lighting` and `transition` use only the allowed values;
  `transition` is how the scene hands over to the next one.
If reference images are attached, they show the characters and the look to keep.
Write the title and descriptions in the language of the prompt.
Answer with JSON that follows the response schema exactly, and nothing else."""


REPHRASE_INSTRUCTION = """\
You rewrite one shot description of a text-to-video pipeline that the video model's safety
filter refused. Keep the same subject, setting, characters, colours, camera and mood; remove
or soften only what a safety filter would refuse (violence, gore, weapons, nudity, real
people, brands). Write in the language of the original. Answer with JSON that follows the
response schema exactly, and nothing else."""


class Rephrased(BaseModel):
    prompt: Annotated[str, Field(min_length=1, max_length=4000)]


def build_rephrase_prompt(text: str, reason: str) -> str:
    return f"The video model refused this shot ({reason}). Rewrite it.\n{PROMPT_BEGIN}\n{text}\n{PROMPT_END}"


# -- the response schema ------------------------------------------------------------------
#
# Kept to what the Gemini API accepts as a responseSchema (google-genai's process_schema /
# types.Schema): objects, arrays with min/max items, strings, numbers with `minimum`, string
# enums (inlined from $defs by the SDK). No exclusiveMinimum, no pattern, no
# additionalProperties, no defaults: every field is required so the model fills them all.
# Length limits and hex colours are checked (or clamped) after parsing instead.


def _enum_token(value: Any) -> Any:
    """'Pan Left' / 'pan-left' / 'PAN_LEFT' -> 'pan_left'; anything else unchanged."""
    if isinstance(value, str):
        return re.sub(r"[\s\-]+", "_", value.strip()).lower()
    return value


class PlanCharacter(BaseModel):
    name: str = Field(description="Short name, used verbatim in every scene that shows the character.")
    description: str = Field(description="Stable visual description: species or person, build, clothing, colours.")


class PlanScene(BaseModel):
    description: str = Field(description="What the shot shows and what happens, restating setting and characters.")
    duration_s: float = Field(ge=1, description="Length of the scene in seconds.")
    visual_style: str = Field(description="Visual style, e.g. cinematic, anime, watercolor.")
    characters: list[str] = Field(description="Names (from the top-level characters) visible in this scene.")
    camera_movement: CameraMove
    lighting: Lighting
    # Bounded in the schema (for Gemini) but not on parsing: to_storyboard cuts a longer
    # palette and drops a scene with too few usable colours, rather than refuse the plan.
    color_palette: list[str] = Field(
        description="2 to 6 colours as #rrggbb hex strings.", json_schema_extra={"minItems": 2, "maxItems": 6}
    )
    transition: Transition = Field(description="How this scene hands over to the next one.")

    @field_validator("camera_movement", "lighting", "transition", mode="before")
    @classmethod
    def _normalise_enums(cls, value: Any) -> Any:
        return _enum_token(value)


class StoryPlan(BaseModel):
    """The JSON Gemini is asked for (passed as `response_schema`)."""

    title: str = Field(description="A short title for the video.")
    style: str = Field(description="The overall visual style.")
    characters: list[PlanCharacter] = Field(description="Every recurring character, once each.")
    # The count is bounded in the schema (for Gemini) but checked by to_storyboard, which
    # knows this render's limit and says it in the retry prompt.
    scenes: list[PlanScene] = Field(
        description="The scenes in order.", json_schema_extra={"minItems": 1, "maxItems": MAX_SCENES}
    )


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
class PlanResult:
    storyboard: Storyboard
    warnings: list[str] = field(default_factory=list)
    usage: GeminiUsage = field(default_factory=GeminiUsage)
    fell_back: bool = False


class PlanRejected(ValueError):
    """Gemini's answer could not be used; the message is fed back to it on retry."""


class _ApiFailure(Exception):
    """The API call failed for a reason the offline planner can cover."""


# -- helpers ------------------------------------------------------------------------------


def gemini_available(settings: GeminiSettings) -> bool:
    """True when a Gemini key is configured (what `--planner auto` should look at)."""
    return settings.api_key is not None


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_HEX6 = re.compile(r"^#?([0-9a-fA-F]{6})$")
_HEX3 = re.compile(r"^#?([0-9a-fA-F]{3})$")


def _hex_colour(value: str) -> str | None:
    value = value.strip()
    if m := _HEX6.match(value):
        return "#" + m.group(1).lower()
    if m := _HEX3.match(value):
        return "#" + "".join(c * 2 for c in m.group(1)).lower()
    return None


def _strip_fences(text: str) -> str:
    text = text.strip()
    m = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.DOTALL)
    return m.group(1) if m else text


def scene_bounds(max_scenes: int) -> tuple[int, int]:
    """The allowed scene count: 3..min(8, max_scenes), narrowed when few segments fit."""
    hi = max(1, min(MAX_SCENES, max_scenes))
    return min(MIN_SCENES, hi), hi


def _image_part(path: Path):
    """A reference image as inline data: PNG/JPEG/WebP kept as they are when small,
    anything else (or anything large) re-encoded as a PNG at most MAX_IMAGE_SIDE wide."""
    from google.genai import types
    from PIL import Image

    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        fmt = (image.format or "").upper()
        mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}.get(fmt)
        if mime and max(image.size) <= MAX_IMAGE_SIDE:
            return types.Part.from_bytes(data=data, mime_type=mime)
        image = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
        image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
        out = io.BytesIO()
        image.save(out, format="PNG")
    return types.Part.from_bytes(data=out.getvalue(), mime_type="image/png")


def build_prompt(spec: RenderSpec, max_scenes: int, feedback: list[str] | None = None) -> str:
    lo, hi = scene_bounds(max_scenes)
    count = f"exactly {hi}" if lo == hi else f"between {lo} and {hi}"
    lines = [
        "Plan a storyboard for this video prompt:",
        PROMPT_BEGIN,
        spec.prompt,
        PROMPT_END,
        f"Total duration: {spec.duration_s:g} seconds.",
        f"Make {count} scenes.",
        f"Aspect ratio: {spec.aspect_ratio.value}.",
    ]
    if spec.reference_images:
        lines.append(f"{len(spec.reference_images)} reference image(s) are attached: keep their characters and look.")
    for i, problem in enumerate(feedback or [], 1):
        lines.append(
            f"Attempt {i} was rejected: {problem}. Answer again with JSON that follows the schema and these limits."
        )
    return "\n".join(lines)


def _repaired_colour(value: str) -> str | None:
    """A palette entry as #rrggbb: hex as it is (3 or 6 digits, '#' optional), else a CSS/X11
    colour name or rgb()/hsl() form Pillow knows ('midnight blue', 'DarkSlateGray'); None if
    it is no colour at all."""
    hexed = _hex_colour(value)
    if hexed is not None:
        return hexed
    from PIL import ImageColor

    for text in (value.strip(), "".join(value.split())):
        try:
            red, green, blue = ImageColor.getrgb(text)[:3]
        except (ValueError, AttributeError):
            continue
        return f"#{red:02x}{green:02x}{blue:02x}"
    return None


MAX_PALETTE = 6  # Scene.color_palette's limits
MIN_PALETTE = 2
MAX_SCENE_CHARACTERS = 6  # Scene.characters' limit


def to_storyboard(
    plan: StoryPlan, spec: RenderSpec, max_scenes: int, planner_name: str = "gemini", repairs: list[str] | None = None
) -> Storyboard:
    """Validate Gemini's plan against longvid's rules and build the Storyboard.

    Repairs what can be repaired, and appends a line saying so to `repairs` (when given):
    colour names become hex, palettes and character lists over their limits are cut to
    them, text is clipped, hex case, 3-digit hex and enum case are normalised. A scene that
    cannot be saved (no description, fewer than 2 usable colours, rejected by the Scene
    model) is dropped. Raises PlanRejected (with a message meant for Gemini) only when what
    is left is unusable: too many or too few scenes, or a plan-level rule broken.
    """
    notes: list[str] = [] if repairs is None else repairs
    lo, hi = scene_bounds(max_scenes)
    if len(plan.scenes) > hi:  # cutting the story short would drop its ending: ask again
        want = f"exactly {hi}" if lo == hi else f"between {lo} and {hi}"
        raise PlanRejected(f"scenes: there must be {want} scenes, got {len(plan.scenes)}")

    cast: dict[str, Character] = {}
    for person in plan.characters:
        name = _clip(person.name, 80)
        if not name:  # a nameless character cannot be referred to
            notes.append("left out a character with no name")
            continue
        cast.setdefault(name.casefold(), Character(name=name, description=_clip(person.description, 400)))

    problems: list[str] = []  # why scenes were dropped
    kept: list[tuple[PlanScene, Scene]] = []
    for i, raw in enumerate(plan.scenes):
        description = _clip(raw.description, 2000)
        if not description:
            problems.append(f"scenes.{i}.description: is empty")
            continue
        palette, unusable, renamed = [], [], []
        for colour in raw.color_palette:
            hexed = _repaired_colour(colour)
            if hexed is None:
                unusable.append(colour)
            else:
                palette.append(hexed)
                if _hex_colour(colour) is None:
                    renamed.append(f"{colour!r} -> {hexed}")
        if len(palette) < MIN_PALETTE:
            problems.append(f"scenes.{i}.color_palette: {', '.join(map(repr, unusable[:3]))} is not a #rrggbb hex colour")
            continue
        if renamed:
            notes.append(f"scene {i + 1}: colour names turned into hex ({', '.join(renamed[:3])})")
        if unusable:
            notes.append(f"scene {i + 1}: dropped {len(unusable)} palette entr{'y' if len(unusable) == 1 else 'ies'} "
                         f"that are not colours ({', '.join(map(repr, unusable[:3]))})")
        if len(palette) > MAX_PALETTE:
            notes.append(f"scene {i + 1}: palette cut from {len(palette)} to {MAX_PALETTE} colours")
            palette = palette[:MAX_PALETTE]
        people: list[Character] = []
        for name in raw.characters:
            name = _clip(name, 80)
            if not name:
                continue
            person = cast.get(name.casefold()) or Character(name=name)
            if person not in people:
                people.append(person)
        if len(people) > MAX_SCENE_CHARACTERS:
            notes.append(f"scene {i + 1}: kept the first {MAX_SCENE_CHARACTERS} of its {len(people)} characters")
            people = people[:MAX_SCENE_CHARACTERS]
        try:
            scene = Scene(
                description=description,
                duration_s=1.0,  # set below, once the kept scenes are known
                visual_style=_clip(raw.visual_style, 200) or _clip(plan.style, 200) or "cinematic",
                characters=people,
                camera_movement=raw.camera_movement,
                lighting=raw.lighting,
                color_palette=palette,
                transition=raw.transition,
            )
        except ValidationError as exc:
            problems.append(f"scenes.{i}: {describe_validation_error(exc)}")
            continue
        kept.append((raw, scene))

    if len(kept) < lo:
        want = f"exactly {hi}" if lo == hi else f"between {lo} and {hi}"
        usable = f"only {len(kept)} usable" if problems else str(len(kept))
        raise PlanRejected("; ".join([f"scenes: there must be {want} scenes, got {usable}", *problems][:8]))
    if problems:
        notes.append(f"dropped {len(problems)} scene{'s' if len(problems) != 1 else ''} that could not be used: "
                     + "; ".join(problems[:3]))

    # Durations are weights for the segmenter; scale them to the requested length.
    scale = spec.duration_s / (sum(raw.duration_s for raw, _ in kept) or 1.0)
    try:
        scenes = [Scene.model_validate({**scene.model_dump(), "duration_s": max(0.001, round(raw.duration_s * scale, 3))})
                  for raw, scene in kept]
        return Storyboard(
            title=_clip(plan.title, 200) or _clip(spec.prompt, 80),
            prompt=spec.prompt,
            style=_clip(plan.style, 200) or "cinematic",
            scenes=scenes,
            planner=planner_name,
        )
    except ValidationError as exc:  # a rule the checks above missed: still Gemini's to fix
        raise PlanRejected(describe_validation_error(exc)) from None


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
            return Rephrased.model_validate_json(_strip_fences(response.text or "")).prompt
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
            images = [_image_part(p) for p in spec.reference_images]
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
            if not _is_transport_error(exc):
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
            return StoryPlan.model_validate_json(_strip_fences(text))
        except ValidationError as exc:
            if any(e.get("type") == "json_invalid" for e in exc.errors()):
                raise PlanRejected(f"the answer is not valid JSON ({exc.errors()[0].get('msg', 'invalid')})") from None
            raise PlanRejected(describe_validation_error(exc)) from None


def _is_transport_error(exc: Exception) -> bool:
    """Network trouble from either HTTP client the SDK may use (httpx or httpx2)."""
    classes: list[type] = [OSError]
    for module in ("httpx", "httpx2"):
        try:
            classes.append(__import__(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return isinstance(exc, tuple(classes))
