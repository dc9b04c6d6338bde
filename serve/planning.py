"""Planning for the API: a spec (and optionally an edited storyboard) to the exact segment
jobs a render will make, with their estimated cost. Wired as the CLI wires it: Gemini when a
key is configured and the planner is 'auto' or 'gemini', else the offline planner.

Answers are plain JSON-able dicts, errors included ({"error": {...}}), so they cross a Serve
deployment handle without exception types having to travel.
"""

from __future__ import annotations

from pydantic import ValidationError

from longvid.errors import InputError, LongvidError, describe_validation_error
from longvid.spec import RenderSpec, Storyboard
from longvid.wiring import RenderOptions, planning_pipeline


class PlanService:
    def __init__(self, planner_mode: str = "auto"):
        self.planner_mode = planner_mode

    def plan(self, spec_json: dict, storyboard_json: dict | None = None) -> dict:
        """{"storyboard", "segments" (full jobs), "estimated_cost_usd", "provider", "warnings"}
        or {"error": {"code", "message"}}."""
        try:
            spec = RenderSpec.model_validate(spec_json)
            storyboard = Storyboard.model_validate(storyboard_json) if storyboard_json is not None else None
        except ValidationError as exc:
            return _error("invalid_request", describe_validation_error(exc))
        try:
            pipeline = planning_pipeline(options=RenderOptions(planner=self.planner_mode if storyboard is None else "offline"))
            planned = pipeline.plan(spec, storyboard)
        except InputError as exc:  # unknown provider, missing key, budget too small, unsegmentable storyboard
            return _error("invalid_request", str(exc))
        except LongvidError as exc:  # the planner itself failed (e.g. Gemini, with no fallback)
            return _error("planner_failed", str(exc))
        return {
            "storyboard": planned.storyboard.model_dump(mode="json"),
            "segments": [j.model_dump(mode="json") for j in planned.jobs],
            "estimated_cost_usd": round(planned.estimate.high_usd, 4),  # the most failover could cost
            "provider": planned.capabilities.name,
            "warnings": list(planned.warnings),
        }


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
