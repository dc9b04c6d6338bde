"""The body of POST /v1/plans and POST /v1/renders: JSON, or multipart/form-data with a
`spec` part (the same JSON) and up to four `images` parts (uploaded reference images).

Read here rather than by FastAPI because one route takes either (FastAPI binds a body to one
content type). A multipart body is parsed as it streams in (python-multipart), within limits
checked on the way: an image part is refused as soon as it passes the image size cap, an
image part beyond the fourth as soon as its headers arrive, and the whole body stays under
the API's body cap (the BodySizeLimit middleware counts every chunk received). Nothing is
spooled to disk. Uploaded bytes are only collected here; they are decoded and checked later
exactly like base64 images (serve/images.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from .errors import ApiError, describe_request_errors
from .images import too_large
from .models import MAX_REFERENCE_IMAGES

SPEC, IMAGES = "spec", "images"  # the multipart field names
JSON, MULTIPART = "application/json", "multipart/form-data"

Body = TypeVar("Body", bound=BaseModel)


@dataclass(frozen=True)
class Submitted(Generic[Body]):
    """A validated request and the image files uploaded with it (raw bytes, not yet checked)."""

    body: Body
    uploads: tuple[bytes, ...] = ()

    @property
    def sha256(self) -> str:
        """What an Idempotency-Key is bound to: the request and the bytes of every upload, in
        order. Without uploads it is the hash of the JSON alone, as before uploads existed."""
        text = self.body.model_dump_json() + "".join(f"\nupload:{hashlib.sha256(u).hexdigest()}" for u in self.uploads)
        return hashlib.sha256(text.encode()).hexdigest()


def body_kind(content_type: str | None) -> str:
    """JSON or MULTIPART, from a Content-Type header; anything else is a 415."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == JSON or kind.endswith("+json"):
        return JSON
    if kind == MULTIPART:
        return MULTIPART
    raise ApiError(415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json), or as "
                                                  "multipart/form-data with a 'spec' field and 'images' files")


def parse_json(raw: bytes, model: type[Body], what: str = "the request body") -> Body:
    """`raw` as `model`: 400 invalid_json if it is not JSON, 422 invalid_request if it does not fit."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        broken = next((e for e in errors if e["type"] == "json_invalid"), None)
        if broken is not None:  # e.g. "EOF while parsing...", "recursion limit exceeded..."; never the input
            reason = str((broken.get("ctx") or {}).get("error", "malformed"))[:120]
            raise ApiError(400, "invalid_json", f"{what} is not valid JSON ({reason}); send one JSON object") from None
        raise ApiError(422, "invalid_request", describe_request_errors(errors)) from None


def invalid_multipart(why: str) -> ApiError:
    return ApiError(400, "invalid_multipart", f"{why}; send a 'spec' field and 'images' files, e.g. "
                                              "curl -F spec='{\"prompt\": \"...\"}' -F images=@ref.png")


def too_many_images(count: int, max_images: int) -> ApiError:
    return ApiError(422, "invalid_request", f"{count} reference images in all (spec.reference_images and uploaded "
                                            f"'images' together); send at most {max_images}")


class _FormCollector:
    """python-multipart callbacks that keep the `spec` part and the `images` parts in memory,
    within the limits, and refuse anything else as it arrives."""

    def __init__(self, max_image_bytes: int, max_images: int):
        self.max_image_bytes, self.max_images = max_image_bytes, max_images
        self.spec: bytearray | None = None
        self.images: list[bytearray] = []
        self.ended = False
        self._part: bytearray | None = None  # where the current part's data goes
        self._part_is_image, self._filename = False, None
        self._header_name = self._header_value = b""
        self._disposition: bytes | None = None

    def callbacks(self) -> dict:
        return {"on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end, "on_end": self.on_end}

    def on_part_begin(self) -> None:
        self._part, self._part_is_image, self._filename, self._disposition = None, False, None, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]  # python-multipart caps header size and count

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name, self._filename = options.get(b"name"), options.get(b"filename")
        if name is None:
            raise invalid_multipart("a part has no Content-Disposition name")
        if name == SPEC.encode():
            if self.spec is not None:
                raise ApiError(422, "invalid_request", "the form has more than one 'spec' field; send the request once")
            self._part = self.spec = bytearray()
        elif name == IMAGES.encode():  # by name: a filename or declared type is never trusted
            if len(self.images) >= self.max_images:
                raise too_many_images(len(self.images) + 1, self.max_images)
            self._part, self._part_is_image = bytearray(), True
            self.images.append(self._part)
        else:
            shown = name.decode("latin-1")[:40]
            raise ApiError(422, "invalid_request", f"unknown form field {shown!r}; send 'spec' (the request as JSON) "
                                                   "and 'images' (reference image files)")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part is None:
            raise invalid_multipart("part data came before the part's headers")
        self._part += data[start:end]
        if self._part_is_image and len(self._part) > self.max_image_bytes:
            raise too_large(self.max_image_bytes)  # now, not after the rest of the part has arrived

    def on_part_end(self) -> None:
        if self._part_is_image and not self._part and self._filename == b"":
            self.images.pop()  # what a browser sends for a file input left empty: no image
        self._part = None

    def on_end(self) -> None:
        self.ended = True


async def read_multipart(request: Request, model: type[Body], max_image_bytes: int,
                         max_images: int = MAX_REFERENCE_IMAGES) -> Submitted[Body]:
    _, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if not boundary:
        raise invalid_multipart("the multipart/form-data Content-Type names no boundary (let the HTTP client set it)")
    form = _FormCollector(max_image_bytes, max_images)
    try:
        parser = MultipartParser(boundary, form.callbacks())
        async for chunk in request.stream():  # each chunk counted by BodySizeLimit as it arrives
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise invalid_multipart("the multipart body is malformed") from None
    if not form.ended:
        raise invalid_multipart("the multipart body ended before its closing boundary")
    if form.spec is None:
        raise ApiError(422, "invalid_request", "the form has no 'spec' field: send the request as JSON in it, "
                                               "e.g. -F spec='{\"prompt\": \"a red fox in the snow\"}'")
    body = parse_json(bytes(form.spec), model, what="the 'spec' field")
    total = len(getattr(body, "reference_images", ())) + len(form.images)
    if total > max_images:
        raise too_many_images(total, max_images)
    return Submitted(body, tuple(bytes(image) for image in form.images))


async def read_submission(request: Request, model: type[Body], max_image_bytes: int) -> Submitted[Body]:
    """The request body as `model`, with any uploaded images: JSON or multipart/form-data."""
    if body_kind(request.headers.get("content-type")) == JSON:
        return Submitted(parse_json(await request.body(), model))  # the body cap holds: BodySizeLimit
    return await read_multipart(request, model, max_image_bytes)


# -- OpenAPI ----------------------------------------------------------------------------------------

def openapi_request_body(model: type[BaseModel]) -> dict:
    """`openapi_extra` of a route that reads its body with read_submission: both forms."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {
        JSON: {"schema": ref},
        MULTIPART: {
            "schema": {
                "type": "object", "required": [SPEC],
                "properties": {
                    SPEC: {**ref, "description": f"the {model.__name__}, as JSON"},
                    IMAGES: {"type": "array", "maxItems": MAX_REFERENCE_IMAGES,
                             "items": {"type": "string", "format": "binary"},
                             "description": "reference images (PNG, JPEG or WebP), after any in spec.reference_images; "
                                            f"at most {MAX_REFERENCE_IMAGES} in all"},
                },
            },
            "encoding": {SPEC: {"contentType": JSON}, IMAGES: {"contentType": "image/png, image/jpeg, image/webp"}},
        },
    }}}


def add_component_schemas(openapi: dict, models: list[type[BaseModel]]) -> dict:
    """Put `models` (and the models they use) into the schema's components, where the
    request bodies of openapi_request_body point."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in top.get("$defs", {}).items():
        if components.setdefault(name, schema) != schema:
            raise RuntimeError(f"two different OpenAPI schemas are named {name!r}")
    return openapi
