"""The offline planner's narration: a few sentences per scene, in the prompt's language,
as long as the scene holds at the planners' speaking rate (sound/phrases.py).

The first sentence retells the scene's part of the prompt; the rest follow the story arc.
Deterministic, like the rest of the offline plan.
"""

from __future__ import annotations

import re

from ..sound.phrases import fit_units, language_of, spoken_units

# Lines per arc beat ("Establishing shot", …: offline._ARC), English and Chinese.
_ARC_LINES_EN = {
    "Establishing shot": ["Our story begins here.", "The world is quiet, and waiting."],
    "Journey": ["The journey goes on.", "Every step brings something new."],
    "Discovery": ["Something new comes into view.", "A discovery changes the day."],
    "Rising tension": ["The air grows tense.", "Something is about to happen."],
    "Turning point": ["Here, everything turns.", "Nothing will be quite the same."],
    "Climax": ["This is the moment it all led to.", "Everything comes together."],
    "Aftermath": ["Slowly, calm returns.", "What happened still lingers."],
    "Closing shot": ["And so the story ends.", "The light fades gently."],
}
_ARC_LINES_ZH = {
    "Establishing shot": ["故事从这里开始。", "世界安静地等待着。"],
    "Journey": ["旅程还在继续。", "每一步都带来新的风景。"],
    "Discovery": ["新的事物出现在眼前。", "一个发现改变了这一天。"],
    "Rising tension": ["气氛渐渐紧张起来。", "有什么事情即将发生。"],
    "Turning point": ["一切在这里转变。", "再也不会和从前一样。"],
    "Climax": ["这是一切汇聚的时刻。", "所有的线索交织在一起。"],
    "Aftermath": ["平静慢慢回来了。", "刚才的一切仍在回荡。"],
    "Closing shot": ["故事就这样结束了。", "光线温柔地消散。"],
}


MAX_SENTENCE_CHARS = 300  # a prompt's clause can be anything up to 4000 characters


def _sentence(clause: str, chinese: bool) -> str:
    clause = clause.strip()[:MAX_SENTENCE_CHARS].rstrip(".。!！?？,，;；")
    if not clause:
        return ""
    return clause + "。" if chinese else clause[0].upper() + clause[1:] + "."


def _cut_to(text: str, units: int, chinese: bool) -> str:
    """The first `units` words (CJK: characters) of `text`, ending as a sentence."""
    if chinese:
        kept, count = [], 0
        for ch in text:
            if re.match(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]", ch):
                count += 1
                if count > units:
                    break
            kept.append(ch)
        return _sentence("".join(kept), True)
    return _sentence(" ".join(text.split()[:units]), False)


def scene_narration(prompt: str, clause: str, arc_beat: str, scene_s: float) -> str:
    """Narration for one scene of `scene_s` seconds ("" when too short for a phrase)."""
    language = language_of(prompt)
    budget = fit_units(scene_s, language)
    if budget == 0:
        return ""
    chinese = language in ("zh", "ja", "ko")
    lines = (_ARC_LINES_ZH if chinese else _ARC_LINES_EN).get(arc_beat, [])
    candidates = [s for s in [_sentence(clause, chinese), *lines] if s]
    picked: list[str] = []
    used = 0
    for sentence in candidates:
        units = spoken_units(sentence)
        if used + units > budget:
            if not picked:  # even the first sentence is too long: say its start
                picked.append(_cut_to(sentence, budget, chinese))
            break
        picked.append(sentence)
        used += units
    return ("" if chinese else " ").join(picked)
