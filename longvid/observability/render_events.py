"""What a render reports to the people who run the cluster, one call per event at the place
it happens (the pipeline, the generate loop, acceptance, the merge, the gates, a segment
task): each event moves its metric (declared in `metrics`, with bounded tags) and writes a
log line carrying the run, segment, provider and task it concerns (see `logs`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from . import logs, metrics

log = logging.getLogger("longvid.render")


class RenderEvents:
    """One render invocation's start and end. While it is open, every log line of this
    thread carries the run id."""

    def __init__(self, run_id: str, provider: str):
        self.provider = provider
        self._token = logs.bind(run_id=run_id)
        metrics.inc("longvid_renders_started", provider=provider)
        log.info("render started", extra={"provider": provider})

    def finished(self, cost_usd: float) -> None:
        metrics.inc("longvid_renders_finished", provider=self.provider)
        log.info("render finished: $%.2f committed", cost_usd, extra={"provider": self.provider})

    def failed(self, reason: str, detail: str = "") -> None:
        """`reason`: a short class of ending (failed, cancelled, taken_over), never the message."""
        metrics.inc("longvid_renders_failed", provider=self.provider, reason=reason)
        log.warning("render %s%s", reason, f": {detail}" if detail else "", extra={"provider": self.provider})

    def close(self) -> None:
        logs.unbind(self._token)


def judged(index: int, backend: str, passed: bool, quality: float, scores: dict[str, Any]) -> None:
    metrics.inc("longvid_judge_verdicts", backend=backend, verdict="pass" if passed else "fail")
    metrics.observe("longvid_judge_score", quality, backend=backend, check="quality")
    for check, value in scores.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.observe("longvid_judge_score", value, backend=backend, check=check)
    log.info("judge (%s): %s, quality %.3f", backend, "pass" if passed else "fail", quality, extra={"segment": index})


def regenerated(index: int, provider: str) -> None:
    metrics.inc("longvid_regenerations", provider=provider)
    log.info("sent back by the judge: a new seed", extra={"segment": index, "provider": provider})


def merged(seconds: float) -> None:
    metrics.observe("longvid_merge_seconds", seconds)
    log.info("merged in %.2f s", seconds)


def normalised(seconds: float) -> None:
    """A segment was normalised before the merge (the normalisation step calls this)."""
    metrics.observe("longvid_normalise_seconds", seconds)


def gpu_time(provider: str, model: str, resources: dict[str, float] | None, seconds: float,
             worker_seconds: float | None = None) -> None:
    """A segment's GPU time: a task that held GPUs for `seconds`, or, for a resident model
    (whose task holds none and only waits), the seconds its model worker ran (`worker_seconds`,
    what the ledger bills)."""
    metrics.inc("longvid_gpu_seconds", gpu_seconds(resources, seconds, worker_seconds), provider=provider, model=model)


def gpu_seconds(resources: dict[str, float] | None, seconds: float, worker_seconds: float | None) -> float:
    if worker_seconds is not None:
        return worker_seconds
    return (resources or {}).get("GPU", 0.0) * seconds


def throttled(provider: str, seconds: float) -> None:
    """Time a created task spent THROTTLED at the provider (waiting for the account's slot there)."""
    metrics.observe("longvid_queue_wait_seconds", seconds, provider=provider, stage="throttled")


def gate_state(identity: str, breaker: str, in_flight: int) -> None:
    """A provider account's gate after a change: its breaker and the slots it has handed out.
    `identity` is "<provider>-<account digest>" (see runtime.gates.gate_identity)."""
    provider, _, account = identity.rpartition("-")
    provider, account = (provider, account) if provider else (identity, "default")
    metrics.set_gauge("longvid_breaker_state", metrics.BREAKER_LEVEL.get(breaker, -1.0), provider=provider, account=account)
    metrics.set_gauge("longvid_segments_in_flight", in_flight, provider=provider, account=account)


class LoopEvents:
    """The generate loop's events. Remembers when a segment started waiting for a gate and
    when its task was created (for the wait and latency histograms), and which ledger
    charges were already counted (so a resumed run never counts an earlier invocation's
    money again)."""

    def __init__(self, ledger_entries: Iterable[Any], clock=time.monotonic):
        self._clock = clock
        self._waiting_since: dict[int, float] = {}
        self._created_at: dict[int, float] = {}
        self._counted = charged_keys(ledger_entries)

    def gate_answer(self, index: int, provider: str | None) -> None:
        """The router answered: a provider (its slot is held) or None (wait, or none is left)."""
        now = self._clock()
        if provider is None:
            self._waiting_since.setdefault(index, now)
            return
        waited = now - self._waiting_since.pop(index, now)
        metrics.observe("longvid_queue_wait_seconds", waited, provider=provider, stage="gate")

    def created(self, index: int, provider: str, task_id: str) -> None:
        self._created_at[index] = self._clock()
        log.info("task created", extra={"segment": index, "provider": provider, "task_id": task_id})

    def collected(self, index: int, provider: str, model: str, task_id: str) -> None:
        """The task's bytes are here: create → downloaded (tasks created in this invocation)."""
        started = self._created_at.pop(index, None)
        if started is not None:
            metrics.observe("longvid_provider_task_seconds", self._clock() - started, provider=provider, model=model)
        log.info("task downloaded", extra={"segment": index, "provider": provider, "task_id": task_id})

    def error(self, index: int, provider: str, code: str, reason: str) -> None:
        metrics.inc("longvid_provider_errors", provider=provider, code=code)
        log.warning("provider error %s: %s", code, reason, extra={"segment": index, "provider": provider})

    def segment(self, index: int, provider: str | None, model: str | None, outcome: str) -> None:
        """A segment's outcome in this invocation: accepted, cached, failed or unfinished."""
        metrics.inc("longvid_segments", provider=provider, model=model, outcome=outcome)
        (log.info if outcome in ("accepted", "cached") else log.warning)(
            "segment %s", outcome, extra={"segment": index, "provider": provider})

    def charged(self, ledger_entries: Iterable[Any]) -> None:
        """Count each ledger charge once, when it appears (the manifest's cost is their sum)."""
        for key, provider, usd in new_charges(ledger_entries, self._counted):
            self._counted.add(key)
            metrics.inc("longvid_cost_usd", usd, provider=provider)


def charged_keys(ledger_entries: Iterable[Any]) -> set[str]:
    """The keys of the entries already charged (by an earlier invocation, on resume)."""
    return {e.key for e in ledger_entries if _charged(e)}


def new_charges(ledger_entries: Iterable[Any], counted: set[str]) -> list[tuple[str, str, float]]:
    """(key, provider, USD) of each charged ledger entry not yet in `counted`. A reserved
    entry waits for its charge; a released one cost nothing."""
    return [(e.key, e.provider, e.committed_usd) for e in ledger_entries if _charged(e) and e.key not in counted]


def _charged(entry: Any) -> bool:
    return getattr(entry.state, "value", entry.state) == "charged"
