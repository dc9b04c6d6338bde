"""Reference images sent to the API: decoded and checked, fetched safely, stored once.

An image is accepted only if Pillow decodes it as PNG, JPEG or WebP (the name and the
declared content type are never trusted), it is at most `max_bytes`, and its pixel count
is bounded (a small file can still decode to a huge picture). URLs are fetched over https
only, from hosts whose every address is public; the connection goes to the address that
was checked (the hostname is sent as SNI and Host, so TLS still verifies the certificate),
so a DNS answer cannot change between the check and the fetch; every redirect is checked
again; the download stops at `max_bytes`.

Accepted images are stored content-addressed in the run store's shared state
(`state/inputs/<sha256>.<ext>`), so a render on any replica can read them back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import ApiError
from .security import Resolver, UrlRejected, parse_image_url, public_addresses, system_resolver

FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
MAX_PIXELS = 40_000_000  # about 7000x5700; a bigger picture is refused before it is decoded
INPUTS = "inputs"  # under the store's shared state, beside the run folders


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    format: str  # PNG, JPEG or WEBP
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.sha256}.{FORMATS[self.format]}"


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "image_too_large", f"a reference image is larger than {max_bytes // (1024 * 1024)} MB; "
                                            "send a smaller or more compressed PNG, JPEG or WebP")


def check_image_bytes(data: bytes, max_bytes: int) -> CheckedImage:
    """Decode `data` fully; PNG, JPEG or WebP within the limits, or an ApiError saying why not."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > max_bytes:
        raise too_large(max_bytes)
    unsupported = ApiError(415, "unsupported_image", "a reference image could not be decoded as PNG, JPEG or WebP; "
                                                     "send one of those formats")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in FORMATS:
                    raise unsupported
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ApiError(413, "image_too_large", f"a reference image is {width}x{height} pixels; "
                                                           f"send one of at most {MAX_PIXELS // 1_000_000} megapixels")
                image.load()  # decodes every pixel: a truncated or corrupt file fails here
                return CheckedImage(data=data, format=image.format, width=width, height=height)
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, EOFError):
        raise unsupported from None


def decode_base64_image(text: str, max_bytes: int) -> CheckedImage:
    """An image from base64 (a `data:image/...;base64,` prefix is allowed)."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    compact = "".join(text.split())
    if len(compact) > (max_bytes * 4) // 3 + 8:  # refuse before decoding what is surely too big
        raise too_large(max_bytes)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_base64", "a reference image's data_base64 is not valid base64") from None
    return check_image_bytes(data, max_bytes)


class ImageFetcher:
    """Downloads reference images from public https URLs (see the module text). `resolver`
    and `transport` are injectable: a test resolves names its own way or serves the bytes."""

    def __init__(self, max_bytes: int, resolver: Resolver = system_resolver, transport=None,
                 timeout_s: float = 10.0, max_redirects: int = 3):
        self.max_bytes, self.resolver, self.transport = max_bytes, resolver, transport
        self.timeout_s, self.max_redirects = timeout_s, max_redirects

    def fetch(self, url: str) -> CheckedImage:
        import httpx

        with httpx.Client(transport=self.transport, timeout=self.timeout_s, follow_redirects=False, trust_env=False) as client:
            for _ in range(self.max_redirects + 1):
                try:
                    target = parse_image_url(url)
                    address = public_addresses(target.host, target.port, self.resolver)[0]
                except UrlRejected as exc:
                    raise ApiError(400, "url_not_allowed", str(exc)) from None
                host = f"[{address}]" if ":" in address else address
                request = client.build_request(
                    "GET", f"https://{host}:{target.port}{target.path_and_query}",
                    headers={"Host": target.host if target.port == 443 else f"{target.host}:{target.port}",
                             "Accept": "image/png, image/jpeg, image/webp"},
                    extensions={"sni_hostname": target.host},
                )
                try:
                    response = client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise ApiError(422, "image_unreachable", f"the image at {target.host} could not be fetched "
                                                             f"({exc.__class__.__name__}); check the URL") from None
                try:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        url = str(httpx.URL(target.url).join(location))
                        continue
                    if response.status_code != 200:
                        raise ApiError(422, "image_unreachable", f"the image at {target.host} answered HTTP "
                                                                 f"{response.status_code}; check the URL")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.max_bytes:
                        raise too_large(self.max_bytes)
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body.extend(chunk)
                        if len(body) > self.max_bytes:
                            raise too_large(self.max_bytes)
                except httpx.HTTPError as exc:
                    raise ApiError(422, "image_unreachable", f"the image at {target.host} could not be fetched "
                                                             f"({exc.__class__.__name__}); check the URL") from None
                finally:
                    response.close()
                return check_image_bytes(bytes(body), self.max_bytes)
        raise ApiError(422, "image_unreachable", f"the image URL redirected more than {self.max_redirects} times")


class InputImages:
    """Reference images in the store's shared state (`state/inputs/<sha256>.<ext>`),
    content-addressed, and readable as local files by whoever renders: a local store's file
    is used in place; an S3 object is copied to the same scratch path on every node."""

    def __init__(self, store):
        from longvid.runtime.store import LocalRunStore

        self.store = store
        if isinstance(store, LocalRunStore):
            self.local_root = Path(store.root).resolve() / "state" / INPUTS
        else:
            self.local_root = Path(store.scratch_root) / "state" / INPUTS

    def save(self, image: CheckedImage) -> Path:
        from longvid.runtime.store import atomic_write_bytes

        name = image.filename
        if self.store.get_state(f"{INPUTS}/{name}") is None:
            self.store.put_state(f"{INPUTS}/{name}", image.data)
        local = self.local_root / name
        if not local.is_file():
            atomic_write_bytes(local, image.data)
        return local

    def materialize(self, paths) -> None:
        """Make sure stored inputs named in a spec exist locally (on another node, an S3
        store's images are fetched to the path the spec names). Other paths are left alone."""
        from longvid.runtime.store import atomic_write_bytes

        for path in map(Path, paths):
            if path.parent == self.local_root and not path.is_file():
                data = self.store.get_state(f"{INPUTS}/{path.name}")
                if data is not None:
                    atomic_write_bytes(path, data)
