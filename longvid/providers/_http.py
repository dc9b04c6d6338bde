"""Shared plumbing for the remote provider clients: errors with failure codes, the retry
policy, the status-to-error mapping and the check that downloaded bytes really are an MP4.
Secret hygiene (Secret, sanitize, safe_url) lives in longvid/redaction.py.

Retry policy (one rule for every client):

- Safe calls (GET a task, download an output, DELETE a task, poll an operation) are
  retried with exponential backoff and jitter on 408, 429, 500, 502, 503, 504, on
  connection errors and on timeouts; a `Retry-After` header (seconds or an HTTP date) is
  honoured, capped by `RetryPolicy.max_retry_after_s`.
- Create calls (POST that starts a paid task) are NOT idempotent: neither Runway nor
  Vertex takes an idempotency key, and neither lists tasks we could search afterwards. So
  a create is retried only when the failure proves that no task exists: a connection that
  never opened (connect error, connect/pool timeout) or a 408/429/503 answer (refused
  before processing). Anything that leaves the outcome open — a read timeout after the
  body was sent, a dropped connection, 500, 502, 504, a 2xx whose body cannot be read —
  raises `SubmitOutcomeUnknown` (failure code SUBMIT.UNKNOWN): a task may exist and may
  be billed. The caller decides (the ledger should keep the reservation; retrying means
  possibly paying twice).

Failure codes are dotted families. The providers' own (Runway's `failureCode`:
SAFETY.INPUT.*, SAFETY.OUTPUT.*, INTERNAL.BAD_OUTPUT.*, ASSET.INVALID, INTERNAL, ...)
pass through unchanged; client-side ones are listed in `retry_advice`.
"""

from __future__ import annotations

import email.utils
import enum
import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

import tenacity

from ..redaction import Secret, safe_url, sanitize  # noqa: F401  (the clients import them from here)
from ..transport_errors import HTTP_ERRORS, NOT_SENT_ERRORS, TRANSIENT_ERRORS, is_transport_error  # noqa: F401
from .base import GenerationFailed

T = TypeVar("T")

# Client-side failure codes (providers' own codes pass through as they are).
RATE_LIMITED = "HTTP.RATE_LIMITED"  # 429 after all retries (e.g. Runway's daily cap)
UNAVAILABLE = "HTTP.UNAVAILABLE"  # 5xx after all retries
UNREACHABLE = "HTTP.UNREACHABLE"  # connection errors / timeouts after all retries
REJECTED = "HTTP.REJECTED"  # 400/422: the provider refused the request as written
AUTH = "HTTP.AUTH"  # 401/403: wrong or missing credentials
NOT_FOUND = "TASK.NOT_FOUND"  # the task id is unknown (expired, deleted, never created)
SUBMIT_UNKNOWN = "SUBMIT.UNKNOWN"  # a create call may or may not have made a (billed) task
MALFORMED = "PROTOCOL.MALFORMED"  # the provider's answer could not be understood
CORRUPT = "DOWNLOAD.CORRUPT"  # the output was truncated or is not a decodable MP4
CANCELLED = "CANCELLED"
NOT_READY = "TASK.NOT_READY"  # fetch before the task succeeded


class RetryAdvice(str, enum.Enum):
    """What a router may do after a failure with a given code."""

    SAME = "same"  # sending the same request again (now or later) may work
    MODIFY = "modify"  # do not resend verbatim: change the prompt, image or seed first
    CHECK = "check"  # a paid task may exist: reconcile before creating another
    NONE = "none"  # this provider will not do it as configured: fix config or fail over


def is_safety_refusal(failure_code: str | None) -> bool:
    """SAFETY anywhere in the code: SAFETY.INPUT.TEXT, INPUT_PREPROCESSING.SAFETY.TEXT, ..."""
    return "SAFETY" in (failure_code or "").upper().split(".")


def retry_advice(failure_code: str | None) -> RetryAdvice:
    """SAFETY anywhere in the code (SAFETY.INPUT.TEXT, INPUT_PREPROCESSING.SAFETY.TEXT)
    and ASSET.INVALID mean the input must change; auth/rejection/cancel mean the request
    will not work here; SUBMIT.UNKNOWN and TIMEOUT (a task still running) need
    reconciling; everything else (INTERNAL.*, 5xx, 429, corrupt downloads) may be retried."""
    code = (failure_code or "").upper()
    if is_safety_refusal(code) or code.startswith("ASSET.") or code.startswith("INPUT."):
        return RetryAdvice.MODIFY
    if code in (AUTH, REJECTED, CANCELLED):
        return RetryAdvice.NONE
    if code in (SUBMIT_UNKNOWN, "TIMEOUT"):
        return RetryAdvice.CHECK
    return RetryAdvice.SAME


class ProviderError(GenerationFailed):
    """A provider call failed. `failure_code` says which family; `retryable` whether the
    same call may succeed later; `status` is the HTTP status when there was one.
    Messages are sanitised: never a key, a token, a signed URL's query or a data URI."""

    default_code = "INTERNAL"
    default_retryable = False

    def __init__(
        self,
        message: str,
        failure_code: str | None = None,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
        provider: str | None = None,
    ):
        super().__init__(message, failure_code or self.default_code)
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after_s = retry_after_s
        self.provider = provider

    @property
    def advice(self) -> RetryAdvice:
        return retry_advice(self.failure_code)

    def __reduce__(self):  # keep the attributes across pickling (Ray ships exceptions)
        return (
            _rebuild_error,
            (self.__class__, str(self), self.failure_code, self.status, self.retryable, self.retry_after_s, self.provider),
        )


def _rebuild_error(cls, message, failure_code, status, retryable, retry_after_s, provider):
    return cls(message, failure_code, status=status, retryable=retryable, retry_after_s=retry_after_s, provider=provider)


class ProviderHTTPError(ProviderError):
    """A non-2xx answer. Retryable for 408/429/5xx."""


class ProviderRejected(ProviderHTTPError):
    """400/401/403/404/422: the provider refused this request; repeating it will not help."""

    default_code = REJECTED


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or kept failing after every retry."""

    default_code = UNREACHABLE
    default_retryable = True


class MalformedResponse(ProviderError):
    default_code = MALFORMED
    default_retryable = True


class SubmitOutcomeUnknown(ProviderError):
    """A create call failed in a way that leaves open whether a (billed) task was made."""

    default_code = SUBMIT_UNKNOWN
    default_retryable = False


class CorruptDownload(ProviderError):
    """The output was truncated or is not an MP4. Fetching again may work."""

    default_code = CORRUPT
    default_retryable = True


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    retry_statuses: frozenset[int],
    retry_after_s: float | None = None,
    auth: bool = False,
    auth_hint: str = "",
) -> ProviderHTTPError:
    """The error for a non-2xx answer, one rule for every client: 401/403 (or `auth`: the
    provider's own way of saying the credentials are wrong) -> AUTH, with `auth_hint`
    appended; 404 -> the task is unknown; 429 -> rate limited, 408 and 5xx -> unavailable,
    both retryable when `retry_statuses` holds the status; anything else -> refused as written."""
    if auth or status in (401, 403):
        return ProviderRejected(message + auth_hint, AUTH, status=status, provider=provider)
    if status == 404:
        return ProviderRejected(message, NOT_FOUND, status=status, provider=provider)
    retryable = status in retry_statuses
    if status == 429:
        return ProviderHTTPError(message, RATE_LIMITED, status=status, retryable=retryable, retry_after_s=retry_after_s, provider=provider)
    if status >= 500 or status == 408:
        return ProviderHTTPError(message, UNAVAILABLE, status=status, retryable=retryable, retry_after_s=retry_after_s, provider=provider)
    return ProviderRejected(message, REJECTED, status=status, provider=provider)


# -- retry policy -----------------------------------------------------------------------


SAFE_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# A create is retried only on answers that prove nothing was created.
CREATE_RETRY_STATUSES = frozenset({408, 429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; Retry-After wins when the server sends it."""

    attempts: int = 4  # in all, the first one included
    initial_s: float = 1.0
    max_s: float = 30.0
    jitter_s: float = 1.0
    max_retry_after_s: float = 120.0  # a longer Retry-After is capped to this
    safe_statuses: frozenset[int] = SAFE_RETRY_STATUSES
    create_statuses: frozenset[int] = CREATE_RETRY_STATUSES

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (1-based) when the server said nothing:
        initial * 2^(attempt-1), capped, plus up to `jitter_s` of random jitter."""
        return min(self.max_s, self.initial_s * 2 ** (attempt - 1) + random.uniform(0, self.jitter_s))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds ('2', also '0.5') or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        reference = datetime.fromtimestamp(now, timezone.utc) if now is not None else datetime.now(timezone.utc)
        seconds = (when - reference).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN -> None


def call_with_retries(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    retryable: Callable[[BaseException], bool],
    logger: logging.Logger,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `fn` until it returns, a non-retryable error, or `policy.attempts` are used.
    The last error is re-raised as it is."""

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after_s", None)
        if after is not None:
            return min(after, policy.max_retry_after_s)
        return policy.backoff(state.attempt_number)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            "%s failed (%s); retry %d/%d in %.2f s",
            what, describe_exception(exc), state.attempt_number, policy.attempts - 1, state.upcoming_sleep,
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=wait,
        retry=tenacity.retry_if_exception(retryable),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    return retrying(fn)


def run_call(
    once: Callable[[], T],
    *,
    policy: RetryPolicy,
    create: bool,
    what: str,
    provider: str,
    logger: logging.Logger,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`once` under the policy, with the create rule (module docstring) and the final
    error mapped: transport errors become ProviderUnavailable, or SubmitOutcomeUnknown
    for a create whose request may have reached the server; a 5xx answer to a create
    that does not prove nothing was made (500/502/504) becomes SubmitOutcomeUnknown.
    `once` raises ProviderError (with `retryable` set) for answers it understood."""

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, ProviderError):
            return exc.retryable
        if isinstance(exc, NOT_SENT_ERRORS):
            return True
        return not create and isinstance(exc, TRANSIENT_ERRORS)

    try:
        return call_with_retries(once, policy=policy, retryable=retryable, logger=logger, what=what, sleep=sleep)
    except ProviderHTTPError as exc:
        if create and exc.status is not None and exc.status >= 500 and exc.status not in policy.create_statuses:
            raise SubmitOutcomeUnknown(
                f"{what}: HTTP {exc.status} — a task may have been created (and billed); not retried. {exc}",
                status=exc.status, provider=provider,
            ) from None
        raise
    except NOT_SENT_ERRORS as exc:
        raise ProviderUnavailable(f"{what}: cannot connect ({exc.__class__.__name__})", provider=provider) from None
    except TRANSIENT_ERRORS as exc:
        if create:
            raise SubmitOutcomeUnknown(
                f"{what}: {exc.__class__.__name__} after the request was sent — a task may have been created "
                "(and billed); not retried",
                provider=provider,
            ) from None
        raise ProviderUnavailable(f"{what}: {exc.__class__.__name__}", provider=provider) from None


def describe_exception(exc: BaseException | None) -> str:
    """A short, secret-free description (the class name and, for our errors, the message)."""
    if exc is None:
        return "no error"
    if isinstance(exc, ProviderError):
        return f"{exc.__class__.__name__}: {exc}"
    return exc.__class__.__name__


# -- MP4 check --------------------------------------------------------------------------


def check_mp4(data: bytes, decode: bool = True) -> None:
    """Raise CorruptDownload unless `data` is a complete MP4: it starts with an `ftyp` box,
    its top-level boxes add up exactly to its length (a cut anywhere shows), it has a
    `moov` and an `mdat`, and (with `decode`) PyAV decodes a first video frame from it."""
    if len(data) < 16:
        raise CorruptDownload(f"the download is {len(data)} bytes, not an MP4")
    boxes: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 8 > len(data):
            raise CorruptDownload(f"the MP4 is truncated ({len(data)} bytes; a box header is cut at byte {pos})")
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                raise CorruptDownload("the MP4 is truncated (a large box header is cut)")
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - pos
        if size < header:
            raise CorruptDownload(f"the MP4 has a malformed box at byte {pos}")
        if pos + size > len(data):
            raise CorruptDownload(
                f"the MP4 is truncated: box {kind.decode('latin-1')!r} needs {pos + size} bytes, got {len(data)}"
            )
        boxes.append(kind)
        pos += size
    if not boxes or boxes[0] != b"ftyp":
        raise CorruptDownload("the download does not start with an MP4 'ftyp' box")
    missing = [name for name in (b"moov", b"mdat") if name not in boxes]
    if missing:
        raise CorruptDownload(f"the MP4 has no {' or '.join(m.decode() for m in missing)} box")
    if decode:
        from ..media.frames import first_frame_problem

        problem = first_frame_problem(data)
        if problem is not None:
            raise CorruptDownload(f"the MP4 {problem}")
