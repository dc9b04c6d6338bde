"""Admission to a provider across the whole cluster: concurrency slots and the circuit breaker.

A provider's concurrency limit is per account, not per process: two renders (or a batch job
and the Serve app) on one Ray cluster share it. So each provider account gets one gate, a
named Ray actor every driver on the cluster finds by name; without Ray (tests, the inline
runner) the same class runs in-process. The gate is pure bookkeeping with an injectable
clock; slots are leases, so a driver that dies holding one cannot block the provider for
ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..observability import render_events
from ..providers.routing import BreakerConfig, BreakerState, CircuitBreaker
from ..settings import GateSettings, account_digest

GATE_NAMESPACE = "longvid"
HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray's marker resource of the head node
DEFAULT_LEASE_S = 3 * 3600.0  # longer than any task's timeout


class Admission:
    """What try_acquire answers (plain strings: they cross the Ray actor boundary)."""

    OK = "ok"
    BUSY = "busy"  # every slot taken: wait for one (not a health problem)
    OPEN = "open"  # the breaker is open: route elsewhere or wait for the half-open probe


@dataclass(frozen=True)
class GateConfig:
    max_concurrent: int | None = None  # None: no limit beyond Ray's resource requests
    lease_s: float = DEFAULT_LEASE_S
    breaker: BreakerConfig = field(default_factory=BreakerConfig)

    @classmethod
    def from_settings(cls, provider: str, default_max: int | None, settings: GateSettings) -> GateConfig:
        """The provider's configured limit (LONGVID_MAX_CONCURRENT_<PROVIDER>, 0: no limit; unset:
        `default_max`) and the breaker's open time (LONGVID_BREAKER_OPEN_S)."""
        configured = settings.max_concurrent.get(provider.lower())
        limit = default_max if configured is None else (configured or None)
        return cls(max_concurrent=limit, breaker=BreakerConfig(open_seconds=settings.breaker_open_s))


class ProviderGate:
    """One provider account's slots and breaker. Methods are plain calls so the class works
    the same in-process and as a Ray actor."""

    def __init__(self, provider: str, config: GateConfig | None = None, clock: Callable[[], float] = time.monotonic):
        self.provider = provider
        self.config = config or GateConfig()
        self._clock = clock
        self._breaker = CircuitBreaker(self.config.breaker)
        self._leases: dict[str, float] = {}  # holder -> lease expiry
        self._probe: str | None = None  # the holder sent as the half-open breaker's one trial call
        self._calls = 0
        self._failures = 0

    def configure(self, config: GateConfig) -> None:
        """Adopt a driver's settings (limits, breaker timing); state is kept. The latest
        driver's settings win, so set LONGVID_MAX_CONCURRENT_* alike on every driver."""
        self.config = config
        self._breaker.config = config.breaker

    def _expire(self, now: float) -> None:
        for holder, until in list(self._leases.items()):
            if until <= now:
                self.release(holder)

    def try_acquire(self, holder: str) -> str:
        """A slot for `holder` (a run's segment), or why not. Re-acquiring is a no-op."""
        now = self._clock()
        self._expire(now)
        if holder in self._leases:
            return Admission.OK
        # Health before room: a full provider whose breaker is open must send segments on to
        # the next provider, not make them wait for a slot.
        if self._refuses(now):
            return Admission.OPEN
        limit = self.config.max_concurrent
        if limit is not None and len(self._leases) >= limit:
            return Admission.BUSY
        probe_call = self._breaker.state is not BreakerState.CLOSED
        self._breaker.allow(now)  # takes the half-open probe when this is it
        if probe_call:
            self._probe = holder
        self._leases[holder] = now + self.config.lease_s
        self._publish()
        return Admission.OK

    def _refuses(self, now: float) -> bool:
        """Would the breaker refuse a call now? (Without taking the half-open probe.)"""
        breaker = self._breaker
        if breaker.state is BreakerState.OPEN:
            return now - breaker.opened_at < breaker.config.open_seconds
        return breaker.state is BreakerState.HALF_OPEN and breaker.probing

    def hold(self, holder: str) -> None:
        """Take a slot whatever the limit: for a task that already exists at the provider
        (a resumed render polling it), which occupies the provider's capacity anyway."""
        self._leases[holder] = self._clock() + self.config.lease_s
        self._publish()

    def release(self, holder: str) -> None:
        self._leases.pop(holder, None)
        if holder == self._probe:  # the trial call ended without an outcome (e.g. a cache hit): allow another
            self._probe = None
            self._breaker.probing = False
        self._publish()

    def release_prefix(self, prefix: str) -> int:
        """Drop every slot of one run (a resumed run after its driver died)."""
        stale = [h for h in self._leases if h.startswith(prefix)]
        for holder in stale:
            self.release(holder)
        return len(stale)

    def record(self, ok: bool) -> str:
        """A call's outcome, for the breaker. Returns the breaker's state after it."""
        self._calls += 1
        self._failures += 0 if ok else 1
        self._probe = None
        self._breaker.record(ok, self._clock())
        self._publish()
        return self._breaker.state.value

    def _publish(self) -> None:
        """The fleet's view of this account (a gauge each; a no-op outside Ray). The gate
        publishes it itself: it is the one place that knows, whichever driver asked."""
        render_events.gate_state(self.provider, self._breaker.state.value, len(self._leases))

    def snapshot(self) -> dict:
        now = self._clock()
        self._expire(now)
        breaker = self._breaker
        if breaker.state is BreakerState.OPEN and now - breaker.opened_at >= breaker.config.open_seconds:
            state = BreakerState.HALF_OPEN.value  # the next call is the probe
        else:
            state = breaker.state.value
        recent = list(breaker.outcomes)
        return {
            "provider": self.provider,
            "breaker": state,
            "retry_in_s": round(max(0.0, breaker.config.open_seconds - (now - breaker.opened_at)), 1) if state == "open" else 0.0,
            "recent_failures": sum(1 for ok in recent if not ok),
            "recent_calls": len(recent),
            "calls": self._calls,
            "failures": self._failures,
            "in_flight": len(self._leases),
            "max_concurrent": self.config.max_concurrent,
        }


def gate_identity(provider: str, account: Mapping[str, str]) -> str:
    """Gates are per provider account and endpoint: a digest of its account settings
    (`Settings.account`; never the settings themselves, which hold the key), so two keys or
    a fake server get their own, and the same account always finds the same gate."""
    return f"{provider}-{account_digest(account)}"


class LocalGates:
    """In-process gates (one process, no Ray): the inline runner and unit tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._gates: dict[str, ProviderGate] = {}
        self._clock = clock

    def gate(self, identity: str, config: GateConfig) -> ProviderGate:
        """The gate of one provider account (see gate_identity)."""
        if identity not in self._gates:
            self._gates[identity] = ProviderGate(identity, config, self._clock)
        return self._gates[identity]


# Gate methods that take a slot for their first argument, the holder.
_TAKES_A_SLOT = frozenset({"try_acquire", "hold"})
GATE_CALL_TIMEOUT_S = 30.0


class _RemoteGate:
    """A ProviderGate actor called like a local one: each method call waits for its answer.

    Calls are retried through an actor restart (max_task_retries), so one that timed out
    here may still run later. A call that takes a slot is then followed by a release of its
    holder: actor calls from one caller run in order, so the release comes after it, and a
    slot nobody knows it holds never sits out the lease (hours)."""

    def __init__(self, ray, actor, timeout_s: float = GATE_CALL_TIMEOUT_S):
        self._ray, self._actor, self._timeout_s = ray, actor, timeout_s

    def __getattr__(self, method: str):
        remote = getattr(self._actor, method)

        def call(*args):
            try:
                return self._ray.get(remote.remote(*args), timeout=self._timeout_s)
            except self._ray.exceptions.GetTimeoutError:
                if method in _TAKES_A_SLOT and args:
                    self._actor.release.remote(args[0])
                raise

        return call


class RayGates:
    """One named, detached actor per provider account, shared by every driver on the
    cluster (found by name, created by whoever asks first)."""

    def __init__(self) -> None:
        import ray

        self._ray = ray
        # max_task_retries: a call made while the actor restarts waits for it instead of failing the render.
        self._actor_class = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(ProviderGate)

    def gate(self, identity: str, config: GateConfig) -> _RemoteGate:
        # On the head node, which lives as long as the cluster: on a worker that was lost (a
        # reclaimed spot node, a scale-down) the gate restarted elsewhere empty, forgetting the
        # slots in use, and calls during the restart failed the renders that made them.
        actor = self._actor_class.options(
            name=f"gate-{identity}", namespace=GATE_NAMESPACE, lifetime="detached", get_if_exists=True,
            resources={HEAD_NODE_RESOURCE: 0.001},
        ).remote(identity, config)
        actor.configure.remote(config)  # an existing gate takes this driver's settings (actor calls run in order)
        return _RemoteGate(self._ray, actor)
