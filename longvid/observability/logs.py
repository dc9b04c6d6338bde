"""Structured logs: one JSON object per line, each carrying the run, segment, provider and
task it concerns, so one render can be followed across the driver, its Ray tasks and actors
in Ray's log files.

The fields come from a context (contextvars: per thread and per asyncio task) that the
pipeline binds for a run and the generate loop or a segment task for a segment; a log call
may also pass them with `extra=`. Every message goes through the shared sanitizer, with the
settings' own secret values added, so no key reaches a log line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

from ..redaction import sanitize

FIELDS = ("run_id", "segment", "provider", "task_id")
FORMATS = ("text", "json")
LOGGER = "longvid"

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("longvid_log_context", default={})
_configured: dict[str, Any] = {"format": None, "secrets": ()}


def bind(**fields: Any) -> contextvars.Token:
    """Add fields to this thread's (or task's) log context; `unbind` the token to undo."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind(token: contextvars.Token) -> None:
    _context.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current() -> dict[str, Any]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Puts the context's fields on each record (fields passed with `extra=` win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields that
    apply, and the exception's last line; every text sanitized."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": sanitize(record.getMessage(), self.secrets, limit=2000),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value if isinstance(value, int) else sanitize(value, self.secrets, limit=200)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["error"] = sanitize(f"{exc.__class__.__name__}: {exc}", self.secrets)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The human format, with the context fields in brackets; sanitized like the JSON one."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None) is not None)
        line = sanitize(super().format(record), self.secrets, limit=2000)
        return f"{line} [{sanitize(fields, self.secrets)}]" if fields else line


def secret_values(settings: BaseModel | None) -> list[str]:
    """Every secret value held in a settings model (to redact it from log lines)."""
    found: list[str] = []
    if settings is None:
        return found
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, SecretStr):
                found.append(item.get_secret_value())
            elif isinstance(item, SecretBytes):
                found.append(item.get_secret_value().decode("utf-8", "replace"))
            elif isinstance(item, BaseModel):
                found.extend(secret_values(item))
    return [v for v in found if v]


def configure_logging(fmt: str = "text", level: int = logging.INFO, secrets: Iterable[str] = (),
                      stream=None) -> logging.Handler:
    """longvid's log lines (the `longvid` logger and below) to `stream` (stderr) in `fmt`.
    Replaces what an earlier call installed; returns the handler."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    remove_logging()
    logger = logging.getLogger(LOGGER)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler._longvid = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    logger.addHandler(handler)
    logger.setLevel(level)
    _configured.update(format=fmt, secrets=tuple(secrets), level=level)
    return handler


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (not when configured), so a
    replaced stderr (a test's capture, a job runner's redirect) gets the lines."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def remove_logging() -> None:
    """Take out what configure_logging installed."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        if getattr(handler, "_longvid", False):
            logger.removeHandler(handler)
    _configured.update(format=None, secrets=())


def worker_setup() -> dict[str, Any]:
    """What a Ray task needs to log like its driver: the format and the context (no secrets:
    the worker redacts its own settings' values)."""
    return {"format": _configured["format"], "level": _configured.get("level", logging.INFO), "context": current()}


@contextmanager
def in_worker(setup: dict[str, Any] | None, secrets: Iterable[str] = ()) -> Iterator[None]:
    """Inside a Ray task: log in the driver's format with the driver's context."""
    secrets = tuple(secrets)
    if setup and setup.get("format") and (_configured["format"], _configured["secrets"]) != (setup["format"], secrets):
        configure_logging(setup["format"], setup.get("level", logging.INFO), secrets)
    with log_context(**((setup or {}).get("context") or {})):
        yield
