"""Gemini's parsed answer turned into a Storyboard: checked against longvid's rules and
repaired where it can be (colour names to hex, lists and text cut to their limits,
unusable scenes dropped when enough usable ones remain); `PlanRejected` says why not."""

from __future__ import annotations

import re

from pydantic import ValidationError

from ..errors import describe_validation_error
from ..spec import MAX_NARRATION_CHARS, Character, RenderSpec, Scene, Storyboard
from .gemini_schema import PlanScene, StoryPlan, scene_bounds


class PlanRejected(ValueError):
    """Gemini's answer could not be used; the message is fed back to it on retry."""


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


def strip_fences(text: str) -> str:
    """The JSON inside a ```json fence (some answers come wrapped in one); other text as it is."""
    text = text.strip()
    m = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.DOTALL)
    return m.group(1) if m else text


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
                narration=_clip(raw.narration, MAX_NARRATION_CHARS),
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
