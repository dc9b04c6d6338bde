"""The vocabulary of longvid: what a user asks for and what a render is made of.

Every model here is validated at the edge (CLI flags, storyboard files, HTTP bodies), so
the rest of the code can trust its inputs. Error messages say what to change.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

MIN_DURATION_S = 5.0
MAX_DURATION_S = 600.0
DEFAULT_DURATION_S = 45.0
MAX_PROMPT_CHARS = 4000
MAX_REFERENCE_IMAGES = 8

_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_NARRATION_CHARS = 2000


def _is_empty(value: str) -> bool:
    return value == ""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class AspectRatio(str, enum.Enum):
    LANDSCAPE = "16:9"
    PORTRAIT = "9:16"
    SQUARE = "1:1"


class Resolution(str, enum.Enum):
    P360 = "360p"
    P480 = "480p"
    P720 = "720p"
    P1080 = "1080p"

    @property
    def short_side(self) -> int:
        return int(self.value[:-1])


class QualityTier(str, enum.Enum):
    DRAFT = "draft"
    STANDARD = "standard"
    HIGH = "high"
    PREMIUM = "premium"


class ContinuityMode(str, enum.Enum):
    """How segments are conditioned on each other.

    chain: every segment starts from the previous segment's seam frame (sequential).
    anchor: segments are conditioned only on keyframes/reference images (parallel).
    auto: chain inside a scene, anchor across scenes (parallel across scenes).
    """

    CHAIN = "chain"
    ANCHOR = "anchor"
    AUTO = "auto"


class Transition(str, enum.Enum):
    """How a scene hands over to the next one."""

    CROSSFADE = "crossfade"
    FADE = "fade"  # through black
    CUT = "cut"


class CameraMove(str, enum.Enum):
    STATIC = "static"
    PAN_LEFT = "pan_left"
    PAN_RIGHT = "pan_right"
    TILT_UP = "tilt_up"
    TILT_DOWN = "tilt_down"
    ZOOM_IN = "zoom_in"
    ZOOM_OUT = "zoom_out"
    DOLLY = "dolly"


class Lighting(str, enum.Enum):
    DAWN = "dawn"
    DAY = "day"
    GOLDEN_HOUR = "golden_hour"
    DUSK = "dusk"
    NIGHT = "night"
    NEON = "neon"
    OVERCAST = "overcast"


def frame_size(aspect: AspectRatio, resolution: Resolution) -> tuple[int, int]:
    """(width, height) in pixels; both even, as yuv420p needs."""
    short = resolution.short_side
    if aspect is AspectRatio.SQUARE:
        return short, short
    long = int(round(short * 16 / 9 / 2)) * 2
    return (long, short) if aspect is AspectRatio.LANDSCAPE else (short, long)


class Character(_Model):
    name: Annotated[str, Field(min_length=1, max_length=80)]
    description: Annotated[str, Field(max_length=400)] = ""


HexColour = Annotated[str, Field(pattern=_HEX_COLOUR.pattern)]


class Scene(_Model):
    """One beat of the story. Its duration is a weight: the segmenter snaps scenes to
    whole segments so that every segment belongs to exactly one scene."""

    description: Annotated[str, Field(min_length=1, max_length=2000)]
    duration_s: Annotated[float, Field(gt=0, le=MAX_DURATION_S)] | None = None
    visual_style: Annotated[str, Field(max_length=200)] = "cinematic"
    characters: Annotated[list[Character], Field(max_length=6)] = []
    camera_movement: CameraMove = CameraMove.STATIC
    lighting: Lighting = Lighting.DAY
    color_palette: Annotated[list[HexColour], Field(min_length=2, max_length=6)] = [
        "#1d3557",
        "#457b9d",
        "#a8dadc",
        "#f1faee",
    ]
    transition: Transition = Transition.CROSSFADE  # into the next scene
    # What the voice-over says during this scene ("" = silent); spoken in phrases, each a
    # subtitle cue. Left out of the JSON when empty, so plans from before narration read
    # and write back unchanged.
    narration: Annotated[str, Field(max_length=MAX_NARRATION_CHARS, exclude_if=_is_empty)] = ""


class Storyboard(_Model):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    prompt: str = ""
    style: Annotated[str, Field(max_length=200)] = "cinematic"
    scenes: Annotated[list[Scene], Field(min_length=1, max_length=64)]
    planner: str = "offline"


class RenderSpec(_Model):
    """What the user asked for. The single entry point for every way in (CLI, job, HTTP)."""

    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
    duration_s: float = DEFAULT_DURATION_S
    aspect_ratio: AspectRatio = AspectRatio.LANDSCAPE
    resolution: Resolution = Resolution.P720
    fps: Annotated[int, Field(ge=12, le=60)] = 24
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 0
    quality: QualityTier = QualityTier.STANDARD
    continuity: ContinuityMode = ContinuityMode.AUTO
    provider: Annotated[str, Field(min_length=1, max_length=40)] = "preview"
    # Consistency judge: auto (CLIP if its weights are on this machine, else structural),
    # clip, structural, off, or gemini (Gemini's vision verdict on every segment, the local
    # scorers as its fallback; needs a Gemini key).
    judge: Literal["auto", "clip", "structural", "off", "gemini"] = "auto"
    budget_usd: Annotated[float, Field(ge=0)] | None = None
    reference_images: Annotated[list[Path], Field(max_length=MAX_REFERENCE_IMAGES)] = []
    storyboard_file: Path | None = None
    # Best-of-N (runtime/candidates.py): candidates made of each scene opener ("openers") or
    # of every segment ("all"); the judge keeps the best. Lowered to what the budget allows.
    # Left out of the JSON at their defaults, so run ids and manifests from before best-of-N
    # read and write back unchanged.
    candidates: Annotated[int, Field(ge=1, le=8, exclude_if=lambda v: v == 1)] = 1
    candidates_for: Annotated[Literal["openers", "all"], Field(exclude_if=lambda v: v == "openers")] = "openers"
    # Narration: "auto" (the planner writes it), "off", or one text per scene (a narration
    # file). Speech engine and voice: see longvid/sound/engines.py. Left out of the JSON at
    # their defaults, so manifests from before narration read and write back unchanged.
    narration: Annotated[Literal["auto", "off"] | Annotated[list[Annotated[str, Field(max_length=MAX_NARRATION_CHARS)]],
                                                            Field(min_length=1, max_length=64)],
                         Field(exclude_if=lambda v: v == "auto")] = "auto"
    speech: Annotated[Literal["auto", "espeak", "piper", "gemini"], Field(exclude_if=lambda v: v == "auto")] = "auto"
    voice: Annotated[str | None, Field(max_length=200, exclude_if=lambda v: v is None)] = None
    # The soundtrack: background music (any file PyAV decodes; checked before anything is
    # paid) and subtitles drawn into the picture (besides the soft track). See sound/finish.py.
    music: Annotated[Path | None, Field(exclude_if=lambda v: v is None)] = None
    burn_subtitles: Annotated[bool, Field(exclude_if=lambda v: v is False)] = False
    # The Gemini vision judge's extras (--second-opinion on borderline local scores, --judge-model),
    # kept with the run so a resume judges as the render did. Left out of the JSON at their defaults.
    second_opinion: Annotated[bool, Field(exclude_if=lambda v: v is False)] = False
    judge_model: Annotated[str | None, Field(max_length=200, exclude_if=lambda v: v is None)] = None
    # False: no subtitle track in the video and no .srt/.vtt beside the output (the run
    # folder keeps its subtitle files all the same).
    subtitles: Annotated[bool, Field(exclude_if=lambda v: v is True)] = True

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the prompt is empty; describe the video you want, e.g. 'a red fox in the snow'")
        return value

    @field_validator("duration_s")
    @classmethod
    def _duration_in_range(cls, value: float) -> float:
        if not (MIN_DURATION_S <= value <= MAX_DURATION_S):
            raise ValueError(
                f"duration must be between {MIN_DURATION_S:g} and {MAX_DURATION_S:g} seconds "
                f"(got {value:g}); pass e.g. --duration 45"
            )
        return value

    @field_validator("provider")
    @classmethod
    def _provider_lowercase(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("reference_images")
    @classmethod
    def _images_readable(cls, paths: list[Path]) -> list[Path]:
        from PIL import Image, UnidentifiedImageError

        for path in paths:
            try:
                with Image.open(path) as image:
                    image.verify()  # decodes the headers and checksums, not the name
            except (OSError, UnidentifiedImageError) as exc:
                raise ValueError(f"reference image {path} cannot be read as an image ({exc.__class__.__name__})") from None
        return paths

    @model_validator(mode="after")
    def _storyboard_exists(self) -> RenderSpec:
        if self.storyboard_file is not None and not self.storyboard_file.is_file():
            raise ValueError(f"storyboard file {self.storyboard_file} does not exist or is not a file")
        return self

    @model_validator(mode="after")
    def _burned_subtitles_are_subtitles(self) -> RenderSpec:
        if self.burn_subtitles and not self.subtitles:
            raise ValueError("burned subtitles need subtitles: drop --burn-subtitles or --subtitles off")
        return self

    @property
    def frame_size(self) -> tuple[int, int]:
        return frame_size(self.aspect_ratio, self.resolution)

    @property
    def total_frames(self) -> int:
        return int(round(self.duration_s * self.fps))


class SegmentJob(_Model):
    """One unit of generation: a slice of one scene, rendered by one provider call.

    `frames` is what the segment contributes to the final timeline; `tail_frames` more are
    rendered after it to crossfade into the next segment; anything the provider makes past
    `frames + tail_frames` (its durations are quantised) is trimmed at merge.
    """

    index: Annotated[int, Field(ge=0)]
    scene_index: Annotated[int, Field(ge=0)]
    segment_in_scene: Annotated[int, Field(ge=0)]
    prompt: str
    scene: Scene
    start_frame: Annotated[int, Field(ge=0)]  # where it lands in the final video
    frames: Annotated[int, Field(ge=1)]
    head_frames: Annotated[int, Field(ge=0)] = 0  # blended with the previous segment's tail
    head_transition: Transition = Transition.CUT
    tail_frames: Annotated[int, Field(ge=0)] = 0
    scene_offset_s: Annotated[float, Field(ge=0)] = 0.0  # where in its scene this slice starts
    generate_duration_s: Annotated[float, Field(gt=0)]  # what the provider is asked for
    fps: int
    width: int
    height: int
    seed: int
    keyframe_density: float = 0.5
    conditioned_on: int | None = None  # index of the segment whose seam frame conditions this one

    @property
    def needed_frames(self) -> int:
        return self.frames + self.tail_frames

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


class Clip(_Model):
    """A generated segment as the runtime knows it once the provider is done."""

    segment_index: int
    provider: str
    model: str
    path: str  # relative to the run folder
    frames: int
    width: int
    height: int
    fps: float
    cost_usd: float = 0.0
    seconds_spent: float = 0.0
    sha256: str
    # The file at `path` is in the house format (normalised here, or made so by the renderer):
    # the merge stream-copies it. False while the provider's original waits to be normalised.
    normalised: bool = False
    original: str | None = None  # the provider's own file, kept for provenance, once normalised

    @model_serializer(mode="wrap")
    def _without_unset_provenance(self, handler):
        # Written only when they say something, so a manifest from before normalisation writes
        # back byte for byte (absent reads as the default: nothing is lost).
        data = handler(self)
        if isinstance(data, dict):
            if not self.normalised:
                data.pop("normalised", None)
            if self.original is None:
                data.pop("original", None)
        return data


class SegmentState(str, enum.Enum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    GENERATED = "generated"
    JUDGED = "judged"
    ACCEPTED = "accepted"
    FAILED = "failed"
