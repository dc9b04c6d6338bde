"""The failure taxonomy of the generate step: what a failed create or collect means for the
segment (poll again, a new task, leave it for resume, or give up), and which failures prove
that no task exists at the provider. Pure decisions over exceptions' failure codes."""

from __future__ import annotations

import enum
import re

from ..errors import InputError, LongvidError
from ..providers._http import (
    AUTH, RATE_LIMITED, REJECTED, UNAVAILABLE, UNREACHABLE, RetryAdvice, retry_advice,
)
from ..providers.ledger import BudgetExceeded


class Cancelled(LongvidError):
    """The user stopped the render; the run folder is resumable."""

    exit_code = 130


class FailureDecision(enum.Enum):
    COLLECT_AGAIN = "collect again"  # polling or downloading failed; the task itself is fine
    NEW_TASK = "new task"  # the provider failed the task for a reason that may pass
    LEAVE_SUBMITTED = "leave submitted"  # still running or unknown: resume polls it
    GIVE_UP = "give up"  # the input must change (SAFETY), or a bug: fail with the reason


def failure_code(exc: BaseException) -> str | None:
    """The provider's (or client's) dotted failure code an exception carries, if any."""
    if isinstance(exc, BudgetExceeded):
        return "BUDGET"
    return getattr(exc, "failure_code", None)


def failure_decision(exc: BaseException, tries: int, max_tries: int, paid_task: bool = False,
                     resident: bool = False) -> FailureDecision:
    """What to do after collecting a segment failed. Only provider errors are retried, and
    never one whose advice is to change the input (SAFETY is not retried verbatim). A paid
    task that failed on our side (a crashed worker, no provider verdict) stays submitted, so
    resume polls it instead of paying for another; a resident (local) model's task lives
    nowhere else, so it is tried again instead (`resident`)."""
    code = getattr(exc, "failure_code", None)
    if code is None:
        if resident:  # a local model worker's crash: no task lives on elsewhere to poll, so try again
            return FailureDecision.NEW_TASK if tries < max_tries else FailureDecision.GIVE_UP
        return FailureDecision.LEAVE_SUBMITTED if paid_task else FailureDecision.GIVE_UP
    advice = retry_advice(code)
    if advice is RetryAdvice.CHECK:
        return FailureDecision.LEAVE_SUBMITTED
    if advice is not RetryAdvice.SAME:
        return FailureDecision.GIVE_UP
    reachable_only = getattr(exc, "retryable", False)  # polling or downloading failed, not the task
    if tries >= max_tries:
        # A paid task we merely could not reach may still finish: resume polls it, never pays again.
        return FailureDecision.LEAVE_SUBMITTED if reachable_only and paid_task else FailureDecision.GIVE_UP
    return FailureDecision.COLLECT_AGAIN if reachable_only else FailureDecision.NEW_TASK


# Failures of a create call that prove no task exists at the provider.
_NOTHING_CREATED_CODES = frozenset({RATE_LIMITED, UNAVAILABLE, REJECTED, AUTH, UNREACHABLE})


def nothing_created(exc: BaseException) -> bool:
    """Did this failed create call certainly make no (billable) task?"""
    return isinstance(exc, (BudgetExceeded, InputError)) or getattr(exc, "failure_code", None) in _NOTHING_CREATED_CODES


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_TRACEBACK_START = ("Traceback (most recent call last)", "ray::")
_QUALIFIED_ERROR = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Failed|Unknown|Download|Response)\w*: ")
_PATH = re.compile(r"File \"[^\"]+\"|(?<![\w:/])(?:/[\w.+-]+){2,}/?")  # absolute paths (not URLs' paths)


def failure_reason(provider: str, exc: BaseException, limit: int = 300) -> str:
    """One line a person can act on: the provider, the failure code and the provider's own
    words; never a traceback, terminal colour codes, server paths or anything key-shaped."""
    return f"{provider}: {failure_detail(exc, limit)}"


def run_failure_reason(exc: BaseException, limit: int = 1000) -> str:
    """A whole run's failure in one line: longvid's own errors as they are written (already
    one line), anything else (a Ray or judge-actor error) cut to its message like a segment's."""
    if isinstance(exc, LongvidError):
        return str(exc)[:limit]
    return failure_detail(exc, limit)


def failure_detail(exc: BaseException, limit: int = 300) -> str:
    """The failure code and the provider's words, one clean line (see failure_reason)."""
    from ..redaction import sanitize

    code = failure_code(exc)
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    if any(line.startswith(_TRACEBACK_START) for line in lines):
        # A traceback's message is its last line ("package.module.Error: words").
        words = _QUALIFIED_ERROR.sub("", lines[-1])
    else:
        words = lines[0] if lines else ""
    words = sanitize(_PATH.sub("[path]", words), limit=limit)
    what = code or exc.__class__.__name__
    if words and code and words.endswith(f"({code})"):  # the client already named the code
        return words
    return f"{what}: {words}" if words else what
