"""Which provider makes a segment, and when to stop asking one that keeps failing.

Pure decisions with an injectable clock: the circuit breaker per provider and the ranking
of capable providers for a segment. The runtime feeds them outcomes and follows them.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..spec import AspectRatio, QualityTier
from .base import ProviderCapabilities


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
    """Capable providers, best first. The design's rules: premium with budget -> Veo;
    creative or experimental style -> Runway; otherwise the cheaper. What cannot be afforded
    goes last (the ledger refuses it later if it still cannot)."""
    usable = [c for c in candidates if capable(c, needs)]

    def cost(c: ProviderCapabilities) -> float:
        return c.price_per_second_usd * c.durations.fit(needs.duration_s, 24)

    def key(c: ProviderCapabilities):
        affordable = needs.budget_left_usd is None or cost(c) <= needs.budget_left_usd + 1e-9
        preferred = 1
        if needs.quality is QualityTier.PREMIUM and c.name == "veo" and affordable:
            preferred = 0
        elif any(word in needs.style.lower() for word in CREATIVE_WORDS) and c.name == "runway":
            preferred = 0
        return (not affordable, preferred, cost(c), c.name)

    return [c.name for c in sorted(usable, key=key)]
