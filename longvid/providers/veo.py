"""Google Veo on Vertex AI as a VideoProvider, through google-genai.

google-genai 3.x makes videos only in Vertex mode. Two ways to authenticate, both plain
`genai.Client(vertexai=True, ...)`:

- express mode, an API key: `GOOGLE_API_KEY` (or `GEMINI_API_KEY`; the first wins),
  sent as `x-goog-api-key`; paths `/v1beta1/publishers/google/models/{model}:...`;
- project mode: `GOOGLE_CLOUD_PROJECT` (+ `GOOGLE_CLOUD_LOCATION`, default us-central1)
  with Application Default Credentials (or `credentials=`), sent as a Bearer token;
  paths `/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{model}:...`.

As in the SDK, a project beats a key. Everything comes as a `VeoSettings` value
(longvid.settings), read at the edges from the variables named here. The wire (checked
against the installed SDK):
`POST ...:predictLongRunning` -> `{"name": "<operation>"}`; the operation name is the
task id; polling is `POST ...:fetchPredictOperation {"operationName"}` -> `done`, then
`response.videos[0].bytesBase64Encoded` or `error {code, message}` (the SDK does not
raise on that: we check `operation.error`).

The SDK's own retries are left off; the shared policy in `_http` applies (creates are
retried only when nothing can have been created). Other settings: `LONGVID_VEO_MODEL`
(default veo-3.1-fast-generate-preview), `LONGVID_VEO_PRICES` (JSON, USD per second by
model), `GOOGLE_VERTEX_BASE_URL` (a proxy or a fake).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..errors import InputError
from ..settings import GOOGLE_KEY_ENVS, VEO_DEFAULT_LOCATION, VEO_DEFAULT_MODEL, VeoSettings
from ..planning.segmentation import DurationRule
from ..spec import AspectRatio, SegmentJob
from ._http import (
    AUTH,
    CANCELLED,
    MALFORMED,
    NOT_FOUND,
    NOT_READY,
    CorruptDownload,
    MalformedResponse,
    ProviderError,
    ProviderHTTPError,
    ProviderRejected,
    RetryPolicy,
    Secret,
    SubmitOutcomeUnknown,
    check_mp4,
    error_for_status,
    parse_retry_after,
    run_call,
    safe_url,
    sanitize,
)
from .base import ProviderCapabilities, TaskState, TaskStatus, Trait

log = logging.getLogger(__name__)

PRICES_ENV = "LONGVID_VEO_PRICES"
KEY_ENVS = GOOGLE_KEY_ENVS
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"
DEFAULT_MODEL = VEO_DEFAULT_MODEL
DEFAULT_LOCATION = VEO_DEFAULT_LOCATION
DURATIONS = DurationRule(min_s=4, max_s=8, allowed=(4.0, 6.0, 8.0))
ASPECTS = {AspectRatio.LANDSCAPE: "16:9", AspectRatio.PORTRAIT: "9:16"}
RESOLUTIONS = ("720p", "1080p")

# USD per second of video (unverified, PROVIDERS.md): override with LONGVID_VEO_PRICES.
VEO_PRICES: dict[str, float] = {
    "veo-3.1-generate-preview": 0.40,
    "veo-3.1-fast-generate-preview": 0.15,
    "veo-3.0-generate-001": 0.40,
    "veo-3.0-fast-generate-001": 0.15,
}

_RPC_NAMES = {1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
              7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
              13: "INTERNAL", 14: "UNAVAILABLE", 16: "UNAUTHENTICATED"}
_SAFETY_WORDS = re.compile(r"responsible ai|usage guideline|safety|sensitive|prohibited|violat|blocked", re.IGNORECASE)


def price_per_second(settings: VeoSettings, model: str) -> float:
    """USD per second of `model`: the override in the settings, else the table above."""
    table = {**VEO_PRICES, **settings.prices}
    if model in table:
        return table[model]
    guess = 0.15 if "fast" in model else 0.40
    log.warning("no price known for Veo model %s; assuming $%.2f/s (set %s)", model, guess, PRICES_ENV)
    return guess


def resolve_model(settings: VeoSettings) -> str:
    name = settings.model.strip()
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise InputError(f"not a Veo model id: {name!r} (e.g. {DEFAULT_MODEL})")
    return name


def veo_capabilities(settings: VeoSettings, audio: bool = False) -> ProviderCapabilities:
    """What the configured Veo model can do. Needs no credentials (the CLI lists it offline)."""
    name = resolve_model(settings)
    usd = price_per_second(settings, name)
    return ProviderCapabilities(
        name="veo",
        model=name,
        durations=DURATIONS,
        aspect_ratios=tuple(ASPECTS),
        image_conditioning=True,
        audio=audio,
        runs_remotely=True,
        uses_gpu=False,
        price_per_second_usd=usd,
        idempotent_submit=False,
        max_concurrent_tasks=4,  # Vertex quotas count long-running operations per project
        traits=frozenset({Trait.PREMIUM}),
        notes=(f"Vertex AI; ${usd:.2f}/s", "needs GOOGLE_API_KEY (Vertex express) or GOOGLE_CLOUD_PROJECT + ADC"),
    )


def _aspect_for(width: int, height: int) -> str | None:
    for aspect, value in ASPECTS.items():
        w, h = (int(x) for x in aspect.value.split(":"))
        if abs(math.log(width / height) - math.log(w / h)) <= 0.03:
            return value
    return None


def operation_failure_code(code: object, message: str) -> str:
    """A failure code family for a finished operation's `error` (google.rpc.Status)."""
    name = _RPC_NAMES.get(code, "UNKNOWN") if isinstance(code, int) else "UNKNOWN"
    if _SAFETY_WORDS.search(message or ""):
        return f"SAFETY.INPUT.{name}"
    if name in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
        return f"INPUT.{name}"
    if name == "CANCELLED":
        return CANCELLED
    if name == "NOT_FOUND":
        return NOT_FOUND
    if name in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return AUTH
    return f"INTERNAL.{name}"


class VeoProvider:
    """Veo as a VideoProvider, built from its settings. Tests pass small retry waits, and
    may pass credentials (project mode) or an httpx transport."""

    def __init__(
        self,
        settings: VeoSettings,
        *,
        credentials: Any = None,
        transport: Any = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 120.0,
        resolution: str = "720p",
        generate_audio: bool = False,
        negative_prompt: str | None = None,
        verify_decode: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if resolution not in RESOLUTIONS:
            raise InputError(f"Veo resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        self.model = resolve_model(settings)
        self.capabilities = veo_capabilities(settings, audio=generate_audio)
        self.retry = retry or RetryPolicy()
        self.poll_interval_s = settings.poll_interval_s  # how often to ask for a task's state
        self.resolution = resolution
        self.generate_audio = generate_audio
        self.negative_prompt = negative_prompt
        self.verify_decode = verify_decode
        self._sleep = sleep
        self._videos: OrderedDict[str, bytes] = OrderedDict()  # finished operations seen by poll
        self._videos_lock = threading.Lock()
        self.base_url = (settings.base_url or "").rstrip("/") or None
        self.credentials_file = settings.credentials_file
        self._key: Secret | None = None
        self.mode, self.project, self.location = self._resolve_auth(settings, credentials)
        self._client = self._make_client(credentials, timeout_s, transport)

    def _resolve_auth(self, settings: VeoSettings, credentials) -> tuple[str, str | None, str | None]:
        if settings.project:
            return "project", settings.project, settings.location or DEFAULT_LOCATION
        if credentials is not None:
            raise InputError(f"Veo with credentials needs a project: set {PROJECT_ENV}")
        key = settings.api_key.get_secret_value().strip() if settings.api_key is not None else ""
        if key:
            self._key = Secret(key)
            return "express", None, None
        raise InputError(
            f"Veo needs credentials: set {KEY_ENVS[0]} (a Vertex AI API key, express mode) or "
            f"{PROJECT_ENV} with Application Default Credentials (gcloud auth application-default login)"
        )

    def _make_client(self, credentials, timeout_s: float, transport):
        from google import genai
        from google.genai import types

        options = types.HttpOptions(base_url=self.base_url, timeout=int(timeout_s * 1000),
                                    client_args={"transport": transport} if transport is not None else None)
        try:
            if self.mode == "express":
                return genai.Client(vertexai=True, api_key=self._key.reveal(), http_options=options)
            if credentials is None:
                credentials = _default_credentials(self.credentials_file)
            return genai.Client(vertexai=True, project=self.project, location=self.location, credentials=credentials,
                                http_options=options)
        except ValueError as exc:
            raise InputError(f"cannot configure the Veo client: {sanitize(exc, [self._key])}") from None

    def __repr__(self) -> str:
        where = f", project={self.project!r}, location={self.location!r}" if self.mode == "project" else ""
        return f"VeoProvider(model={self.model!r}, mode={self.mode!r}{where}, base_url={safe_url(self.base_url) if self.base_url else None!r})"

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    # -- the protocol --------------------------------------------------------------------

    def submit(self, job: SegmentJob, conditioning_png: bytes | None = None) -> str:
        from google.genai import types

        aspect = _aspect_for(job.width, job.height)
        if aspect is None:
            raise InputError(f"Veo makes 16:9 or 9:16 video, not {job.width}x{job.height}")
        try:
            duration = int(round(DURATIONS.fit(job.generate_duration_s, job.fps)))
        except ValueError as exc:
            raise InputError(f"Veo: {exc}") from None
        image = types.Image(image_bytes=conditioning_png, mime_type="image/png") if conditioning_png is not None else None
        source = types.GenerateVideosSource(prompt=job.prompt.strip() or job.scene.description, image=image)
        config = types.GenerateVideosConfig(
            number_of_videos=1,
            duration_seconds=duration,
            aspect_ratio=aspect,
            resolution=self.resolution,
            seed=job.seed % 2**32,
            negative_prompt=self.negative_prompt,
            generate_audio=self.generate_audio,
        )
        operation = self._sdk(
            lambda: self._client.models.generate_videos(model=self.model, source=source, config=config),
            create=True, what=f"create Veo operation ({self.model})",
        )
        name = getattr(operation, "name", None)
        if not isinstance(name, str) or not name:
            raise SubmitOutcomeUnknown("Vertex accepted the request but its reply has no operation name", provider="veo")
        log.info("segment %d: Veo operation %s (%s, %s, %d s)", job.index, name, self.model, aspect, duration)
        return name

    def poll(self, task_id: str) -> TaskStatus:
        from google.genai import types

        if not task_id or "/operations/" not in task_id:
            raise InputError(f"not a Veo operation name: {task_id[:60]!r}")
        try:
            operation = self._sdk(
                lambda: self._client.operations.get(types.GenerateVideosOperation(name=task_id)),
                create=False, what=f"poll Veo operation {task_id.rsplit('/', 1)[-1]}",
            )
        except ProviderRejected as exc:
            if exc.status == 404:
                return TaskStatus(TaskState.FAILED, error=str(exc), failure_code=NOT_FOUND)
            raise
        if not operation.done:
            progress = None
            metadata = operation.metadata or {}
            if isinstance(metadata.get("progressPercent"), (int, float)):
                progress = float(metadata["progressPercent"]) / 100
            return TaskStatus(TaskState.RUNNING, progress)
        if operation.error:
            error = operation.error if isinstance(operation.error, dict) else {}
            message = sanitize(error.get("message") or "no reason given", [self._key])
            code = operation_failure_code(error.get("code"), message)
            return TaskStatus(TaskState.FAILED, error=f"Veo operation failed ({code}): {message}", failure_code=code)
        response = operation.response or operation.result
        videos = (response.generated_videos or []) if response is not None else []
        if not videos:
            filtered = getattr(response, "rai_media_filtered_count", None) or 0
            reasons = "; ".join(getattr(response, "rai_media_filtered_reasons", None) or [])
            if filtered:
                return TaskStatus(TaskState.FAILED, error=sanitize(f"Veo filtered the video (responsible AI): {reasons or 'no reason given'}"),
                                  failure_code="SAFETY.OUTPUT.RAI_FILTERED")
            return TaskStatus(TaskState.FAILED, error="the Veo operation finished without a video", failure_code="INTERNAL.NO_OUTPUT")
        video = videos[0].video
        data = getattr(video, "video_bytes", None) if video is not None else None
        if not data:
            uri = getattr(video, "uri", None) if video is not None else None
            return TaskStatus(TaskState.FAILED, failure_code=MALFORMED,
                              error=f"Veo returned no inline video bytes{' (it wrote ' + safe_url(uri) + ')' if uri else ''}")
        with self._videos_lock:
            self._videos[task_id] = data
            while len(self._videos) > 8:
                self._videos.popitem(last=False)
        return TaskStatus(TaskState.SUCCEEDED, 1.0)

    def fetch(self, task_id: str) -> bytes:
        """The finished operation's MP4 (inline bytes; polled again when this instance
        did not see it finish), checked to be a complete, decodable MP4."""
        with self._videos_lock:
            data = self._videos.pop(task_id, None)
        if data is None:
            status = self.poll(task_id)
            if status.state is not TaskState.SUCCEEDED:
                raise ProviderError(
                    f"Veo operation is {status.state.value}, not SUCCEEDED" + (f": {status.error}" if status.error else ""),
                    status.failure_code or NOT_READY, provider="veo", retryable=not status.state.terminal,
                )
            with self._videos_lock:
                data = self._videos.pop(task_id)
        try:
            check_mp4(data, decode=self.verify_decode)
        except CorruptDownload as exc:
            raise CorruptDownload(f"Veo's video: {exc}", provider="veo") from None
        return data

    def cancel(self, task_id: str) -> None:
        """Vertex offers no cancel for these operations through the SDK: the task runs on
        (and is billed); resume polls it. Raising tells the caller it was not cancelled."""
        raise ProviderError("Veo operations cannot be cancelled; the operation keeps running", "CANCEL.UNSUPPORTED", provider="veo")

    def price(self, duration_s: float) -> float:
        try:
            seconds = DURATIONS.fit(duration_s, 24)
        except ValueError:
            seconds = duration_s
        return round(self.capabilities.price_per_second_usd * seconds, 6)

    # -- SDK calls under the retry policy ---------------------------------------------------

    def _sdk(self, call: Callable[[], Any], *, create: bool, what: str) -> Any:
        from google.genai import errors as genai_errors
        from pydantic import ValidationError

        statuses = self.retry.create_statuses if create else self.retry.safe_statuses

        def once() -> Any:
            # The SDK's exceptions carry the whole response body: build ours outside the
            # `except` so that none is chained (as __context__) to what we raise.
            try:
                return call()
            except genai_errors.APIError as exc:
                error: ProviderError = self._api_error(exc, statuses)
            except (json.JSONDecodeError, ValidationError) as exc:
                kind = exc.__class__.__name__
                if create:  # a 2xx we cannot read: an operation probably exists
                    error = SubmitOutcomeUnknown(f"{what}: Vertex answered but its reply is not readable ({kind})", provider="veo")
                else:
                    error = MalformedResponse(f"{what}: Vertex's answer is not valid JSON ({kind})", provider="veo")
            raise error

        return run_call(once, policy=self.retry, create=create, what=what, provider="veo", logger=log, sleep=self._sleep)

    def _api_error(self, exc, statuses: frozenset[int]) -> ProviderHTTPError:
        status = exc.code if isinstance(exc.code, int) else 0
        message = sanitize(f"Vertex answered HTTP {status} {exc.status or ''}: {exc.message or 'no message'}", [self._key])
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        retry_after = parse_retry_after(headers.get("retry-after")) if headers is not None else None
        # Vertex answers a wrong express-mode key with 400 INVALID_ARGUMENT "API key not valid".
        wrong_key = status == 400 and "api key" in (exc.message or "").lower()
        return error_for_status(status, message, provider="veo", retry_statuses=statuses, retry_after_s=retry_after, auth=wrong_key)


def _default_credentials(credentials_file: str | None = None):
    """The service-account file when one is configured (GOOGLE_APPLICATION_CREDENTIALS, carried
    in the settings to workers), else Application Default Credentials."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    scopes = ["https://www.googleapis.com/auth/cloud-platform"]
    try:
        if credentials_file:
            credentials, _ = google.auth.load_credentials_from_file(credentials_file, scopes=scopes)
        else:
            credentials, _ = google.auth.default(scopes=scopes)
    except DefaultCredentialsError:
        raise InputError(
            f"{PROJECT_ENV} is set but there are no Google credentials: run "
            f"`gcloud auth application-default login`, or unset it and set {KEY_ENVS[0]} (Vertex express mode)"
        ) from None
    return credentials
