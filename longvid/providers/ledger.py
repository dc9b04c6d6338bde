"""The cost ledger: every paid call is estimated and reserved before it is made and
reconciled after, so a render never starts a call that could take it past its budget.

Pure bookkeeping, no I/O: the pipeline stores `entries` in the manifest after each change.
Failed, retried and discarded attempts stay in the ledger; nothing paid goes unrecorded.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict


class EntryState(str, enum.Enum):
    RESERVED = "reserved"  # the call is about to be / has been made; cost not known yet
    CHARGED = "charged"  # the provider finished (or failed after charging): final cost known
    RELEASED = "released"  # the call was never made or the provider does not charge for it


# Ledger providers whose calls answer in the same request and never get a task id (the Gemini
# vision judge books as "gemini-judge"): an entry of theirs without one is no unanswered create.
TASKLESS_PROVIDERS = frozenset({"gemini-judge"})


class LedgerEntry(BaseModel):
    """One paid call, as the manifest's `ledger` stores it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str  # e.g. "seg3/call2": segment 3's second paid call (the pipeline numbers them)
    segment: int
    provider: str
    estimate_usd: float
    state: EntryState = EntryState.RESERVED
    cost_usd: float | None = None
    task_id: str | None = None
    note: str = ""

    @property
    def committed_usd(self) -> float:
        """What this entry counts against the budget now."""
        if self.state is EntryState.RESERVED:
            return self.estimate_usd
        if self.state is EntryState.CHARGED:
            return self.cost_usd if self.cost_usd is not None else self.estimate_usd
        return 0.0


class BudgetExceeded(RuntimeError):
    pass


@dataclass
class CostLedger:
    budget_usd: float | None = None
    entries: list[LedgerEntry] = field(default_factory=list)

    @property
    def committed_usd(self) -> float:
        return round(sum(e.committed_usd for e in self.entries), 6)

    def can_afford(self, estimate_usd: float) -> bool:
        return self.budget_usd is None or self.committed_usd + estimate_usd <= self.budget_usd + 1e-9

    def reserve(self, key: str, segment: int, provider: str, estimate_usd: float) -> LedgerEntry:
        """Reserve before calling the provider; refuses a call that could pass the budget."""
        if any(e.key == key for e in self.entries):
            raise ValueError(f"ledger entry {key} already exists")
        if not self.can_afford(estimate_usd):
            raise BudgetExceeded(
                f"segment {segment} on {provider} would cost up to ${estimate_usd:.2f}; "
                f"${self.committed_usd:.2f} of the ${self.budget_usd:.2f} budget is committed"
            )
        entry = LedgerEntry(key=key, segment=segment, provider=provider, estimate_usd=estimate_usd)
        self.entries.append(entry)
        return entry

    def _update(self, key: str, **changes) -> LedgerEntry:
        for i, entry in enumerate(self.entries):
            if entry.key == key:
                self.entries[i] = entry.model_copy(update=changes)
                return self.entries[i]
        raise KeyError(key)

    def attach_task(self, key: str, task_id: str) -> LedgerEntry:
        return self._update(key, task_id=task_id)

    def charge(self, key: str, cost_usd: float | None = None, note: str = "") -> LedgerEntry:
        """The provider's reported cost when it has one, else the estimate."""
        entry = next(e for e in self.entries if e.key == key)
        return self._update(key, state=EntryState.CHARGED, cost_usd=entry.estimate_usd if cost_usd is None else cost_usd, note=note)

    def release(self, key: str, note: str = "") -> LedgerEntry:
        """The call was never made (or was refused before any work): nothing is owed."""
        return self._update(key, state=EntryState.RELEASED, cost_usd=0.0, note=note)

    def unanswered(self) -> list[LedgerEntry]:
        """Calls that may have made a billed task we never heard of: reserved (or charged at
        the estimate) with no task id, because the create call's answer never came back.
        Calls that answer at once and never have a task (TASKLESS_PROVIDERS) are not among them."""
        return [e for e in self.entries
                if e.task_id is None and e.state is not EntryState.RELEASED and e.provider not in TASKLESS_PROVIDERS]

    def by_segment(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for e in self.entries:
            out[e.segment] = round(out.get(e.segment, 0.0) + e.committed_usd, 6)
        return out

    def by_provider(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for e in self.entries:
            out[e.provider] = round(out.get(e.provider, 0.0) + e.committed_usd, 6)
        return out
