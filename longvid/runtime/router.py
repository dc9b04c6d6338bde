"""The runtime side of routing: which provider makes each segment of one render.

The decisions are pure (`providers.routing`: ranking, breaker, shared clip lengths); this
object holds what they act on for one render: the candidate providers' capabilities, their
clients (created on first use), the cluster-wide gates, and which provider already failed
which segment.
"""

from __future__ import annotations

from ..errors import InputError
from ..providers import create_provider, provider_capabilities, provider_configured
from ..providers.base import ProviderCapabilities, VideoProvider
from ..providers.registry import available_providers
from ..providers.routing import SegmentNeeds, common_durations, rank, requested_providers
from ..settings import Settings
from ..spec import RenderSpec, SegmentJob
from .gates import Admission, GateConfig, LocalGates, gate_identity

WAIT = "wait"  # a candidate is busy or its breaker is open: try again shortly
EXHAUSTED = "exhausted"  # every capable provider failed this segment


def candidate_providers(requested: str, settings: Settings) -> list[str]:
    """The providers a spec's `provider` names ("auto", "runway", "runway,veo")."""
    try:
        return requested_providers(
            requested, available_providers(), lambda n: provider_configured(n, settings),
            lambda n: provider_capabilities(n, settings).runs_remotely,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None


def combined_capabilities(requested: str, settings: Settings) -> ProviderCapabilities:
    """What a render over these candidates can rely on whichever provider makes a segment:
    lengths they all allow, ratios they all make, traits they all have, and the highest
    price: the most a segment may cost whichever provider makes it (the cost estimate's
    bounds come from longvid.providers.estimate)."""
    names = candidate_providers(requested, settings)
    caps = [provider_capabilities(n, settings) for n in names]
    if len(caps) == 1:
        return caps[0]
    try:
        durations = common_durations([c.durations for c in caps])
    except ValueError:
        raise InputError(f"providers {', '.join(names)} share no clip length; route between fewer of them") from None
    ratios = tuple(r for r in caps[0].aspect_ratios if all(r in c.aspect_ratios for c in caps))
    return ProviderCapabilities(
        name=",".join(names),
        model="routed",
        durations=durations,
        aspect_ratios=ratios,
        image_conditioning=all(c.image_conditioning for c in caps),
        audio=all(c.audio for c in caps),
        runs_remotely=all(c.runs_remotely for c in caps),
        uses_gpu=any(c.uses_gpu for c in caps),
        price_per_second_usd=max(c.price_per_second_usd for c in caps),
        idempotent_submit=all(c.idempotent_submit for c in caps),
        traits=frozenset.intersection(*(c.traits for c in caps)),
    )


class SegmentRouter:
    def __init__(self, spec: RenderSpec, run_id: str, settings: Settings, gates=None, names: list[str] | None = None):
        self.spec = spec
        self.run_id = run_id
        self.settings = settings
        self.names = names or candidate_providers(spec.provider, settings)
        self.caps = {n: provider_capabilities(n, settings) for n in self.names}
        gates = gates if gates is not None else LocalGates()
        self._clients: dict[str, VideoProvider] = {}
        self._gates = {n: gates.gate(gate_identity(n, settings.account(n)),
                                     GateConfig.from_settings(n, self.caps[n].max_concurrent_tasks, settings.gates))
                       for n in self.names}
        self.failed: dict[int, dict[str, str]] = {}  # segment -> provider -> why it failed there

    # -- clients and capabilities -------------------------------------------------------

    def capabilities(self, name: str) -> ProviderCapabilities:
        if name not in self.caps:  # a task recorded by an earlier invocation with other candidates
            self.caps[name] = provider_capabilities(name, self.settings)
        return self.caps[name]

    def client(self, name: str) -> VideoProvider:
        if name not in self._clients:
            self._clients[name] = create_provider(name, self.settings)
        return self._clients[name]

    def close(self) -> None:
        for client in self._clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()

    # -- choosing -----------------------------------------------------------------------

    def holder(self, index: int) -> str:
        return f"{self.run_id}/{index}"

    def choose(self, job: SegmentJob, conditioned: bool, budget_left_usd: float | None) -> tuple[str | None, str]:
        """The provider for this segment's next task, with a gate slot held for it; or
        (None, WAIT) when the right one is busy or every healthy one's breaker is open, or
        (None, EXHAUSTED) when every capable provider has failed this segment."""
        tried = self.failed.get(job.index, {})
        needs = SegmentNeeds(
            quality=self.spec.quality,
            aspect=self.spec.aspect_ratio,
            duration_s=job.generate_duration_s,
            style=f"{job.scene.visual_style} {self.spec.prompt}",
            needs_image=conditioned,
            budget_left_usd=budget_left_usd,
        )
        ranked = rank([self.caps[n] for n in self.names if n not in tried], needs)
        blocked = False
        for name in ranked:
            answer = self._gates[name].try_acquire(self.holder(job.index))
            if answer == Admission.OK:
                return name, Admission.OK
            if answer == Admission.BUSY:
                return None, WAIT  # the preferred provider is healthy but full: wait for it
            blocked = True  # breaker open: the next candidate, or wait for the probe
        return (None, WAIT) if blocked else (None, EXHAUSTED)

    def failure_summary(self, index: int) -> str:
        tried = self.failed.get(index, {})
        return "; ".join(f"{name}: {why}" for name, why in tried.items()) or "no capable provider"

    def exclude(self, index: int, name: str, reason: str) -> bool:
        """`name` failed segment `index` for good; True if another candidate is left."""
        self.failed.setdefault(index, {})[name] = reason[:300]
        return any(n not in self.failed[index] for n in self.names)

    # -- gates --------------------------------------------------------------------------

    def hold(self, name: str, index: int) -> None:
        if name in self._gates:  # not when a task of an earlier invocation's other candidates is polled
            self._gates[name].hold(self.holder(index))

    def release(self, name: str, index: int) -> None:
        if name in self._gates:
            self._gates[name].release(self.holder(index))

    def release_all(self) -> None:
        """Drop every slot this run holds (those of a crashed earlier invocation, or this
        one's on the way out)."""
        for gate in self._gates.values():
            gate.release_prefix(f"{self.run_id}/")

    def record(self, name: str, ok: bool) -> None:
        if name in self._gates:
            self._gates[name].record(ok)

    def health(self) -> dict[str, dict]:
        return {n: gate.snapshot() for n, gate in self._gates.items()}

    def cancel_task(self, name: str, task_id: str) -> None:
        """Cancel a created task at its provider; raises when it was not cancelled (it keeps
        running and resume polls it)."""
        self.client(name).cancel(task_id)
