"""Secret hygiene for every message that leaves the process: exceptions, logs, manifests,
API answers. One rule set, used by the provider clients and the Gemini planner alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class Secret:
    """A credential that prints as '***' in reprs, logs and f-strings by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self):  # never pickled into a Ray object or a log record
        raise TypeError("a Secret cannot be pickled")


_PATTERNS = [
    (re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]*"), "data:…"),
    (re.compile(r"(?i)\bbearer\s+[^\s\"',;]+"), "Bearer [redacted]"),
    (re.compile(r"\bkey_[0-9A-Za-z]{16,}"), "key_[redacted]"),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), "[redacted]"),
    (re.compile(r"(?i)([?&](?:key|token|sig|signature|_jwt|x-goog-[\w-]+|expires)=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"[\x00-\x08\x0b-\x1f\x7f]"), " "),
]


def sanitize(text: object, secrets: Iterable[str | Secret | None] = (), limit: int = 500) -> str:
    """Text safe for an exception or a log line: known secrets and anything that looks
    like a key, bearer token, URL signature or data URI removed; cut to `limit` chars."""
    out = str(text)
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value and len(value) >= 4:
            out = out.replace(value, "[redacted]")
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    out = " ".join(out.split())
    return out if len(out) <= limit else out[: limit - 1] + "…"


def safe_url(url: str) -> str:
    """scheme://host/path of a URL, without its query (signed URLs carry tokens there)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    return f"{parts.scheme}://{parts.hostname or ''}{':%d' % parts.port if parts.port else ''}{parts.path}"
