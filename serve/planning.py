"""Planning for the API: a spec (and optionally an edited storyboard) to the exact segment
jobs a render will make, with their estimated cost. Wired as the CLI wires it: Gemini when a
key is configured and the planner is 'auto' or 'gemini', else the offline planner.

Answers are plain JSON-able dicts, errors included ({"error": {...}}), so they cross a Serve
deployment handle without exception types having to travel. A provider this server has no
credentials (or no valid configuration) for is "not available on this server": the API's
caller is not told which environment variable the operator left unset.
"""

from __future__ import annotations

from pydantic import ValidationError

from longvid.errors import InputError, LongvidError, describe_validation_error
from longvid.planning.gemini import gemini_available
from longvid.providers import provider_configured
from longvid.runtime.candidates import extra_candidate_seconds, plan_candidates
from longvid.runtime.router import candidate_providers
from longvid.settings import Settings
from longvid.spec import RenderSpec, Storyboard
from longvid.wiring import RenderOptions, planning_pipeline

from .models import MAX_DURATION_S as API_MAX_DURATION_S


class PlanService:
    def __init__(self, planner_mode: str = "auto", settings: Settings | None = None, store=None):
        self.planner_mode = planner_mode
        self.settings = settings if settings is not None else Settings()  # defaults: no keys, so offline
        # The API's run store: paid speech made while planning goes to its speech cache, where
        # the renderer finds it (none: paid speech would be made again at render time).
        self.store = store

    def plan(self, spec_json: dict, storyboard_json: dict | None = None) -> dict:
        """{"storyboard", "segments" (full jobs), "estimated_cost_usd", "provider", "warnings"}
        or {"error": {"code", "message"}}."""
        try:
            spec = RenderSpec.model_validate(spec_json)
            storyboard = Storyboard.model_validate(storyboard_json) if storyboard_json is not None else None
        except ValidationError as exc:
            return _error("invalid_request", describe_validation_error(exc))
        try:
            unavailable = unavailable_provider(spec.provider, self.settings)
        except InputError as exc:  # an unknown provider name: the caller's to fix
            return _error("invalid_request", str(exc))
        if unavailable is not None:
            return _error("invalid_request", f"provider {unavailable!r} is not available on this server; "
                                             "choose another provider (e.g. preview)")
        if spec.speech == "gemini" and not gemini_available(self.settings.gemini):
            return _error("invalid_request", "speech 'gemini' is not available on this server; "
                                             "choose another speech engine (e.g. espeak)")
        if spec.judge == "gemini" and not gemini_available(self.settings.gemini):
            return _error("invalid_request", "judge 'gemini' is not available on this server; "
                                             "choose another judge (e.g. auto)")
        if storyboard is None and self.planner_mode == "gemini" and not gemini_available(self.settings.gemini):
            # The server's configuration, not the caller's request: which key is missing is the
            # operator's business, and the same request may succeed on a configured replica.
            return _error("planner_failed", "this server's planner is not configured; try again later or send a storyboard")
        try:
            options = RenderOptions(planner=self.planner_mode if storyboard is None else "offline")
            # the API's own maximum length holds for narrated videos too (narration stretches them)
            planned = planning_pipeline(self.store, options=options, settings=self.settings).plan(spec, storyboard,
                                                                                    max_duration_s=API_MAX_DURATION_S)
        except InputError as exc:  # unknown provider, missing key, budget too small, unsegmentable storyboard
            return _error("invalid_request", str(exc))
        except LongvidError as exc:  # the planner itself failed (e.g. Gemini, with no fallback)
            return _error("planner_failed", str(exc))
        # Best-of-N: the budget lowers N as the render will (same rule, same price), and the
        # estimate counts every candidate at the dearest provider, as it counts the segments.
        candidates, lowered = plan_candidates(spec, planned.jobs, planned.capabilities.price_per_second_usd)
        dearest = planned.estimate.high_usd / max(1e-9, sum(j.generate_duration_s for j in planned.jobs))
        extra_usd = dearest * extra_candidate_seconds(candidates, planned.jobs)
        return {
            "storyboard": planned.storyboard.model_dump(mode="json"),
            "segments": [j.model_dump(mode="json") for j in planned.jobs],
            "estimated_cost_usd": round(planned.estimate.high_usd + extra_usd, 4),  # the most failover could cost
            "provider": planned.capabilities.name,
            "warnings": [*planned.warnings, *([lowered] if lowered else [])],
            "narration": planned.narration.record.model_dump(mode="json") if planned.narration else None,
            # what speech this plan paid for, [clip key, USD]: a render admitted with it books it
            # in its ledger (the renderer finds the clips in the store's cache and pays nothing)
            "speech_costs": [[key, cost] for key, cost in planned.narration.costs] if planned.narration else [],
        }


def unavailable_provider(requested: str, settings: Settings) -> str | None:
    """The first provider `requested` names that this server has no credentials for, or None
    (which variable is missing is the operator's business, not the caller's)."""
    return next((name for name in candidate_providers(requested, settings) if not provider_configured(name, settings)), None)


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
