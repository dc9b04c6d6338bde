"""Pure security decisions for the HTTP API: no Ray, no network, no FastAPI.

- render ids: what may name a run folder (nothing that could leave the store);
- bearer tokens: constant-time matching, and a fingerprint that stands for a token in the
  store (ownership, idempotency) without ever writing the token itself;
- signed links: HMAC-SHA256 over "path|exp", for the GET routes a browser element
  (<video>, EventSource) calls without headers;
- rate limits: a token bucket per key with an injectable clock;
- addresses and URLs: which reference-image URLs may be fetched (https on port 443, and only
  hosts whose every address is public), with an injectable resolver;
- Host headers: which name a local-only (tokenless) server answers to.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna  # httpx's own IDNA codec (IDNA 2008 with UTS 46 mapping, as browsers do)

# -- render ids ---------------------------------------------------------------------------

RENDER_ID = re.compile(r"^[A-Za-z0-9._-]{1,80}$")


def is_valid_render_id(text: str) -> bool:
    """Letters, digits, '.', '_' and '-' (1-80 of them), and not '.' or '..': nothing that
    can name a parent folder or a sub-path of the store."""
    return bool(RENDER_ID.fullmatch(text)) and text not in (".", "..")


# -- tokens -------------------------------------------------------------------------------


def parse_tokens(text: str | None) -> tuple[str, ...]:
    """Tokens from a comma-separated setting; blanks dropped, order kept, duplicates removed."""
    seen: dict[str, None] = {}
    for part in (text or "").split(","):
        if part.strip():
            seen[part.strip()] = None
    return tuple(seen)


def matching_token(presented: str, tokens: Iterable[str]) -> str | None:
    """The configured token equal to `presented`, compared in constant time against every
    one (so timing does not tell which prefix matched), or None."""
    found = None
    for token in tokens:
        if hmac.compare_digest(presented.encode(), token.encode()):
            found = token
    return found


def token_fingerprint(token: str) -> str:
    """What the store records for a token (owner of a render, idempotency scope). Tokens are
    long random secrets, so a plain hash neither reveals nor lets anyone guess them, and it
    stays stable when the link secret rotates."""
    return hashlib.sha256(f"longvid-token:{token}".encode()).hexdigest()[:32]


def derive_link_secret(tokens: Iterable[str]) -> bytes:
    """A link-signing secret every replica derives alike from the token list (used when
    LONGVID_LINK_SECRET is not set)."""
    material = "\n".join(sorted(tokens)).encode()
    return hmac.new(b"longvid signed links v1", material, hashlib.sha256).digest()


# -- signed links -------------------------------------------------------------------------


def link_signature(secret: bytes, path: str, exp: int) -> str:
    return hmac.new(secret, f"{path}|{exp}".encode(), hashlib.sha256).hexdigest()


def link_expiry(now: float, ttl_s: int, step_s: int = 300) -> int:
    """An expiry at least `ttl_s` ahead, rounded up to `step_s`, so a status body stays the
    same for a few minutes (event streams send only what changed)."""
    return int(math.ceil((now + ttl_s) / step_s) * step_s)


def signed_path(secret: bytes, path: str, now: float, ttl_s: int) -> str:
    exp = link_expiry(now, ttl_s)
    return f"{path}?exp={exp}&sig={link_signature(secret, path, exp)}"


# What a link this server signs looks like: ASCII only (str.isdigit() and the like also accept
# other scripts' digits, which int() or the ASCII-only HMAC comparison then choke on).
LINK_EXPIRY = re.compile(r"[0-9]{1,12}", re.ASCII)
LINK_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)


def verify_link(secret: bytes, path: str, exp: str | None, sig: str | None, now: float, max_ttl_s: int) -> bool:
    """Whether `sig` signs `path` until `exp`, `exp` has not passed, and `exp` is not further
    ahead than any link this server hands out. Anything but ASCII digits (exp) and 64 hex
    digits (sig) is simply not a valid link."""
    if not exp or not sig or not LINK_EXPIRY.fullmatch(exp) or not LINK_SIGNATURE.fullmatch(sig):
        return False
    expires = int(exp)
    if expires < now or expires > now + max_ttl_s + 600:
        return False
    return hmac.compare_digest(link_signature(secret, path, expires), sig.lower())


# -- rate limits --------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to `per_minute`.
    `check` answers None (go ahead) or the seconds to wait before the next one would pass.
    The clock is injectable so tests do not sleep."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        if per_minute < 1:
            raise ValueError("a rate limit must allow at least 1 request per minute")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self.max_keys = max_keys  # beyond this, keys whose bucket is full again are forgotten
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def check(self, key: str) -> float | None:
        with self._lock:
            now = self.clock()
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._forget_idle(now)
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        """Drop keys whose bucket has refilled (they would start full anyway), so many
        one-off keys (clients of signed links) cannot grow the table without bound."""
        full_after = self.capacity / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


# -- addresses and URLs -------------------------------------------------------------------

# Ranges `ipaddress` may call global that no image host lives in: IPv6 site-local (deprecated,
# still routed inside some networks), IETF protocol assignments (192.0.0.9 and .10 count as
# global there), the retired 6to4 relay anycast and the IPv6 documentation prefix of RFC 9637.
BLOCKED_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("fec0::/10", "192.0.0.0/24", "192.88.99.0/24", "3fff::/20"))
IMAGE_PORT = 443


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses: not private, loopback, link-local
    (169.254.0.0/16 holds cloud metadata services), reserved, multicast, unspecified, shared
    (100.64.0.0/10) or documentation ranges, and IPv6 forms that embed such an IPv4 address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
        if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64: the IPv4 address is the last 32 bits
            return is_public_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    if any(ip in network for network in BLOCKED_NETWORKS if network.version == ip.version):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_reserved
                                 or ip.is_private or ip.is_unspecified)


class UrlRejected(ValueError):
    """A reference-image URL that will not be fetched; the message says why."""


@dataclass(frozen=True)
class ImageUrl:
    url: str
    host: str
    port: int
    path_and_query: str


def parse_image_url(url: str) -> ImageUrl:
    """An https URL on port 443 with a host and no credentials, or UrlRejected. A
    non-ASCII host name is given in its IDNA (xn--) form, as it goes on the wire."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or 443
    except ValueError:
        raise UrlRejected("the image URL is malformed; give an https:// URL") from None
    if parts.scheme.lower() != "https":
        raise UrlRejected(f"only https:// image URLs are fetched (got {parts.scheme or 'no'} scheme); "
                          "host the image on https or send it as data_base64")
    if not parts.hostname:
        raise UrlRejected("the image URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRejected("image URLs with credentials (user@host) are not fetched; use a public URL")
    if port != IMAGE_PORT:
        raise UrlRejected(f"image URLs are fetched from the standard https port {IMAGE_PORT} only (got port {port}); "
                          "host the image there or send it as data_base64")
    path = parts.path or "/"
    return ImageUrl(url=url.strip(), host=_ascii_host(parts.hostname.rstrip(".")), port=port,
                    path_and_query=path + (f"?{parts.query}" if parts.query else ""))


def _ascii_host(host: str) -> str:
    """The host as sent in DNS, TLS and the Host header: lower-case ASCII (IDNA for others)."""
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        raise UrlRejected("the image URL's host name is not a valid internationalised domain name; check the URL") from None


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def public_addresses(host: str, port: int, resolver: Resolver = system_resolver) -> list[str]:
    """The host's addresses if every one of them is public; UrlRejected otherwise. A literal
    IP is checked as it is. All addresses must pass, since the connection could use any."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        addresses = [str(literal)]
    except ValueError:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError):
            raise UrlRejected(f"the image host {host!r} does not resolve; check the URL") from None
    if not addresses:
        raise UrlRejected(f"the image host {host!r} does not resolve; check the URL")
    blocked = [a for a in addresses if not is_public_address(a)]
    if blocked:
        raise UrlRejected(f"the image host {host!r} resolves to a private, loopback, link-local or reserved "
                          "address; only public hosts are fetched (or send the image as data_base64)")
    return addresses


# -- Host headers --------------------------------------------------------------------------

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def is_loopback_host_header(value: str | None) -> bool:
    """Whether a Host header names this machine by a loopback name (any port). A tokenless
    server answers only these: a page on another site that rebinds its own name to 127.0.0.1
    (DNS rebinding) still sends its own name as Host."""
    if not value or any(c in value for c in "/?#@\\"):
        return False
    try:
        parts = urlsplit(f"//{value.strip()}")
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return parts.hostname in LOOPBACK_HOSTS
