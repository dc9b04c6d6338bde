"""The JSON the Gemini planner asks for: the storyboard's response schema (and the
rephrased-prompt one), with the scene-count limits both the prompt and the repair use."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator, model_validator

from ..spec import CameraMove, Lighting, Transition
from ..sound.phrases import WORDS_PER_SECOND
from .offline import MAX_SCENES, MIN_SCENES

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
    narration: str = Field(description=(
        "What the voice-over says during this scene, in the language of the prompt: at most "
        f"{WORDS_PER_SECOND:g} words (Chinese/Japanese/Korean: characters) per second of the scene, "
        "whole sentences; an empty string for a silent scene."))

    @model_validator(mode="before")
    @classmethod
    def _narration_may_be_missing(cls, data: Any) -> Any:
        # Required in the schema (so Gemini writes it) but a plan without it is still a plan.
        if isinstance(data, dict) and data.get("narration") is None:
            data = {**data, "narration": ""}
        return data

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


class Rephrased(BaseModel):
    prompt: Annotated[str, Field(min_length=1, max_length=4000)]


def scene_bounds(max_scenes: int) -> tuple[int, int]:
    """The allowed scene count: 3..min(8, max_scenes), narrowed when few segments fit."""
    hi = max(1, min(MAX_SCENES, max_scenes))
    return min(MIN_SCENES, hi), hi
