"""Request and response bodies of the HTTP API (see serve/API.md).

Requests forbid unknown fields and say in each message what to change; the limits here are
the API's (tighter than the CLI's: a public endpoint caps prompt, length and images).
"""

from __future__ import annotations

import math
import unicodedata
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from longvid.spec import MAX_NARRATION_CHARS, ContinuityMode, QualityTier, Storyboard

MIN_DURATION_S = 5.0
MAX_DURATION_S = 120.0
MAX_PROMPT_CHARS = 2000
MAX_REFERENCE_IMAGES = 4
MAX_CANDIDATES = 4  # best-of-N through the API (the CLI allows 8): each candidate is a paid generation
# No length limit on data_base64 in the model: an over-long one is refused with 413
# image_too_large where it is decoded (serve/images.py), as documented, not with a 422 here
# (the 32 MB body cap bounds it before that).
ALLOWED_CONTROLS = frozenset("\n\t")  # in a prompt; any other control character is refused


def control_characters(text: str) -> list[str]:
    """The control characters (C0, DEL, C1: NUL, ESC of a terminal escape sequence, CR...)
    in `text` other than newline and tab, as U+XXXX, in order of first appearance."""
    found = dict.fromkeys(f"U+{ord(c):04X}" for c in text if unicodedata.category(c) == "Cc" and c not in ALLOWED_CONTROLS)
    return list(found)


class ReferenceImage(BaseModel):
    """One reference image: inline base64 (PNG, JPEG or WebP) or a public https URL."""

    model_config = ConfigDict(extra="forbid")

    data_base64: Annotated[str, Field(min_length=1, description="at most 5 MB once decoded (413 image_too_large)")] | None = None
    url: Annotated[str, Field(min_length=1, max_length=2048)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ReferenceImage:
        if (self.data_base64 is None) == (self.url is None):
            raise ValueError('give each reference image as {"data_base64": "..."} or {"url": "https://..."}, not both or neither')
        return self


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="what the video shows, in any language")]
    duration_s: Annotated[float, Field(ge=MIN_DURATION_S, le=MAX_DURATION_S, allow_inf_nan=False)] = 45.0
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = "16:9"
    resolution: Literal["360p", "480p", "720p"] = "720p"
    provider: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.,\- ]+$",
                                  description="preview (default), runway, veo, local (open weights), auto, or a list: runway,veo")] = "preview"
    quality: QualityTier = QualityTier.STANDARD
    continuity: ContinuityMode = ContinuityMode.AUTO
    budget_usd: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 0
    judge: Annotated[Literal["auto", "clip", "structural", "gemini", "off"],
                     Field(description="gemini: Gemini's vision judge on every segment (paid, booked in the render's ledger; "
                                       "only on a server with a Gemini key)")] = "auto"
    reference_images: Annotated[list[ReferenceImage], Field(max_length=MAX_REFERENCE_IMAGES)] = []
    narration: Annotated[Literal["auto", "off"] | Annotated[list[Annotated[str, Field(max_length=MAX_NARRATION_CHARS)]],
                                                            Field(min_length=1, max_length=64)],
                         Field(description="auto: the planner writes a voice-over per scene; off: silent; or one text "
                                           "per scene (a storyboard's scenes also carry their own `narration`)")] = "auto"
    speech: Literal["auto", "espeak", "piper", "gemini"] = "auto"
    voice: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$",
                                description="the speech engine's voice, e.g. en-us (espeak), Kore (gemini)")] | None = None
    burn_subtitles: Annotated[bool, Field(description="draw the subtitles into the picture too (the soft track is always there)")] = False
    subtitles: Annotated[bool, Field(description="false: no subtitle track in the video (the render keeps its "
                                                 ".srt/.vtt files all the same)")] = True
    # Best-of-N (runtime/candidates.py). Left out of the request's JSON at their defaults, so the
    # hash an Idempotency-Key is bound to stays what it was for requests without them.
    candidates: Annotated[int, Field(ge=1, le=MAX_CANDIDATES, exclude_if=lambda v: v == 1,
                                     description="make this many candidates of each segment in scope at once and keep the "
                                                 "judge's best (the estimate counts them; a budget lowers N, with a warning)")] = 1
    candidates_for: Annotated[Literal["openers", "all"], Field(exclude_if=lambda v: v == "openers",
                                                               description="openers: scene openers only; all: every segment")] = "openers"

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_not_blank(cls, value):
        if isinstance(value, str) and not value.strip():
            raise ValueError("the prompt is empty; describe the video you want, e.g. 'a red fox in the snow'")
        if isinstance(value, str) and (bad := control_characters(value)):
            raise ValueError(f"the prompt holds control characters ({', '.join(bad[:4])}); send plain text "
                             "(newlines and tabs are fine)")
        return value.strip() if isinstance(value, str) else value

    @field_validator("duration_s", mode="before")
    @classmethod
    def _duration_in_range(cls, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            if not MIN_DURATION_S <= value <= MAX_DURATION_S:
                raise ValueError(f"duration_s must be between {MIN_DURATION_S:g} and {MAX_DURATION_S:g} seconds "
                                 f"(got {value:g}); longer videos are rendered with the CLI or a batch job")
        return value


class RenderSubmission(RenderRequest):
    """A render: the request, optionally with a storyboard edited from POST /v1/plans
    (used instead of planning again)."""

    storyboard: Storyboard | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


# The error answers the routes document (their OpenAPI `responses`).
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)}


class PlanResponse(BaseModel):
    storyboard: dict
    segments: list[dict]
    estimated_cost_usd: float
    provider: str
    warnings: list[str] = []
    narration: dict | None = None  # the narration's engine, scene lengths and phrase times; None when silent


class Progress(BaseModel):
    done: int
    total: int
    percent: float


class Links(BaseModel):
    self: str
    events: str
    video: str
    report: str
    contact_sheet: str


RenderStatusName = Literal["queued", "rendering", "merging", "done", "failed", "cancelled"]


class SegmentView(BaseModel):
    index: int
    scene: int
    state: str
    provider: str
    cost_usd: float
    attempts: int
    regenerations: int
    scores: list[dict]
    error: str | None


class RenderStatus(BaseModel):
    id: str
    status: RenderStatusName
    prompt: str
    created_at: str
    spec: dict
    progress: Progress
    segments: list[SegmentView]
    cost_usd: float
    warnings: list[str]
    error: str | None
    links: Links


class RenderAccepted(BaseModel):
    id: str
    status: RenderStatusName
    links: Links


class RenderSummary(BaseModel):
    id: str
    status: RenderStatusName
    prompt: str
    created_at: str
    duration_s: float
    cost_usd: float
    progress: Progress


class RenderList(BaseModel):
    renders: list[RenderSummary]


class Cancelling(BaseModel):
    id: str
    status: Literal["cancelling"] = "cancelling"
