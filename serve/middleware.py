"""ASGI middleware of the API: pure ASGI (no BaseHTTPMiddleware), so event streams and
file responses pass through untouched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from .errors import ApiError, error_response

SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, max_bytes: int):
        super().__init__(413, f"the request body is larger than {max_bytes // (1024 * 1024)} MB; "
                              "send fewer or smaller reference images")


class BodySizeLimit:
    """Caps request bodies with this API's error shape. (Starlette's own limiter answers in
    plain text, and replaces any response when the declared length is too big.) A declared
    Content-Length over the cap is refused before the body is read; a streamed body is
    counted as it arrives, and the handler reading it gets a 413."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            exc = BodyTooLarge(self.max_bytes)
            return await error_response(413, "payload_too_large", exc.detail, {"Connection": "close"})(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


class SecurityHeaders:
    """nosniff and no-referrer on every response (signed links must not leak via Referer)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in SECURITY_HEADERS if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuthenticateWrites:
    """Authentication before anything looks at a write's body. FastAPI parses a route's
    declared body before it runs any dependency, and a multipart upload is read as it
    streams in, so without this an unauthenticated POST could learn '415', '400
    invalid_json' or '413' instead of '401', or have its files read. `authenticate(request)`
    raises ApiError; the route's own dependency checks again (and applies the rate limit)."""

    def __init__(self, app, authenticate: Callable[[Request], Awaitable[object]], prefix: str = "/v1/"):
        self.app, self.authenticate, self.prefix = app, authenticate, prefix

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            path, root = scope.get("path", ""), scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            if path.startswith(self.prefix):
                try:
                    await self.authenticate(Request(scope))  # headers and client only; the body is not read
                except ApiError as exc:
                    return await error_response(exc.status, exc.code, exc.message, exc.headers)(scope, receive, send)
        await self.app(scope, receive, send)
