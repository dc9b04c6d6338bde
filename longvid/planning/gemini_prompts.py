"""What the Gemini planner sends: system instructions, the prompt text, reference images."""

from __future__ import annotations

import io
from pathlib import Path

from ..spec import RenderSpec
from .gemini_schema import scene_bounds

MAX_IMAGE_SIDE = 1024  # reference images are downscaled to this before upload

# The prompt text carries the user's prompt between these markers (fake_gemini reads them).
PROMPT_BEGIN = "<<<PROMPT"
PROMPT_END = "PROMPT>>>"

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
  `transition` is how the scene hands over to the next one;
- `narration` is what a voice-over says during the scene, in the language of the prompt:
  whole sentences that fit the scene when spoken (see the rate in the schema), or "" for a
  silent scene.
If reference images are attached, they show the characters and the look to keep.
Write the title and descriptions in the language of the prompt.
Answer with JSON that follows the response schema exactly, and nothing else."""


REPHRASE_INSTRUCTION = """\
You rewrite one shot description of a text-to-video pipeline that the video model's safety
filter refused. Keep the same subject, setting, characters, colours, camera and mood; remove
or soften only what a safety filter would refuse (violence, gore, weapons, nudity, real
people, brands). Write in the language of the original. Answer with JSON that follows the
response schema exactly, and nothing else."""


def build_rephrase_prompt(text: str, reason: str) -> str:
    return f"The video model refused this shot ({reason}). Rewrite it.\n{PROMPT_BEGIN}\n{text}\n{PROMPT_END}"


def image_part(path: Path):
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
    if isinstance(spec.narration, list) and len(spec.narration) <= hi:  # a narration file: one scene per text
        count = f"exactly {len(spec.narration)}"
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
