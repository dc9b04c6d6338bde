"""Which provider makes a segment, and when to stop asking one that keeps failing.

Pure decisions with an injectable clock: the circuit breaker per provider and the ranking
of capable providers for a segment. The runtime feeds them outcomes and follows them.
"""

from __future__ import annotations

import enum
import math
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..planning.segmentation import DurationRule
from ..spec import AspectRatio, QualityTier
from .base import ProviderCapabilities, Trait


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    """From the design: open at 50% errors over a window; try again after 30 s."""

    window: int = 10  # most recent calls considered
    min_calls: int = 4  # no verdict on fewer calls
    failure_ratio: float = 0.5
    open_seconds: float = 30.0


@dataclass
class CircuitBreaker:
    config: BreakerConfig = field(default_factory=BreakerConfig)
    state: BreakerState = BreakerState.CLOSED
    opened_at: float = 0.0
    outcomes: deque = field(default_factory=deque)
    probing: bool = False  # a half-open trial call is in flight

    def allow(self, now: float) -> bool:
        """May a call go to this provider now? In half-open, exactly one trial call goes."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.config.open_seconds:
            self.state, self.probing = BreakerState.HALF_OPEN, False
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def record(self, ok: bool, now: float) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self.probing = False
            if ok:
                self.state = BreakerState.CLOSED
                self.outcomes.clear()
            else:
                self.state, self.opened_at = BreakerState.OPEN, now
            return
        self.outcomes.append(ok)
        while len(self.outcomes) > self.config.window:
            self.outcomes.popleft()
        failures = sum(1 for o in self.outcomes if not o)
        if len(self.outcomes) >= self.config.min_calls and failures / len(self.outcomes) >= self.config.failure_ratio:
            self.state, self.opened_at = BreakerState.OPEN, now


CREATIVE_WORDS = ("experimental", "creative", "surreal", "abstract", "dreamlike", "psychedelic", "avant-garde")
_CREATIVE = re.compile(r"\b(" + "|".join(re.escape(w) for w in CREATIVE_WORDS) + r")\b", re.IGNORECASE)


@dataclass(frozen=True)
class SegmentNeeds:
    quality: QualityTier
    aspect: AspectRatio
    duration_s: float
    style: str = ""
    needs_image: bool = False  # the segment is conditioned on an image
    budget_left_usd: float | None = None


def capable(caps: ProviderCapabilities, needs: SegmentNeeds) -> bool:
    if needs.aspect not in caps.aspect_ratios:
        return False
    if needs.needs_image and not caps.image_conditioning:
        return False
    try:
        caps.durations.fit(needs.duration_s, 24)
    except ValueError:
        return False
    return True


def rank(candidates: Sequence[ProviderCapabilities], needs: SegmentNeeds) -> list[str]:
    """Capable providers, best first. The design's rules: premium with budget -> a provider
    with the PREMIUM trait (Veo); creative or experimental style -> one with the CREATIVE
    trait (Runway); otherwise the cheaper. What cannot be afforded goes last (the ledger
    refuses it later if it still cannot)."""
    usable = [c for c in candidates if capable(c, needs)]
    order = {c.name: i for i, c in enumerate(candidates)}  # ties keep the caller's order

    def cost(c: ProviderCapabilities) -> float:
        return c.price_per_second_usd * c.durations.fit(needs.duration_s, 24)

    def key(c: ProviderCapabilities):
        affordable = needs.budget_left_usd is None or cost(c) <= needs.budget_left_usd + 1e-9
        preferred = 1
        if needs.quality is QualityTier.PREMIUM and Trait.PREMIUM in c.traits and affordable:
            preferred = 0
        elif needs.quality is not QualityTier.PREMIUM and _CREATIVE.search(needs.style) and Trait.CREATIVE in c.traits:
            preferred = 0
        return (not affordable, preferred, round(cost(c), 6), order[c.name])

    return [c.name for c in sorted(usable, key=key)]


AUTO = "auto"


def requested_providers(requested: str, known: Sequence[str], configured: Callable[[str], bool], remote: Callable[[str], bool]) -> list[str]:
    """The candidate providers a render may route between, in the user's order.

    "auto": every configured provider that generates remotely (the paid ones); the offline
    preview only when none is configured, so a key-less machine still renders and a paid
    video never gets procedural preview segments mixed in. "runway,veo": those, in that
    order of preference for ties. "runway": only Runway (no failover).
    """
    names = [n.strip() for n in requested.split(",") if n.strip()]
    if names == [AUTO]:
        paid = [n for n in known if remote(n) and configured(n)]
        return paid or ["preview"]
    if not names or AUTO in names:
        raise ValueError(f"provider {requested!r}: use 'auto', one provider name, or a comma-separated list")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown provider {unknown[0]!r}; choose one of: {', '.join(known)} (or 'auto')")
    if len(set(names)) != len(names):
        raise ValueError(f"provider list {requested!r} names one provider twice")
    return names


def common_durations(rules: Sequence[DurationRule]) -> DurationRule:
    """Clip lengths every candidate can make, so a segment can fail over to any of them:
    the intersection of the discrete lengths, clipped to the common range."""
    low = max(r.shortest_s for r in rules)
    high = min(r.longest_s for r in rules)
    discrete = [set(r.allowed) for r in rules if r.allowed is not None]
    if not discrete:
        if low > high:
            raise ValueError("these providers share no clip length")
        # A frame count every candidate makes (k * step + 1 for each of their steps).
        return DurationRule(min_s=low, max_s=high, frame_step=math.lcm(*(r.frame_step for r in rules)))
    shared = set.intersection(*discrete)
    allowed = tuple(sorted(s for s in shared if low - 1e-9 <= s <= high + 1e-9))
    if not allowed:
        raise ValueError("these providers share no clip length")
    return DurationRule(min_s=allowed[0], max_s=allowed[-1], allowed=allowed)


def counts_against_provider(failure_code: str | None) -> bool:
    """Does this failure say something about the provider's health (for its breaker)?
    Content refusals (SAFETY), bad inputs and our own budget say nothing about it."""
    from ._http import is_safety_refusal

    if failure_code is None or is_safety_refusal(failure_code):
        return False
    return not failure_code.upper().startswith(("ASSET.", "INPUT.", "HTTP.REJECTED", "HTTP.AUTH", "BUDGET"))
