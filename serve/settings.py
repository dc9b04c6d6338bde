"""The API's settings, read from the environment of each replica.

Secrets (tokens, the link secret) are only ever read here, from the replica's own
environment, and kept as SecretStr/bytes that print as '**********': they never travel in
deployment arguments, configs or logs.

| variable | meaning | default |
|---|---|---|
| LONGVID_STORE | run store: a local folder or s3://bucket/prefix | ./runs |
| LONGVID_API_TOKENS | comma-separated bearer tokens | none (refused unless LONGVID_ALLOW_NO_AUTH=1) |
| LONGVID_ALLOW_NO_AUTH | 1: serve without tokens, only on 127.0.0.1 | 0 |
| LONGVID_LINK_SECRET | key for signed media/event links, shared by replicas | derived from the tokens |
| LONGVID_RATE_LIMIT_PER_MIN | POST/DELETE requests per token and minute | 30 |
| LONGVID_READ_RATE_LIMIT_PER_MIN | GET requests per token (or client, for signed links) and minute | 600 |
| LONGVID_MAX_CONCURRENT_RENDERS | unfinished renders per token | 2 |
| LONGVID_PLANNER | auto, offline or gemini | auto |
| LONGVID_INPUT_QUOTA_MB | reference images one token's renders may keep in the store (MB) | 200 |
| LONGVID_ADOPT_AFTER_S | a Renderer replica takes over a render whose replica stopped beating this long (s) | 30 |
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr

from longvid.errors import InputError
from longvid.settings import Settings

from .security import LOOPBACK_HOSTS, derive_link_secret, parse_tokens


class SettingsError(ValueError):
    """The replica cannot start with these settings; the message says what to set."""


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str = "runs"
    tokens: tuple[SecretStr, ...] = ()
    allow_no_auth: bool = False
    link_secret: SecretBytes = Field(default_factory=lambda: SecretBytes(secrets.token_bytes(32)))
    link_ttl_s: int = Field(3600, ge=60)
    write_rate_per_minute: int = Field(30, ge=1)
    read_rate_per_minute: int = Field(600, ge=1)
    max_concurrent_renders: int = Field(2, ge=1)
    max_image_bytes: int = 5 * 1024 * 1024  # prompt, duration and image-count limits: serve/models.py
    max_body_bytes: int = 32 * 1024 * 1024  # four 5 MB images in base64, plus the JSON around them
    event_poll_s: float = Field(0.5, gt=0)
    event_stream_max_s: float = Field(240.0, gt=0)  # below the proxy's request timeout; EventSource reconnects
    # A render whose worker stopped beating this long is interrupted; longer than the run
    # lease (90 s), so a resume it offers is not refused by the dead driver's lease.
    stale_after_s: float = Field(120.0, gt=0)
    planner: Literal["auto", "offline", "gemini"] = "auto"  # LONGVID_PLANNER: the one source of the Planner's choice
    longvid: Settings = Field(default_factory=Settings)  # provider and planner settings from the same environment
    # Reference images (serve/inputs.py): what one token's renders may keep, how old an image
    # no run refers to (or a request's leftover stage) must be before it is swept, and how
    # often a sweep runs at most.
    input_quota_bytes: int = Field(200 * 1024 * 1024, ge=0)
    input_grace_s: float = Field(3600.0, ge=0)
    input_sweep_every_s: float = Field(3600.0, gt=0)
    # A render whose replica died (heartbeat silent this long, run lease free) is taken over
    # by another Renderer replica (serve/adoption.py); above the 5 s heartbeat, below stale_after_s.
    adopt_after_s: float = Field(30.0, gt=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> ApiSettings:
        env = os.environ if environ is None else environ
        tokens = parse_tokens(env.get("LONGVID_API_TOKENS"))
        link = env.get("LONGVID_LINK_SECRET", "").strip()
        if link:
            link_secret = link.encode()
        elif tokens:
            link_secret = derive_link_secret(tokens)
        else:  # no tokens: only a loopback, single-user server, where links need not outlive the process
            link_secret = secrets.token_bytes(32)
        values = {
            "store": local_store_path(env.get("LONGVID_STORE", "").strip() or "runs"),
            "tokens": tuple(SecretStr(t) for t in tokens),
            "allow_no_auth": env.get("LONGVID_ALLOW_NO_AUTH", "").strip().lower() in ("1", "true", "yes"),
            "link_secret": SecretBytes(link_secret),
            "write_rate_per_minute": _int(env, "LONGVID_RATE_LIMIT_PER_MIN", 30),
            "read_rate_per_minute": _int(env, "LONGVID_READ_RATE_LIMIT_PER_MIN", 600),
            "max_concurrent_renders": _int(env, "LONGVID_MAX_CONCURRENT_RENDERS", 2),
            "planner": env.get("LONGVID_PLANNER", "auto").strip().lower() or "auto",
            "input_quota_bytes": _int(env, "LONGVID_INPUT_QUOTA_MB", 200) * 1024 * 1024,
        }
        if env.get("LONGVID_ADOPT_AFTER_S", "").strip():
            values["adopt_after_s"] = env["LONGVID_ADOPT_AFTER_S"].strip()  # pydantic checks it is a number > 0
        try:
            values["longvid"] = Settings.from_env(env)
        except InputError as exc:
            raise SettingsError(str(exc)) from None
        values.update(overrides)
        try:
            return cls(**values)
        except ValueError as exc:
            raise SettingsError(f"invalid API settings: {exc}") from None

    def token_values(self) -> tuple[str, ...]:
        return tuple(t.get_secret_value() for t in self.tokens)

    def check_auth_configured(self) -> None:
        """Refuse to build an API without tokens, unless LONGVID_ALLOW_NO_AUTH says so."""
        if not self.tokens and not self.allow_no_auth:
            raise SettingsError("no API tokens configured: set LONGVID_API_TOKENS=token1,token2 (long random strings), "
                                "or LONGVID_ALLOW_NO_AUTH=1 for a server bound to 127.0.0.1 only")

    def check_can_start(self, bound_host: str | None) -> None:
        """Refuse to serve without tokens, unless explicitly allowed and bound to loopback."""
        self.check_auth_configured()
        if self.tokens:
            return
        if bound_host not in LOOPBACK_HOSTS:
            raise SettingsError(f"LONGVID_ALLOW_NO_AUTH=1 needs the HTTP proxy bound to 127.0.0.1 (it is bound to "
                                f"{bound_host or 'an unknown address'}); set LONGVID_API_TOKENS to serve other hosts")


def local_store_path(location: str) -> str:
    """A local store as an absolute path (replicas may not share the caller's directory);
    s3:// URLs as they are."""
    return location if location.startswith("s3://") else str(Path(location).expanduser().resolve())


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number (got {text!r})") from None
