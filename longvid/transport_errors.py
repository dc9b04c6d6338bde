"""Which exceptions mean network trouble, for every client that talks HTTP: the provider
clients (httpx) and google-genai's calls (httpx, or httpx2 in google-genai 3.x).

Kept outside `longvid.providers` so that the planner and the speech engine can classify
errors without importing the video providers (and with them PyAV).
"""

from __future__ import annotations


# Transport errors of httpx and of httpx2 (google-genai 3.x's default backend).
def _transport_classes(*names: str) -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = []
    for module_name in ("httpx", "httpx2"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        classes.extend(getattr(module, n) for n in names if hasattr(module, n))
    return tuple(classes)


# Any transport failure of either client (what google-genai's calls raise for network trouble).
HTTP_ERRORS = _transport_classes("HTTPError")


def is_transport_error(exc: BaseException) -> bool:
    """Network trouble from either HTTP client the SDK may use (httpx or httpx2), or the OS."""
    return isinstance(exc, (OSError, *HTTP_ERRORS))


# Errors that prove the request never reached the server: safe to repeat even for a create.
NOT_SENT_ERRORS = _transport_classes("ConnectError", "ConnectTimeout", "PoolTimeout")
# Errors that may hit a request the server did get: only safe calls repeat them.
TRANSIENT_ERRORS = _transport_classes("TimeoutException", "NetworkError", "RemoteProtocolError")
