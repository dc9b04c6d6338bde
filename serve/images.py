"""Reference images sent to the API: decoded and checked, fetched safely, stored once.

An image is accepted only if Pillow decodes it as PNG, JPEG or WebP (the name and the
declared content type are never trusted), it is at most `max_bytes`, and its pixel count
is bounded (a small file can still decode to a huge picture). URLs are fetched over https
only, from hosts whose every address is public; the connection goes to the address that
was checked (the hostname is sent as SNI and Host, so TLS still verifies the certificate),
so a DNS answer cannot change between the check and the fetch; every redirect is checked
again; the download is asked for uncompressed (a compressed answer is refused, so nothing
is decompressed and the size cap counts bytes off the wire), and stops at `max_bytes` or
at an overall deadline (a server that drips bytes cannot hold a thread for longer).

Images of a render are stored content-addressed in the run store's shared state
(`state/inputs/<sha256>.<ext>`), so a render on any replica can read them back; until a
render is created they are only staged on this replica (serve/inputs.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import ApiError
from .inputs import PENDING, StagedImages
from .security import Resolver, UrlRejected, parse_image_url, public_addresses, system_resolver

FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
MAX_PIXELS = 16_000_000  # about 4600x3450; a bigger picture is refused before it is decoded
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


def too_many_pixels(size: str) -> ApiError:
    return ApiError(413, "image_too_large", f"a reference image is {size} pixels; "
                                            f"send one of at most {MAX_PIXELS // 1_000_000} megapixels")


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
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:  # no other decoder is tried
                if image.format not in FORMATS:
                    raise unsupported
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise too_many_pixels(f"{width}x{height}")
                image.load()  # decodes every pixel: a truncated or corrupt file fails here
                return CheckedImage(data=data, format=image.format, width=width, height=height)
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own limit, far above ours
        raise too_many_pixels(f"over {(Image.MAX_IMAGE_PIXELS or 0) // 1_000_000} million") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
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
                 timeout_s: float = 10.0, max_redirects: int = 3, deadline_s: float = 20.0):
        self.max_bytes, self.resolver, self.transport = max_bytes, resolver, transport
        self.timeout_s, self.max_redirects, self.deadline_s = timeout_s, max_redirects, deadline_s

    def fetch(self, url: str) -> CheckedImage:
        import httpx

        deadline = time.monotonic() + self.deadline_s

        def time_left(host: str) -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiError(422, "image_unreachable", f"the image at {host} took longer than {self.deadline_s:g} s "
                                                         "to download; host it somewhere faster or send it as data_base64")
            return left

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
                             "Accept": "image/png, image/jpeg, image/webp",
                             "Accept-Encoding": "identity"},  # the size cap then counts what is decoded
                    extensions={"sni_hostname": target.host},
                    timeout=min(self.timeout_s, time_left(target.host)),
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
                    if response.headers.get("content-encoding", "").strip().lower() not in ("", "identity"):
                        raise ApiError(422, "image_unreachable", f"the image at {target.host} was sent compressed "
                                                                 "(Content-Encoding); serve it as a plain image file")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.max_bytes:
                        raise too_large(self.max_bytes)
                    body = bytearray()
                    for chunk in response.iter_bytes():  # not compressed (refused above): bytes as on the wire
                        body.extend(chunk)
                        if len(body) > self.max_bytes:
                            raise too_large(self.max_bytes)
                        time_left(target.host)
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
    is used in place; an S3 object is copied to the same scratch path on every node. Before a
    render is created, a request's images are only staged on local disk (`stage()`; see
    serve/inputs.py for when images are kept and swept)."""

    def __init__(self, store):
        from longvid.runtime.store import LocalRunStore

        self.store = store
        if isinstance(store, LocalRunStore):
            self.local_root = Path(store.root).resolve() / "state" / INPUTS
        else:
            self.local_root = Path(store.scratch_root) / "state" / INPUTS
        self.pending_root = self.local_root.parent / PENDING

    def stage(self) -> StagedImages:
        """A new request's stage (nothing is written to the store)."""
        return StagedImages(self.pending_root)

    def save(self, image: CheckedImage) -> Path:
        """Keep `image` in the store (for a render being created). Written again even when it
        is there already: the fresh write time keeps an orphan sweep from taking it before the
        render's manifest refers to it."""
        from longvid.runtime.store import atomic_write_bytes

        name = image.filename
        self.store.put_state(f"{INPUTS}/{name}", image.data)
        local = self.local_root / name
        if not local.is_file():
            atomic_write_bytes(local, image.data)
        return local

    def size(self, name: str) -> int:
        """Bytes of a kept image (0 if it is not here)."""
        try:
            return (self.local_root / name).stat().st_size
        except OSError:
            return 0

    def written(self) -> list[tuple[str, float]]:
        """Every kept image: (name, when it was last written, unix seconds)."""
        from longvid.runtime.store import LocalRunStore

        if isinstance(self.store, LocalRunStore):
            if not self.local_root.is_dir():
                return []
            return [(p.name, p.stat().st_mtime) for p in self.local_root.iterdir() if p.is_file() and not p.name.startswith(".")]
        prefix = f"{self.store.prefix}state/{INPUTS}/"
        out = []
        for page in self.store.client.get_paginator("list_objects_v2").paginate(Bucket=self.store.bucket, Prefix=prefix):
            out.extend((o["Key"][len(prefix):], o["LastModified"].timestamp()) for o in page.get("Contents", []))
        return out

    def delete(self, name: str, written_before: float | None = None) -> bool:
        """Remove a kept image; with `written_before`, only if it was not written again since
        (a render on another replica may have just saved the same image). True if removed."""
        from longvid.runtime.store import LocalRunStore

        if written_before is not None and self._written_at(name) >= written_before:
            return False
        if not isinstance(self.store, LocalRunStore):
            self.store.client.delete_object(Bucket=self.store.bucket, Key=f"{self.store.prefix}state/{INPUTS}/{name}")
        (self.local_root / name).unlink(missing_ok=True)
        return True

    def _written_at(self, name: str) -> float:
        """When `name` was last written (0 when it is gone)."""
        from longvid.runtime.store import LocalRunStore

        if isinstance(self.store, LocalRunStore):
            path = self.local_root / name
            return path.stat().st_mtime if path.is_file() else 0.0
        try:
            head = self.store.client.head_object(Bucket=self.store.bucket, Key=f"{self.store.prefix}state/{INPUTS}/{name}")
        except Exception:  # gone (or unreadable): nothing newer to protect
            return 0.0
        return head["LastModified"].timestamp()

    def discard_stale_stages(self, now: float, grace_s: float) -> None:
        """Stages a request left behind (its replica died) once older than `grace_s`."""
        if not self.pending_root.is_dir():
            return
        for folder in self.pending_root.iterdir():
            try:
                if now - folder.stat().st_mtime > grace_s:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue

    def materialize(self, paths) -> None:
        """Make sure stored inputs named in a spec exist locally (on another node, an S3
        store's images are fetched to the path the spec names). Other paths are left alone."""
        from longvid.runtime.store import atomic_write_bytes

        for path in map(Path, paths):
            if path.parent == self.local_root and not path.is_file():
                data = self.store.get_state(f"{INPUTS}/{path.name}")
                if data is not None:
                    atomic_write_bytes(path, data)
