"""A planner that needs no key and no network.

It reads the prompt for a subject, a setting, a time of day and colour words (English and
Chinese), then lays out 3-8 scenes along a simple arc (establish, develop, climax, resolve)
with a camera move, lighting, palette and transition each. Same prompt and seed, same plan.
"""

from __future__ import annotations

import colorsys
import hashlib
import random
import re

from ..spec import CameraMove, Character, Lighting, RenderSpec, Scene, Storyboard, Transition
from .narration_text import scene_narration
from .result import PlanResult

MIN_SCENES = 3
MAX_SCENES = 8

# Clause boundaries in Latin and CJK text.
_CLAUSE_SPLIT = re.compile(r"(?:[.;!?。；！？，,]+\s*|\s+(?:then|and then|after that|finally)\s+)", re.IGNORECASE)

_LIGHTING_WORDS: list[tuple[Lighting, tuple[str, ...]]] = [
    (Lighting.DAWN, ("dawn", "sunrise", "morning", "daybreak", "黎明", "清晨", "日出", "早晨")),
    (Lighting.GOLDEN_HOUR, ("golden hour", "golden light", "金色", "夕照")),
    (Lighting.DUSK, ("dusk", "sunset", "twilight", "evening", "黄昏", "傍晚", "日落")),
    (Lighting.NIGHT, ("night", "moon", "stars", "midnight", "夜", "月", "星")),
    (Lighting.NEON, ("neon", "cyberpunk", "synthwave", "霓虹", "赛博")),
    (Lighting.OVERCAST, ("rain", "fog", "mist", "storm", "overcast", "雨", "雾", "阴天")),
    (Lighting.DAY, ("noon", "midday", "sunny", "daylight", "白天", "正午", "阳光")),
]

# Base hue (degrees), saturation and value for settings; the first match wins.
_SETTING_WORDS: list[tuple[tuple[float, float, float], tuple[str, ...]]] = [
    ((205, 0.25, 0.95), ("snow", "ice", "winter", "frozen", "arctic", "雪", "冰", "冬")),
    ((120, 0.55, 0.70), ("forest", "jungle", "woods", "meadow", "garden", "森林", "树林", "草地")),
    ((35, 0.65, 0.90), ("desert", "sand", "dune", "沙漠", "沙丘")),
    ((200, 0.70, 0.80), ("ocean", "sea", "beach", "wave", "lake", "river", "海", "湖", "河")),
    ((230, 0.30, 0.55), ("city", "street", "tokyo", "skyline", "城市", "街")),
    ((265, 0.60, 0.35), ("space", "galaxy", "planet", "nebula", "太空", "星系", "宇宙")),
    ((25, 0.45, 0.60), ("mountain", "canyon", "cliff", "volcano", "山", "峡谷")),
]

_COLOUR_WORDS: dict[str, float] = {
    "red": 0, "红": 0, "orange": 28, "橙": 28, "gold": 45, "yellow": 55, "黄": 55,
    "green": 120, "绿": 120, "teal": 175, "cyan": 185, "blue": 215, "蓝": 215,
    "purple": 275, "violet": 275, "紫": 275, "pink": 330, "粉": 330,
}

_STYLE_WORDS = (
    "cinematic", "anime", "watercolor", "watercolour", "noir", "documentary", "pixel art",
    "claymation", "oil painting", "vaporwave", "photorealistic", "水墨", "动漫", "电影",
)

_ARC = ("Establishing shot", "Journey", "Discovery", "Rising tension", "Turning point", "Climax", "Aftermath", "Closing shot")

_STOPWORDS = frozenset(
    "in on at into onto through across over under with and or while as to from of by near "
    "is are was were who that which during before after".split()
)

# Words that end in -s but are nouns or adjectives, not the verb after a subject.
_NOT_VERBS = frozenset("glass boss moss grass dress bus chess octopus walrus lotus cactus iris hiss".split())


def _rng(prompt: str, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def split_clauses(prompt: str) -> list[str]:
    return [c.strip() for c in _CLAUSE_SPLIT.split(prompt) if c and c.strip()]


def find_subject(prompt: str) -> str:
    """The main character's name, best effort: 'a red fox explores…' -> 'red fox'."""
    words = re.findall(r"[\w'-]+", prompt)
    for i, word in enumerate(words):
        if word.lower() in ("a", "an", "the"):
            picked: list[str] = []
            for candidate in words[i + 1 : i + 4]:
                low = candidate.lower()
                if low in _STOPWORDS:
                    break
                if picked and low.endswith("s") and low not in _NOT_VERBS and not low.endswith("ss"):
                    break  # 'fox explores' -> the verb ends the noun phrase
                picked.append(candidate)
            if picked:
                return " ".join(picked)
    if re.search(r"[\u3040-\u30ff\u3400-\u9fff]", prompt):
        first = split_clauses(prompt)[0] if split_clauses(prompt) else prompt
        head = re.split(r"[在于正穿走向从和]", first, maxsplit=1)[0]
        return (head or first)[:8]
    return " ".join(words[:2]) if words else "subject"


def _match(text: str, table):
    low = text.lower()
    for value, words in table:
        if any(w in low for w in words):
            return value
    return None


def _palette(hue: float, sat: float, val: float, rng: random.Random) -> list[str]:
    """Four colours: sky top, horizon, far land, near ground. Same hue family, so a
    scene reads as one place; neighbours differ by a visible hue shift."""
    def hexc(h: float, s: float, v: float) -> str:
        r, g, b = colorsys.hsv_to_rgb((h % 360) / 360, min(max(s, 0), 1), min(max(v, 0), 1))
        return "#{:02x}{:02x}{:02x}".format(round(r * 255), round(g * 255), round(b * 255))

    jitter = rng.uniform(-8, 8)
    return [
        hexc(hue + jitter, sat * 0.8, min(1.0, val * 0.95)),
        hexc(hue + 25 + jitter, sat * 0.5, min(1.0, val * 1.05)),
        hexc(hue - 20 + jitter, sat * 0.9, val * 0.65),
        hexc(hue - 35 + jitter, sat, val * 0.40),
    ]


# Words a provider's safety filter tends to refuse, and tamer wording that keeps the picture.
# A small list on purpose: the offline rephrase is a best effort; Gemini's is the real one.
_SOFTER_WORDS = {
    "blood": "red paint", "bloody": "dramatic", "gore": "drama", "gory": "dramatic",
    "kill": "defeat", "kills": "defeats", "killing": "defeating", "killed": "defeated",
    "murder": "mystery", "corpse": "fallen figure", "dead": "still", "death": "ending",
    "gun": "prop", "guns": "props", "rifle": "prop", "weapon": "tool", "weapons": "tools",
    "knife": "tool", "sword": "staff", "bomb": "device", "explosion": "burst of light",
    "shoot": "aim", "shooting": "aiming", "fight": "contest", "violent": "intense",
    "violence": "tension", "naked": "robed", "nude": "robed", "war": "struggle",
}


def soften_prompt(text: str) -> str:
    """`text` with words safety filters refuse replaced by tamer ones (case kept)."""

    def swap(match: re.Match) -> str:
        word = match.group(0)
        softer = _SOFTER_WORDS[word.lower()]
        return softer.capitalize() if word[0].isupper() else softer

    pattern = re.compile(r"\b(" + "|".join(sorted(_SOFTER_WORDS, key=len, reverse=True)) + r")\b", re.IGNORECASE)
    return pattern.sub(swap, text)


class OfflinePlanner:
    """Deterministic storyboard from a prompt, with no model and no network."""

    name = "offline"

    def plan_with_report(self, spec: RenderSpec, max_scenes: int = MAX_SCENES) -> PlanResult:
        """The storyboard, with nothing to warn about (the offline planner cannot fail over)."""
        return PlanResult(storyboard=self.plan(spec, max_scenes=max_scenes))

    def rephrase(self, text: str, reason: str) -> str:
        """A segment prompt a provider refused for safety, reworded once to pass."""
        softened = soften_prompt(text)
        return softened if softened != text else f"A gentle, family-friendly depiction: {text}"

    def scene_count(self, spec: RenderSpec, max_scenes: int) -> int:
        if isinstance(spec.narration, list):  # a narration file: one scene per text
            return max(1, min(len(spec.narration), max_scenes))
        clauses = len(split_clauses(spec.prompt))
        wanted = max(clauses, round(spec.duration_s / 10))
        return max(1, min(max(MIN_SCENES, wanted), MAX_SCENES, max_scenes))

    def plan(self, spec: RenderSpec, max_scenes: int = MAX_SCENES) -> Storyboard:
        rng = _rng(spec.prompt, spec.seed)
        count = self.scene_count(spec, max_scenes)
        clauses = split_clauses(spec.prompt) or [spec.prompt]
        subject = find_subject(spec.prompt)[:80].strip() or "subject"  # a one-word 4000-char prompt still plans
        style = next((w for w in _STYLE_WORDS if w in spec.prompt.lower()), "cinematic")
        explicit_lighting = _match(spec.prompt, _LIGHTING_WORDS)
        hue, sat, val = _match(spec.prompt, _SETTING_WORDS) or (rng.uniform(0, 360), 0.5, 0.75)
        colour_hue = next((h for w, h in _COLOUR_WORDS.items() if w in spec.prompt.lower()), None)
        character = Character(
            name=subject,
            description=(f"the {subject} from the prompt" + (f", {colour_hue:g}° hue" if colour_hue is not None else ""))[:400],
        )
        arc = self._arc(count)
        day_cycle = [Lighting.DAWN, Lighting.DAY, Lighting.GOLDEN_HOUR, Lighting.DUSK, Lighting.NIGHT]
        start = rng.randrange(3)
        moves = list(CameraMove)
        scenes: list[Scene] = []
        previous_move: CameraMove | None = None
        for i in range(count):
            clause = clauses[i % len(clauses)] if len(clauses) > 1 else spec.prompt
            if explicit_lighting is not None:
                lighting = explicit_lighting
            else:
                lighting = day_cycle[min(start + (i * 2) // max(count, 1), len(day_cycle) - 1)]
            move = rng.choice([m for m in moves if m is not previous_move])
            previous_move = move
            transition = rng.choices(
                [Transition.CROSSFADE, Transition.CUT, Transition.FADE], weights=[0.6, 0.25, 0.15]
            )[0]
            scene_hue = hue + (i - count / 2) * 22 + rng.uniform(-6, 6)
            duration_s = round(spec.duration_s / count * rng.uniform(0.8, 1.2), 3)
            if isinstance(spec.narration, list):
                narration = spec.narration[i] if i < len(spec.narration) else ""
            elif spec.narration == "auto":
                narration = scene_narration(spec.prompt, clause, arc[i].split(":")[0], duration_s)
            else:
                narration = ""
            scenes.append(
                Scene(
                    description=f"{arc[i]}: {clause}"[:2000],
                    duration_s=duration_s,
                    visual_style=style,
                    characters=[character],
                    camera_movement=move,
                    lighting=lighting,
                    color_palette=_palette(scene_hue, sat, val, rng),
                    transition=transition,
                    narration=narration,
                )
            )
        title = clauses[0][:80]
        return Storyboard(title=title, prompt=spec.prompt, style=style, scenes=scenes, planner=self.name)

    @staticmethod
    def _arc(count: int) -> list[str]:
        if count <= 2:
            return list(_ARC[:1]) + list(_ARC[-1:])[: count - 1]
        middle = list(_ARC[1:-1])
        step = len(middle) / (count - 2)
        return [_ARC[0]] + [middle[int(k * step)] for k in range(count - 2)] + [_ARC[-1]]
