"""Planning for the API: a spec (and optionally an edited storyboard) to the exact segment
jobs a render will make, with their estimated cost. Wired as the CLI wires it: Gemini when a
key is configured and the planner is 'auto' or 'gemini', else the offline planner.

Answers are plain JSON-able dicts, errors included ({"error": {...}}), so they cross a Serve
deployment handle without exception types having to travel.
"""

from __future__ import annotations

from pydantic import ValidationError

from longvid.components import make_planner
from longvid.errors import InputError, LongvidError, describe_validation_error
from longvid.runtime.pipeline import RenderPipeline
from longvid.settings import Settings
from longvid.spec import RenderSpec, Storyboard


class PlanService:
    def __init__(self, planner_mode: str = "auto", settings: Settings | None = None):
        self.planner_mode = planner_mode
        self.settings = settings if settings is not None else Settings()  # defaults: no keys, so offline

    def plan(self, spec_json: dict, storyboard_json: dict | None = None) -> dict:
        """{"storyboard", "segments" (full jobs), "estimated_cost_usd", "provider", "warnings"}
        or {"error": {"code", "message"}}."""
        try:
            spec = RenderSpec.model_validate(spec_json)
            storyboard = Storyboard.model_validate(storyboard_json) if storyboard_json is not None else None
        except ValidationError as exc:
            return _error("invalid_request", describe_validation_error(exc))
        try:
            planner = make_planner(self.settings.gemini, self.planner_mode) if storyboard is None else None
            pipeline = RenderPipeline(planner=planner, settings=self.settings)
            capabilities = pipeline.check_inputs(spec)
            if storyboard is None:
                storyboard = pipeline.prepare_plan(spec, capabilities)
            jobs = pipeline.prepare_segments(spec, storyboard, capabilities)
        except InputError as exc:  # unknown provider, missing key, budget too small, unsegmentable storyboard
            return _error("invalid_request", str(exc))
        except LongvidError as exc:  # the planner itself failed (e.g. Gemini, with no fallback)
            return _error("planner_failed", str(exc))
        cost = sum(capabilities.price_per_second_usd * j.generate_duration_s for j in jobs)
        return {
            "storyboard": storyboard.model_dump(mode="json"),
            "segments": [j.model_dump(mode="json") for j in jobs],
            "estimated_cost_usd": round(cost, 4),
            "provider": capabilities.name,
            "warnings": list(getattr(planner, "warnings", []) or []),
        }


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
