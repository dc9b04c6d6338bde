"""Who may call the API: bearer tokens (or loopback-only without them), rate limits per
token, and signed links for browser elements that cannot send headers.

(No `from __future__ import annotations` here: FastAPI reads the dependencies' signatures.)
"""

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError
from .inputs import InputSweeper
from .runs import RenderStore
from .security import (
    RateLimiter,
    is_loopback_host_header,
    is_valid_render_id,
    matching_token,
    retry_after_header,
    token_fingerprint,
    verify_link,
)
from .settings import ApiSettings

# Stateless (it only reads the Authorization header), so one instance serves every app.
BEARER = HTTPBearer(auto_error=False, description="a token from LONGVID_API_TOKENS")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


@dataclass(frozen=True)
class Principal:
    owner: str  # a token fingerprint, or "local" without auth
    sees_every_run: bool = False  # the one user of a tokenless, local-only server


def checked_id(render_id: str) -> str:
    if not is_valid_render_id(render_id):
        raise ApiError(400, "invalid_id", "a render id is 1-80 letters, digits, '.', '_' or '-' (and not '.' or '..')")
    return render_id


def _client_is_loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


class Access:
    """The access rules of one app; `writer`, `reader` and `signed_reader(kind)` are its
    route dependencies, each answering with the caller's Principal."""

    def __init__(self, settings: ApiSettings, records: RenderStore, sweeper: InputSweeper,
                 clock: Callable[[], float]):
        self.settings, self.records, self.sweeper, self.clock = settings, records, sweeper, clock
        self.tokens = settings.token_values()
        self.secret = settings.link_secret.get_secret_value()
        self.write_limiter = RateLimiter(settings.write_rate_per_minute, clock=time.monotonic)
        self.read_limiter = RateLimiter(settings.read_rate_per_minute, clock=time.monotonic)

    def _authenticate(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
        if not self.tokens:  # LONGVID_ALLOW_NO_AUTH: the server only listens on loopback; say no to anything else
            if not _client_is_loopback(request):
                raise ApiError(403, "forbidden", "this server runs without tokens and only answers local clients")
            if not is_loopback_host_header(request.headers.get("host")):  # a rebound name of another site
                raise ApiError(403, "forbidden", "this server runs without tokens and only answers requests addressed to "
                                                 "localhost, 127.0.0.1 or [::1]; open it by one of those names")
            return Principal("local", sees_every_run=True)
        if credentials is None or not credentials.credentials:
            raise ApiError(401, "unauthorized", "send a token: Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": "Bearer"})
        token = matching_token(credentials.credentials, self.tokens)
        if token is None:
            raise ApiError(401, "unauthorized", "the bearer token is not valid; check it against LONGVID_API_TOKENS",
                           headers={"WWW-Authenticate": "Bearer"})
        return Principal(token_fingerprint(token))

    @staticmethod
    def _limit(limiter: RateLimiter, key: str) -> None:
        wait = limiter.check(key)
        if wait is not None:
            seconds = retry_after_header(wait)
            raise ApiError(429, "rate_limited", f"too many requests; retry in {seconds} s",
                           headers={"Retry-After": seconds})

    async def authenticate_request(self, request: Request) -> Principal:
        return self._authenticate(request, await BEARER(request))

    def writer(self, request: Request, credentials: Credentials) -> Principal:
        principal = self._authenticate(request, credentials)
        self._limit(self.write_limiter, principal.owner)
        self.sweeper.due()
        return principal

    def reader(self, request: Request, credentials: Credentials) -> Principal:
        principal = self._authenticate(request, credentials)
        self._limit(self.read_limiter, principal.owner)
        return principal

    def signed_reader(self, kind: str):
        """Bearer token or a valid signature for this exact path (browser elements send no
        headers). None when a signature let the request in: it opens its own render only."""

        def dependency(
            request: Request,
            render_id: str,
            credentials: Credentials,
            exp: Annotated[str | None, Query(max_length=20, description="expiry of a signed link (unix seconds)")] = None,
            sig: Annotated[str | None, Query(max_length=128, description="signature of a signed link")] = None,
        ) -> Principal | None:
            if not (exp or sig):
                return self.reader(request, credentials)
            client = request.client.host if request.client else "?"
            path = kind.format(**request.path_params)  # e.g. "versions/{version}/video": the exact path is signed
            if verify_link(self.secret, f"/v1/renders/{render_id}/{path}", exp, sig, self.clock(), self.settings.link_ttl_s):
                # Per render owner and client: clients behind one address (a NAT, a proxy)
                # reading one tenant's links do not use up another tenant's.
                owner = (self.records.request_of(render_id) or {}).get("owner") or "-"
                self._limit(self.read_limiter, f"link:{owner}:{client}")
                return None
            self._limit(self.read_limiter, f"bad-link:{client}")  # a failed signature costs too: no free guessing
            return self.reader(request, credentials)

        return dependency
