"""The cost estimate of a render, in one place: what its segments cost at the cheapest and
at the dearest of its candidate providers. The budget check refuses a render that even the
cheapest cannot make, and warns when failing over to a dearer one could pass the budget;
the plan (CLI and API) shows both bounds. Pure arithmetic."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class CostEstimate:
    low_usd: float  # every segment at the cheapest candidate
    high_usd: float  # every segment at the dearest candidate (failover's worst case)
    cheapest: str
    dearest: str

    def to_dict(self) -> dict:
        return {"low_usd": round(self.low_usd, 4), "high_usd": round(self.high_usd, 4),
                "cheapest": self.cheapest, "dearest": self.dearest}


def estimate_cost(seconds: Iterable[float], price_per_second_usd: Mapping[str, float]) -> CostEstimate:
    """The bounds for segments of `seconds` (generated lengths) over these candidates."""
    total_s = sum(seconds)
    cheapest = min(price_per_second_usd, key=lambda n: (price_per_second_usd[n], n))
    dearest = max(price_per_second_usd, key=lambda n: (price_per_second_usd[n], n))
    return CostEstimate(low_usd=price_per_second_usd[cheapest] * total_s, high_usd=price_per_second_usd[dearest] * total_s,
                        cheapest=cheapest, dearest=dearest)


def budget_verdict(estimate: CostEstimate, budget_usd: float | None) -> tuple[str | None, str | None]:
    """(refusal, warning) for this estimate under `budget_usd`: a refusal when even the
    cheapest candidate cannot make the video within it, a warning when failing over to the
    dearest could not be afforded in full."""
    if budget_usd is None:
        return None, None
    if estimate.low_usd > budget_usd + 1e-9:
        return (f"estimated cost ${estimate.low_usd:.2f} exceeds the budget ${budget_usd:.2f}; "
                "raise --budget or shorten --duration"), None
    if estimate.high_usd > budget_usd + 1e-9:
        return None, (f"the budget ${budget_usd:.2f} covers the video at {estimate.cheapest} (${estimate.low_usd:.2f}) "
                      f"but not all of it at {estimate.dearest} (${estimate.high_usd:.2f}): segments that fail over "
                      "there may be refused by the budget")
    return None, None
