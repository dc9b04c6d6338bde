"""Runway's developer API (image/text to video) as a VideoProvider, over httpx.

Why httpx and not the official `runwayml` SDK: httpx is already a dependency, so this is
one dependency fewer, and the SDK's conveniences are the parts we must control
ourselves. Its client retries 408/409/429/5xx on every method, creates included, which
can start (and bill) a task twice when a POST times out after the server took it; its
`wait_for_task_output` polls on its own schedule. Here creates are retried only when the
failure proves no task exists (see `_http`), THROTTLED is waiting (not failure),
downloads are verified as complete MP4s, and the key never reaches a log or an error.

Wire format (PROVIDERS.md): `POST /v1/image_to_video` | `/v1/text_to_video` with a
camelCase body -> `{"id"}`; `GET /v1/tasks/{id}` -> status PENDING | THROTTLED | RUNNING |
SUCCEEDED (`output: [url]`) | FAILED (`failure`, `failureCode`) | CANCELLED;
`DELETE /v1/tasks/{id}` cancels. Headers `Authorization: Bearer <key>` and
`X-Runway-Version: 2024-11-06`.

Configuration comes as a `RunwaySettings` value (longvid.settings), read at the edges from
`RUNWAYML_API_SECRET` (required), `RUNWAYML_BASE_URL`, `LONGVID_RUNWAY_MODEL` (default
gen4.5), `LONGVID_RUNWAY_PRICES` (JSON, credits per second by model, e.g. '{"gen4.5": 12}';
1 credit = $0.01).

Over 400 lines on purpose: it is one provider's whole wire protocol, read and changed together.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import quote, urlsplit

import httpx

from ..errors import InputError
from ..settings import RUNWAY_DEFAULT_BASE_URL, RUNWAY_DEFAULT_MODEL, RunwaySettings
from ..planning.segmentation import DurationRule
from ..spec import AspectRatio, SegmentJob
from ._http import (
    CANCELLED,
    NOT_FOUND,
    NOT_READY,
    UNAVAILABLE,
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

DEFAULT_BASE_URL = RUNWAY_DEFAULT_BASE_URL
API_VERSION = "2024-11-06"
KEY_ENV = "RUNWAYML_API_SECRET"
BASE_URL_ENV = "RUNWAYML_BASE_URL"
MODEL_ENV = "LONGVID_RUNWAY_MODEL"
DEFAULT_MODEL = RUNWAY_DEFAULT_MODEL
USD_PER_CREDIT = 0.01
MAX_DATA_URI_BYTES = 5_000_000  # "5 MB": the decimal reading, to be safe

_GEN4_RATIOS = ("1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672")
_VEO_RATIOS = ("1280:720", "720:1280", "1080:1920", "1920:1080")


@dataclass(frozen=True)
class RunwayModel:
    """One row of the model table. `t2v_ratios` empty: the model needs a prompt image."""

    name: str
    credits_per_s: float
    durations: DurationRule
    ratios: tuple[str, ...]  # image to video
    t2v_ratios: tuple[str, ...] = ()
    seed: bool = True  # accepts `seed`
    audio: bool = False  # accepts `audio`
    max_prompt_chars: int = 1000
    note: str = ""

    @property
    def text_to_video(self) -> bool:
        return bool(self.t2v_ratios)


def _whole_seconds(low: int, high: int) -> DurationRule:
    return DurationRule(min_s=low, max_s=high, allowed=tuple(float(s) for s in range(low, high + 1)))


# Prices are partly unverified (PROVIDERS.md): override with LONGVID_RUNWAY_PRICES or `prices=`.
RUNWAY_MODELS: dict[str, RunwayModel] = {
    m.name: m
    for m in (
        RunwayModel("gen4_turbo", 5, DurationRule(min_s=5, max_s=10, allowed=(5.0, 10.0)), _GEN4_RATIOS,
                    note="image to video only"),
        RunwayModel("gen4.5", 12, _whole_seconds(2, 10), _GEN4_RATIOS, t2v_ratios=("1280:720", "720:1280")),
        RunwayModel("veo3.1", 40, DurationRule(min_s=4, max_s=8, allowed=(4.0, 6.0, 8.0)), _VEO_RATIOS,
                    t2v_ratios=_VEO_RATIOS, seed=False, audio=True, note="Veo 3.1 through Runway"),
        RunwayModel("veo3.1_fast", 15, DurationRule(min_s=4, max_s=8, allowed=(4.0, 6.0, 8.0)), _VEO_RATIOS,
                    t2v_ratios=_VEO_RATIOS, seed=False, audio=True, note="Veo 3.1 Fast through Runway"),
    )
}

_STATES = {s.value: s for s in TaskState}


def _ratio_size(ratio: str) -> tuple[int, int]:
    width, height = ratio.split(":")
    return int(width), int(height)


def _aspect_value(aspect: AspectRatio) -> float:
    width, height = aspect.value.split(":")
    return int(width) / int(height)


def choose_ratio(width: int, height: int, ratios: tuple[str, ...], tolerance: float = 0.03) -> str | None:
    """The provider ratio for a width x height frame: same shape (within `tolerance` in
    log aspect), then the smallest that needs no upscaling, else the largest."""
    want = math.log(width / height)
    close = [r for r in ratios if abs(math.log(_ratio_size(r)[0] / _ratio_size(r)[1]) - want) <= tolerance]
    if not close:
        return None
    covering = [r for r in close if _ratio_size(r)[0] >= width and _ratio_size(r)[1] >= height]
    if covering:
        return min(covering, key=lambda r: _ratio_size(r)[0] * _ratio_size(r)[1])
    return max(close, key=lambda r: _ratio_size(r)[0] * _ratio_size(r)[1])


def _aspects(ratios: tuple[str, ...]) -> tuple[AspectRatio, ...]:
    return tuple(
        a for a in AspectRatio
        if any(abs(math.log(_ratio_size(r)[0] / _ratio_size(r)[1]) - math.log(_aspect_value(a))) <= 0.03 for r in ratios)
    )


def resolve_model(settings: RunwaySettings) -> RunwayModel:
    """The model row for the configured model (default gen4.5) with any price override applied."""
    name = settings.model.strip()
    if name not in RUNWAY_MODELS:
        raise InputError(f"unknown Runway model {name!r}; choose one of: {', '.join(sorted(RUNWAY_MODELS))}")
    row = RUNWAY_MODELS[name]
    if name in settings.prices:
        row = replace(row, credits_per_s=settings.prices[name])
    return row


def runway_capabilities(settings: RunwaySettings) -> ProviderCapabilities:
    """What the configured Runway model can do. Needs no key (the CLI lists it offline)."""
    row = resolve_model(settings)
    # Aspects every request can use, with or without a prompt image.
    usable = row.ratios if not row.text_to_video else tuple(r for r in row.ratios if r in row.t2v_ratios)
    notes = [f"{row.credits_per_s:g} credits/s", "needs RUNWAYML_API_SECRET"]
    if row.note:
        notes.insert(0, row.note)
    return ProviderCapabilities(
        name="runway",
        model=row.name,
        durations=row.durations,
        aspect_ratios=_aspects(usable),
        image_conditioning=True,
        audio=row.audio,
        runs_remotely=True,
        uses_gpu=False,
        price_per_second_usd=row.credits_per_s * USD_PER_CREDIT,
        idempotent_submit=False,
        max_concurrent_tasks=4,  # above it Runway accepts tasks but holds them THROTTLED
        traits=frozenset({Trait.CREATIVE}),
        notes=tuple(notes),
    )


def _image_data_uri(png: bytes) -> str:
    """A data URI Runway accepts (<= 5 MB): the PNG as it is, else a JPEG of it, shrunk
    until it fits."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    if len(uri) <= MAX_DATA_URI_BYTES:
        return uri
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image = image.convert("RGB")
        for _ in range(6):
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=90)
            uri = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
            if len(uri) <= MAX_DATA_URI_BYTES:
                return uri
            image = image.resize((max(1, image.width * 3 // 4), max(1, image.height * 3 // 4)))
    raise InputError("the conditioning image is too large for Runway even as a JPEG")


class RunwayProvider:
    """Runway as a VideoProvider, built from its settings. Tests pass small retry waits, and
    may pass an httpx transport (both clients use it)."""

    def __init__(
        self,
        settings: RunwaySettings,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        download_timeout_s: float = 300.0,
        audio: bool = False,
        verify_decode: bool = True,
        max_download_bytes: int = 1 << 31,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if settings.api_secret is None or not settings.api_secret.get_secret_value().strip():
            raise InputError(f"{KEY_ENV} is not set: export your Runway API key to use --provider runway")
        self._key = Secret(settings.api_secret.get_secret_value().strip())
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise InputError(f"{BASE_URL_ENV} must be an http(s) URL, got {safe_url(self.base_url)!r}")
        self.model = resolve_model(settings)
        self.capabilities = runway_capabilities(settings)
        self.retry = retry or RetryPolicy()
        self.poll_interval_s = settings.poll_interval_s  # how often to ask for a task's state
        self.audio = audio
        self.verify_decode = verify_decode
        self.max_download_bytes = max_download_bytes
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {self._key.reveal()}",
                "X-Runway-Version": API_VERSION,
                "User-Agent": "longvid",
            },
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            transport=transport,
        )
        # Outputs live on another host (a CDN, signed URLs): never send them our key.
        self._downloads = httpx.Client(
            timeout=httpx.Timeout(download_timeout_s, connect=min(10.0, download_timeout_s)),
            follow_redirects=True,
            headers={"User-Agent": "longvid"},
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"RunwayProvider(model={self.model.name!r}, base_url={safe_url(self.base_url)!r})"

    def close(self) -> None:
        self._client.close()
        self._downloads.close()

    def __enter__(self) -> RunwayProvider:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the protocol --------------------------------------------------------------------

    def submit(self, job: SegmentJob, conditioning_png: bytes | None = None) -> str:
        """Create one task; its id. Raises InputError for what this model cannot do,
        ProviderError (failure_code set) when Runway refuses or cannot be reached, and
        SubmitOutcomeUnknown when a task may have been created without us learning its id."""
        row = self.model
        if conditioning_png is None and not row.text_to_video:
            raise InputError(
                f"Runway {row.name} only makes video from an image and this segment has none; "
                f"give a reference image, use --continuity chain, or set {MODEL_ENV}=gen4.5"
            )
        ratios = row.ratios if conditioning_png is not None else row.t2v_ratios
        ratio = choose_ratio(job.width, job.height, ratios)
        if ratio is None:
            raise InputError(
                f"Runway {row.name} cannot make {job.width}x{job.height} video; its ratios are {', '.join(ratios)}"
            )
        try:
            duration = int(round(row.durations.fit(job.generate_duration_s, job.fps)))
        except ValueError as exc:
            raise InputError(f"Runway {row.name}: {exc}") from None
        prompt = job.prompt.strip() or job.scene.description
        if len(prompt) > row.max_prompt_chars:
            log.warning("segment %d: prompt cut to Runway's %d characters", job.index, row.max_prompt_chars)
            prompt = prompt[: row.max_prompt_chars]
        body: dict[str, object] = {"model": row.name, "promptText": prompt, "ratio": ratio, "duration": duration}
        if row.seed:
            body["seed"] = job.seed % 2**32
        if row.audio:
            body["audio"] = self.audio
        if conditioning_png is not None:
            body["promptImage"] = _image_data_uri(conditioning_png)
            path = "/v1/image_to_video"
        else:
            path = "/v1/text_to_video"
        data = self._create(path, body)
        task_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise SubmitOutcomeUnknown("Runway accepted the request but its reply has no task id", provider="runway")
        log.info("segment %d: Runway task %s (%s, %s, %d s)", job.index, task_id, row.name, ratio, duration)
        return task_id

    def poll(self, task_id: str) -> TaskStatus:
        try:
            data = self._get_task(task_id)
        except ProviderRejected as exc:
            if exc.status == 404:
                return TaskStatus(TaskState.FAILED, error=str(exc), failure_code=NOT_FOUND)
            raise
        return self._status(data)

    def fetch(self, task_id: str) -> bytes:
        """The finished task's MP4, downloaded at once (its URL expires) and checked to be
        a complete, decodable MP4; a truncated or corrupt download raises CorruptDownload
        (retryable) after the download retries are used up."""
        data = self._get_task(task_id)
        status = self._status(data)
        if status.state is not TaskState.SUCCEEDED:
            raise ProviderError(
                f"Runway task {task_id} is {status.state.value}, not SUCCEEDED" + (f": {status.error}" if status.error else ""),
                status.failure_code or NOT_READY, provider="runway",
                retryable=not status.state.terminal,
            )
        output = data.get("output")
        if not isinstance(output, list) or not output or not isinstance(output[0], str):
            raise MalformedResponse(f"Runway task {task_id} succeeded without an output URL", provider="runway")
        return self._download(output[0])

    def cancel(self, task_id: str) -> None:
        """Cancel a running task (or delete a finished one). An unknown task is fine."""
        try:
            self._call("DELETE", f"/v1/tasks/{self._task_path(task_id)}", what=f"cancel Runway task {task_id}")
        except ProviderRejected as exc:
            if exc.status != 404:
                raise
        log.info("Runway task %s cancelled", task_id)

    def price(self, duration_s: float) -> float:
        """USD for one generation of `duration_s` (billed at the length actually asked for)."""
        try:
            seconds = self.model.durations.fit(duration_s, 24)
        except ValueError:
            seconds = duration_s
        return round(self.model.credits_per_s * seconds * USD_PER_CREDIT, 6)

    # -- HTTP ----------------------------------------------------------------------------

    @staticmethod
    def _task_path(task_id: str) -> str:
        if not task_id or len(task_id) > 200:
            raise InputError(f"not a Runway task id: {task_id[:40]!r}")
        return quote(task_id, safe="")

    def _get_task(self, task_id: str) -> dict:
        data = self._call("GET", f"/v1/tasks/{self._task_path(task_id)}", what=f"poll Runway task {task_id}", parse=True)
        if not isinstance(data, dict):
            raise MalformedResponse(f"Runway's answer for task {task_id} is not a JSON object", provider="runway")
        return data

    def _status(self, data: dict) -> TaskStatus:
        raw = data.get("status")
        state = _STATES.get(raw) if isinstance(raw, str) else None
        if state is None:
            log.warning("Runway task %s has an unknown status %r; treating it as pending", data.get("id"), raw)
            state = TaskState.PENDING
        progress = data.get("progress")
        progress = float(progress) if isinstance(progress, (int, float)) and not isinstance(progress, bool) else None
        if state is TaskState.SUCCEEDED:
            return TaskStatus(state, progress=1.0)
        if state is TaskState.FAILED:
            code = data.get("failureCode")
            code = code if isinstance(code, str) and code else "INTERNAL"
            reason = sanitize(data.get("failure") or "no reason given", [self._key])
            return TaskStatus(state, progress, error=f"Runway task failed ({code}): {reason}", failure_code=code)
        if state is TaskState.CANCELLED:
            return TaskStatus(state, progress, error="the Runway task was cancelled", failure_code=CANCELLED)
        return TaskStatus(state, progress)

    def _create(self, path: str, body: dict) -> object:
        response = self._call("POST", path, json_body=body, what=f"create Runway task ({path})", create=True)
        ok, data = _parse_json(response)
        if not ok:
            # The server answered 2xx: a task probably exists, but we cannot know its id.
            raise SubmitOutcomeUnknown(
                f"Runway accepted the request (HTTP {response.status_code}) but its reply is not valid JSON: "
                f"{sanitize(response.text, [self._key], 120)!r}",
                status=response.status_code, provider="runway",
            )
        return data

    def _call(self, method: str, path: str, *, what: str, json_body: object = None, create: bool = False, parse: bool = False):
        """One API call under the retry policy. Creates are retried only on failures that
        prove no task was made; everything else may be repeated."""
        statuses = self.retry.create_statuses if create else self.retry.safe_statuses

        def once():
            response = self._client.request(method, path, json=json_body)
            if response.status_code >= 400:
                raise self._http_error(response, statuses)
            if not parse:
                return response
            ok, data = _parse_json(response)
            if not ok:
                raise MalformedResponse(
                    f"Runway's answer to {method} {path} is not valid JSON: {sanitize(response.text, [self._key], 120)!r}",
                    provider="runway",
                )
            return data

        try:
            return run_call(once, policy=self.retry, create=create, what=what, provider="runway", logger=log, sleep=self._sleep)
        except httpx.HTTPError as exc:  # not transient (e.g. an invalid URL)
            raise ProviderError(f"{what}: {exc.__class__.__name__}", provider="runway") from None

    def _http_error(self, response: httpx.Response, retry_statuses: frozenset[int]) -> ProviderHTTPError:
        status = response.status_code
        message = _error_message(response)
        text = sanitize(f"Runway answered HTTP {status}: {message}", [self._key])
        return error_for_status(status, text, provider="runway", retry_statuses=retry_statuses,
                                retry_after_s=parse_retry_after(response.headers.get("retry-after")), auth_hint=f" (check {KEY_ENV})")

    def _download(self, url: str) -> bytes:
        if urlsplit(url).scheme not in ("http", "https"):
            raise MalformedResponse(f"Runway's output URL is not http(s): {safe_url(url)}", provider="runway")
        where = safe_url(url)

        def once() -> bytes:
            try:
                data = self._download_once(url, where)
            except httpx.RemoteProtocolError:  # the body stopped short of its Content-Length
                raise CorruptDownload(f"downloading {where}: the connection closed before the end", provider="runway") from None
            try:
                check_mp4(data, decode=self.verify_decode)
            except CorruptDownload as exc:
                raise CorruptDownload(f"downloading {where}: {exc}", provider="runway") from None
            return data

        try:
            return run_call(once, policy=self.retry, create=False, what=f"download {where}", provider="runway", logger=log, sleep=self._sleep)
        except httpx.HTTPError as exc:
            raise ProviderError(f"downloading {where}: {exc.__class__.__name__}", provider="runway") from None

    def _download_once(self, url: str, where: str) -> bytes:
        with self._downloads.stream("GET", url) as response:
            status = response.status_code
            if status >= 400:
                text = f"downloading {where}: HTTP {status}"
                if status in self.retry.safe_statuses:
                    raise ProviderHTTPError(text, UNAVAILABLE, status=status, retryable=True, provider="runway",
                                            retry_after_s=parse_retry_after(response.headers.get("retry-after")))
                raise ProviderRejected(text + " (the output URL may have expired)", "DOWNLOAD.GONE", status=status, provider="runway")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_download_bytes:
                    raise CorruptDownload(f"{where} is larger than {self.max_download_bytes} bytes", retryable=False, provider="runway")
                chunks.append(chunk)
        return b"".join(chunks)


def _parse_json(response: httpx.Response) -> tuple[bool, object]:
    """(True, value) or (False, None): no exception, so none gets chained to ours."""
    try:
        return True, response.json()
    except ValueError:
        return False, None


def _error_message(response: httpx.Response) -> str:
    """Runway's `{"error": "...", "issues": [...]}`, or the start of the body."""
    ok, data = _parse_json(response)
    if not ok:
        return response.text[:200] or response.reason_phrase
    if isinstance(data, dict):
        message = str(data.get("error") or data.get("message") or "")
        issues = data.get("issues")
        if isinstance(issues, list):
            details = []
            for issue in issues[:5]:
                if isinstance(issue, dict) and issue.get("message"):
                    where = ".".join(str(p) for p in issue.get("path", []) if p is not None)
                    details.append(f"{where}: {issue['message']}" if where else str(issue["message"]))
            if details:
                message = f"{message} ({'; '.join(details)})" if message else "; ".join(details)
        if message:
            return message
    return json.dumps(data)[:200]
