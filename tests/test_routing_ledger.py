"""Pure provider decisions: the circuit breaker, the ranking, and the budget ledger."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvid.planning import DurationRule
from longvid.providers import provider_capabilities, register_provider, registry
from longvid.providers.base import ProviderCapabilities, Trait
from longvid.providers.ledger import BudgetExceeded, CostLedger, EntryState
from longvid.providers.routing import BreakerConfig, BreakerState, CircuitBreaker, SegmentNeeds, rank
from longvid.settings import Settings
from longvid.spec import AspectRatio, QualityTier

RUNWAY = ProviderCapabilities("runway", "gen4_turbo", DurationRule(allowed=(5.0, 10.0)), image_conditioning=True,
                              runs_remotely=True, price_per_second_usd=0.05, traits=frozenset({Trait.CREATIVE}))
VEO = ProviderCapabilities("veo", "veo-3.1", DurationRule(allowed=(4.0, 6.0, 8.0)),
                           aspect_ratios=(AspectRatio.LANDSCAPE, AspectRatio.PORTRAIT), image_conditioning=True,
                           runs_remotely=True, price_per_second_usd=0.40, traits=frozenset({Trait.PREMIUM}))
CHEAP = replace(VEO, name="veo-fast", price_per_second_usd=0.15, traits=frozenset())  # a cheaper model with no trait


def needs(**kw):
    return SegmentNeeds(**{"quality": QualityTier.STANDARD, "aspect": AspectRatio.LANDSCAPE, "duration_s": 5.0, **kw})


def test_breaker_opens_at_half_errors_and_half_opens_after_30s():
    breaker = CircuitBreaker(BreakerConfig(window=10, min_calls=4, failure_ratio=0.5, open_seconds=30))
    for ok in (True, False, True):
        breaker.record(ok, now=0)
    assert breaker.state is BreakerState.CLOSED  # 3 calls: no verdict yet
    breaker.record(False, now=1)  # 2 of 4 failed
    assert breaker.state is BreakerState.OPEN and not breaker.allow(now=10)
    assert breaker.allow(now=31) and breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow(now=31.5)  # one trial call at a time
    breaker.record(False, now=32)
    assert breaker.state is BreakerState.OPEN and not breaker.allow(now=50)
    assert breaker.allow(now=63)
    breaker.record(True, now=64)
    assert breaker.state is BreakerState.CLOSED and breaker.allow(now=64)


def test_ranking_follows_the_design_rules():
    providers = [RUNWAY, VEO, CHEAP]
    assert rank(providers, needs())[0] == "runway"  # the cheapest for 5 s
    assert rank(providers, needs(quality=QualityTier.PREMIUM, budget_left_usd=100))[0] == "veo"
    assert rank(providers, needs(quality=QualityTier.PREMIUM, budget_left_usd=0.5))[0] != "veo"  # not affordable
    assert rank(providers, needs(style="surreal dream"))[0] == "runway"
    assert rank(providers, needs(aspect=AspectRatio.SQUARE)) == ["runway"]  # Veo has no 1:1
    assert rank(providers, needs(duration_s=9.0)) == ["runway"]  # longer than Veo's 8 s


def test_a_registered_provider_with_the_premium_trait_is_ranked_like_veo(monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))  # the registration ends with the test
    register_provider("studio", replace(VEO, name="studio", price_per_second_usd=0.30), lambda settings: None)
    studio = provider_capabilities("studio", Settings())
    providers = [RUNWAY, CHEAP, studio]
    assert rank(providers, needs(quality=QualityTier.PREMIUM, budget_left_usd=100))[0] == "studio"
    assert rank(providers, needs(quality=QualityTier.PREMIUM, budget_left_usd=0.5))[0] != "studio"  # not affordable
    assert rank(providers, needs())[0] == "runway"  # no preference outside premium: the cheapest
    plain = replace(studio, traits=frozenset())
    assert rank([RUNWAY, CHEAP, plain], needs(quality=QualityTier.PREMIUM, budget_left_usd=100))[0] == "runway"  # by price
    creative = replace(CHEAP, name="dreams", traits=frozenset({Trait.CREATIVE}))
    assert rank([replace(RUNWAY, traits=frozenset()), creative], needs(style="surreal dream", duration_s=6.0))[0] == "dreams"


def test_routed_capabilities_keep_only_the_traits_every_candidate_has():
    from longvid.runtime.router import combined_capabilities

    assert combined_capabilities("veo", Settings()).traits == {Trait.PREMIUM}
    assert combined_capabilities("runway", Settings()).traits == {Trait.CREATIVE}
    assert combined_capabilities("runway,veo", Settings()).traits == frozenset()


def test_ledger_reserves_charges_and_releases():
    ledger = CostLedger(budget_usd=1.0)
    ledger.reserve("s0/a0", 0, "runway", 0.25)
    ledger.reserve("s1/a0", 1, "runway", 0.25)
    assert ledger.committed_usd == 0.5
    ledger.charge("s0/a0", 0.20)
    ledger.release("s1/a0", note="refused before any work")
    assert ledger.committed_usd == 0.2
    assert ledger.by_segment() == {0: 0.2, 1: 0.0} and ledger.by_provider() == {"runway": 0.2}
    with pytest.raises(BudgetExceeded, match="budget"):
        ledger.reserve("s2/a0", 2, "veo", 0.9)
    assert [e.state for e in ledger.entries] == [EntryState.CHARGED, EntryState.RELEASED]


@settings(max_examples=200, deadline=None)
@given(
    budget=st.floats(min_value=0, max_value=20),
    calls=st.lists(st.tuples(st.floats(min_value=0.01, max_value=5), st.sampled_from(["charge", "release", "worst", "keep"])), max_size=40),
)
def test_budget_is_never_exceeded(budget, calls):
    """Whatever the sequence of estimates and outcomes, committed spend stays in budget.
    Estimates are upper bounds (the price table's maximum per second), so a reported cost
    is at most its reservation."""
    ledger = CostLedger(budget_usd=budget)
    for i, (estimate, outcome) in enumerate(calls):
        try:
            ledger.reserve(f"k{i}", i, "p", estimate)
        except BudgetExceeded:
            continue
        if outcome == "charge":
            ledger.charge(f"k{i}", estimate * 0.8)
        elif outcome == "release":
            ledger.release(f"k{i}")
        elif outcome == "worst":
            ledger.charge(f"k{i}", estimate)
        assert ledger.committed_usd <= budget + 1e-6


def test_a_cost_above_its_estimate_is_recorded_and_stops_further_calls():
    ledger = CostLedger(budget_usd=1.0)
    ledger.reserve("a", 0, "p", 0.5)
    ledger.charge("a", 0.9)  # what was paid is recorded as paid, never hidden
    assert ledger.committed_usd == 0.9
    with pytest.raises(BudgetExceeded):
        ledger.reserve("b", 1, "p", 0.2)


def test_failure_decisions():
    from longvid.providers._http import CorruptDownload
    from longvid.providers.base import GenerationFailed
    from longvid.runtime.pipeline import FailureDecision, failure_decision

    assert failure_decision(GenerationFailed("x", "INTERNAL"), 1, 2) is FailureDecision.NEW_TASK
    assert failure_decision(GenerationFailed("x", "INTERNAL"), 2, 2) is FailureDecision.GIVE_UP
    assert failure_decision(GenerationFailed("x", "SAFETY.INPUT.TEXT"), 1, 2) is FailureDecision.GIVE_UP
    assert failure_decision(GenerationFailed("x", "TIMEOUT"), 1, 2) is FailureDecision.LEAVE_SUBMITTED
    assert failure_decision(CorruptDownload("cut short"), 1, 2) is FailureDecision.COLLECT_AGAIN
    assert failure_decision(ValueError("a bug"), 1, 2) is FailureDecision.GIVE_UP
