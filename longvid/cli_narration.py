"""The CLI's narration pieces: `--narration auto|off|FILE` read into the spec, and the
narration's timing as `longvid plan` shows it."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import InputError


def read_narration_file(path: Path) -> list[str]:
    """One narration per scene: paragraphs separated by blank lines (lines inside a
    paragraph are joined). An empty paragraph cannot be written; use a line with "-" for a
    silent scene."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"narration file {path} cannot be read as UTF-8 text ({exc.__class__.__name__})") from None
    paragraphs = [" ".join(line.strip() for line in block.splitlines() if line.strip())
                  for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n"))]
    texts = ["" if p == "-" else p for p in paragraphs if p]
    if not texts:
        raise InputError(f"narration file {path} is empty; write one text per scene, separated by blank lines")
    return texts


def narration_choice(value: str) -> str | list[str]:
    if value in ("auto", "off"):
        return value
    path = Path(value)
    if not path.is_file():
        raise InputError(f"--narration takes auto, off or a text file; {value!r} is not a file")
    return read_narration_file(path)


def print_narration_timing(record) -> None:
    """Each phrase with its time in the video and its scene's span."""
    from rich.console import Console
    from rich.table import Table

    timing = record.timing()
    table = Table(title=f"narration ({record.engine}, {record.language}) — {timing.total_s:.1f} s video, "
                        f"{len(record.phrases)} phrases")
    for column in ("scene", "scene span", "spoken", "phrase"):
        table.add_column(column, overflow="fold", no_wrap=column != "phrase")
    for phrase in record.phrases:
        table.add_row(str(phrase.scene + 1),
                      f"{timing.scene_start_s(phrase.scene):.2f}–{timing.scene_end_s(phrase.scene):.2f}",
                      f"{phrase.start_s:.2f}–{phrase.start_s + phrase.duration_s:.2f}", phrase.text)
    Console().print(table)
