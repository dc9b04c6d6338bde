"""What a planner returns: the storyboard and what went wrong on the way to it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..spec import Storyboard


@dataclass
class PlanResult:
    storyboard: Storyboard
    warnings: list[str] = field(default_factory=list)  # e.g. a fallback; they land in the manifest
