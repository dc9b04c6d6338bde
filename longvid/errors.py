"""Errors with a one-line reason a user can act on.

InputError means the request itself was wrong (exit code 2); RenderError means a valid
request could not be completed (exit code 1). Neither ever carries a secret.
"""

from __future__ import annotations


class LongvidError(Exception):
    exit_code = 1


class InputError(LongvidError):
    """The request was invalid: say what was wrong and how to fix it."""

    exit_code = 2


class RenderError(LongvidError):
    """A valid request failed while rendering; the run folder keeps what was done."""

    exit_code = 1


def describe_validation_error(exc) -> str:
    """One line from a pydantic ValidationError: 'field: message; field: message'."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "input"
        message = err.get("msg", "invalid")
        message = message.removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
