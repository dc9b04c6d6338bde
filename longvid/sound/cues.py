"""A subtitle cue: one phrase of narration and when it is on screen."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cue:
    start_s: float  # seconds from the start of the final video
    end_s: float
    text: str

    def __post_init__(self) -> None:
        if not (0 <= self.start_s < self.end_s):
            raise ValueError(f"cue {self.text!r}: needs 0 <= start ({self.start_s}) < end ({self.end_s})")
