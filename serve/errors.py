"""One error shape for every failure the API reports:

    {"error": {"code": "<stable_snake_case>", "message": "<what was wrong and how to fix it>"}}

Handlers here turn FastAPI's, Starlette's and our own exceptions into that shape; anything
unexpected becomes a 500 `internal_error` whose text names no path, class or stack frame
(the details go to the replica's log only).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("longvid.serve")

# Stable codes for the statuses Starlette itself produces (unknown route, wrong method...).
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """A failure to report to the client as it is: status, stable code, actionable message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def describe_request_errors(errors) -> str:
    """'body.duration_s: must be ... ; body.prompt: ...' from FastAPI's validation errors,
    without echoing the (possibly huge, possibly secret) input values back."""
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    text = "; ".join(parts[:8])
    return text + (f"; and {len(parts) - 8} more" if len(parts) > 8 else "")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "invalid_json", "the request body is not valid JSON; send a JSON object")
        return error_response(422, "invalid_request", describe_request_errors(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = STATUS_CODES.get(exc.status_code, "error")
        if exc.status_code == 413:
            return error_response(413, "payload_too_large", str(exc.detail))
        if exc.status_code == 400:  # FastAPI could not parse the body (too deeply nested, a number too long...)
            return error_response(400, "invalid_json", "the request body could not be parsed as JSON (too deeply "
                                                       "nested, or a number too long?); send a plain JSON object")
        path = request.url.path[:200]
        message = {404: f"no such endpoint: {request.method} {path}; see /docs",
                   405: f"{request.method} is not allowed on {path}; see /docs"}.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "the server failed unexpectedly; retry, and report it if it persists")
