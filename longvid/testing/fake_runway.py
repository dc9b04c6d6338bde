"""A local Runway: the developer API's wire format on 127.0.0.1, with real MP4 outputs.

Speaks what PROVIDERS.md records: `POST /v1/image_to_video` and `/v1/text_to_video`
(camelCase body, validated strictly: unknown fields, wrong ratios or durations for the
model -> 400 `{"error", "issues"}`), `GET /v1/tasks/{id}` (PENDING -> RUNNING ->
SUCCEEDED over a configurable number of polls, with `output: [url]`), `DELETE
/v1/tasks/{id}`, and the output download from a "CDN" route with a signed-looking URL.
It checks `Authorization: Bearer <key>` and `X-Runway-Version`. Outputs are real H.264
MP4s rendered by longvid's preview renderer at the requested ratio times `scale`, for the
requested duration, starting on the prompt image when one is given.

Faults are injected by appending to `fake.faults` (see `Fault`); counters are in
`fake.counts` ("create", "poll", "download", "cancel", and "render": clips encoded, not
served as kept) and every request is recorded in `fake.requests`. The `Fault` machinery is shared with the fake Veo.

By hand: `python -m longvid.testing.fake_runway --port 8089`, then
`RUNWAYML_BASE_URL=http://127.0.0.1:8089 RUNWAYML_API_SECRET=<printed key> longvid render ... --provider runway`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import io
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import LocalServer

DEFAULT_KEY = "key_" + "0123456789abcdef" * 8  # the shape of a real key: key_ + 128 hex
API_VERSION = "2024-11-06"

_GEN4 = frozenset({"1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672"})
_VEO = frozenset({"1280:720", "720:1280", "1080:1920", "1920:1080"})
# model -> (durations, i2v ratios, t2v ratios or None, extra fields it accepts)
MODELS: dict[str, tuple[frozenset[int], frozenset[str], frozenset[str] | None, frozenset[str]]] = {
    "gen4_turbo": (frozenset({5, 10}), _GEN4, None, frozenset({"seed"})),
    "gen4.5": (frozenset(range(2, 11)), _GEN4, frozenset({"1280:720", "720:1280"}), frozenset({"seed"})),
    "veo3.1": (frozenset({4, 6, 8}), _VEO, _VEO, frozenset({"audio", "negativePrompt"})),
    "veo3.1_fast": (frozenset({4, 6, 8}), _VEO, _VEO, frozenset({"audio", "negativePrompt"})),
}
_COMMON_FIELDS = frozenset({"model", "promptImage", "promptText", "ratio", "duration", "contentModeration"})

# -- faults -------------------------------------------------------------------------------

REQUEST_FAULTS = {"400", "401", "403", "404", "408", "429", "500", "502", "503", "504", "slow", "malformed", "truncate", "cut"}
TASK_FAULTS = {"fail", "stuck", "throttle", "rai"}


@dataclass
class Fault:
    """One injected misbehaviour.

    Request faults hit the next `times` requests to route `on` ("create", "poll",
    "download", "cancel" or "any"): an HTTP status ("429", "500", "503", "400", ...; with
    `retry_after` seconds as a Retry-After header and `message` as the error), "slow"
    (answer normally after `delay_s`; a create still makes its task), "malformed" (200
    with a body that is not JSON), "truncate" (download: the first half of the MP4 with a
    matching Content-Length) or "cut" (download: the full Content-Length declared, half
    sent, connection dropped).

    Task faults shape the next `times` tasks created: "fail" (ends FAILED with
    `failure_code` and `message`), "stuck" (RUNNING forever), "throttle" (THROTTLED for
    `polls` polls first), and for the fake Veo "rai" (done, every video filtered).
    `times=None` applies for ever.
    """

    kind: str
    on: str = "create"
    times: int | None = 1
    retry_after: float | None = None
    delay_s: float = 0.0
    failure_code: str = "SAFETY.INPUT.TEXT"
    message: str | None = None
    polls: int = 3

    def __post_init__(self) -> None:
        if self.kind not in REQUEST_FAULTS | TASK_FAULTS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(REQUEST_FAULTS | TASK_FAULTS)}")


class FaultList(list):
    """`fake.faults`: a list of Fault (append to inject) with thread-safe consumption."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def _consume(self, fault: Fault) -> None:
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self.remove(fault)

    def take_request_fault(self, route: str) -> Fault | None:
        with self._lock:
            for fault in list(self):
                if fault.kind in REQUEST_FAULTS and fault.on in (route, "any"):
                    self._consume(fault)
                    return fault
        return None

    def take_task_faults(self) -> list[Fault]:
        taken = []
        with self._lock:
            for fault in list(self):
                if fault.kind in TASK_FAULTS:
                    self._consume(fault)
                    taken.append(fault)
        return taken


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: object = None


# -- rendering ----------------------------------------------------------------------------


def even(value: float, minimum: int = 16) -> int:
    return max(minimum, int(round(value / 2)) * 2)


def render_clip(prompt: str, seed: int, width: int, height: int, duration_s: float, fps: int, image: bytes | None = None,
                provider_style: bool = False) -> bytes:
    """A real MP4 from longvid's preview renderer: `duration_s` at `fps`, width x height,
    starting on `image` when one is given. With `provider_style`, encoded as a provider does
    (another x264 preset, one GOP for the whole clip, AAC audio: testing/provider_clip.py)."""
    from ..media.encoding import encode_mp4
    from ..providers.preview import render_frames
    from ..spec import Scene, SegmentJob

    scene = Scene(description=(prompt or "an empty landscape")[:2000])
    frames = max(1, int(round(duration_s * fps)))
    job = SegmentJob(
        index=0, scene_index=0, segment_in_scene=0, prompt=prompt, scene=scene, start_frame=0, frames=frames,
        generate_duration_s=duration_s, fps=fps, width=width, height=height, seed=seed % 2**31,
    )
    if provider_style:
        from .provider_clip import encode_provider_style

        return encode_provider_style(render_frames(job, image), fps, width, height)
    return encode_mp4(render_frames(job, image), fps, width, height)


def decode_data_uri(uri: str) -> bytes | None:
    """The bytes of a base64 image data URI, or None when it is not one."""
    if not uri.startswith("data:") or ";base64," not in uri:
        return None
    try:
        return base64.b64decode(uri.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        return None


def image_ok(data: bytes) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        return True
    except (OSError, UnidentifiedImageError, SyntaxError):
        return False


async def apply_request_fault(fault: Fault | None, error_body) -> Response | None:
    """A response for a status/malformed fault (or None: carry on). `error_body(status,
    message)` makes the provider's error JSON."""
    if fault is None or fault.kind in ("slow", "truncate", "cut"):
        return None
    if fault.kind == "malformed":
        return Response('{"id": "unterminated', status_code=200, media_type="application/json")
    status = int(fault.kind)
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    return JSONResponse(error_body(status, fault.message), status_code=status, headers=headers)


# -- the fake -------------------------------------------------------------------------------


@dataclass
class FakeTask:
    id: str
    model: str
    route: str
    ratio: str
    duration: int
    seed: int
    prompt: str
    image: bytes | None
    throttle_polls: int = 0
    outcome: str = "SUCCEEDED"  # SUCCEEDED | FAILED | STUCK
    failure_code: str | None = None
    failure: str | None = None
    polls: int = 0
    cancelled: bool = False
    created_at: float = field(default_factory=time.time)
    downloaded_at: float | None = None  # its output was fetched: the client is done with it
    mp4: bytes | None = None


class FakeRunway:
    """The fake service's state and its Starlette `app`."""

    def most_in_flight(self) -> int:
        """The most tasks that were created and not yet downloaded at one time (what a
        client's concurrency limit bounds)."""
        events = sorted([(t.created_at, 1) for t in self.tasks.values()]
                        + [(t.downloaded_at, -1) for t in self.tasks.values() if t.downloaded_at is not None],
                        key=lambda e: (e[0], e[1]))
        most = current = 0
        for _, step in events:
            current += step
            most = max(most, current)
        return most

    def __init__(
        self,
        api_key: str = DEFAULT_KEY,
        *,
        scale: float = 0.1,
        fps: int = 24,
        pending_polls: int = 1,
        running_polls: int = 1,
        output_base_url: str | None = None,
        provider_style: bool = False,
        task_latency_s: float | None = None,
        keep_clips: bool = False,
    ):
        self.api_key = api_key
        # A fixed wall time per task (PENDING for its first fifth, then RUNNING), whatever the
        # client's poll interval; None: the poll counts above decide.
        self.task_latency_s = task_latency_s
        # Clips kept by what makes them (prompt, seed, size, duration, image), across reset():
        # a benchmark renders once to fill this, then times a render that the fake serves
        # without encoding on the cores the render runs on, as the real service does.
        self._kept: dict[tuple, bytes] | None = {} if keep_clips else None
        self.scale = scale
        self.fps = fps
        self.pending_polls = pending_polls
        self.running_polls = running_polls
        self.output_base_url = output_base_url  # None: the host the request came to
        self.provider_style = provider_style  # clips from another encoder, as the real service's are
        self.faults = FaultList()
        self.counts: Counter[str] = Counter()
        self.requests: list[Recorded] = []
        self.tasks: dict[str, FakeTask] = {}
        self.download_headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/image_to_video", self._create_i2v, methods=["POST"]),
                Route("/v1/text_to_video", self._create_t2v, methods=["POST"]),
                Route("/v1/tasks/{task_id}", self._get_task, methods=["GET"]),
                Route("/v1/tasks/{task_id}", self._delete_task, methods=["DELETE"]),
                Route("/_cdn/{task_id}.mp4", self._download, methods=["GET"]),
            ]
        )

    def reset(self) -> None:
        self.faults.clear()
        self.counts.clear()
        self.requests.clear()
        self.tasks.clear()
        self.download_headers.clear()

    def creates(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _error(status: int, message: str | None = None) -> dict:
        defaults = {400: "Validation of body failed", 401: "Unauthorized", 404: "Task not found",
                    429: "You have exceeded your daily task limit", 500: "Internal server error",
                    502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout"}
        return {"error": message or defaults.get(status, "Error")}

    async def _begin(self, request: Request, route: str) -> tuple[object, Fault | None, Response | None]:
        """Record and count the request, apply a request fault, check the headers."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw[:200]
        with self._lock:
            self.counts[route] += 1
            self.requests.append(Recorded(request.method, request.url.path, dict(request.headers), body))
        fault = self.faults.take_request_fault(route)
        early = await apply_request_fault(fault, self._error)
        if early is not None:
            return body, fault, early
        if route == "download":
            return body, fault, None
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return body, fault, JSONResponse(self._error(401, "Invalid API key"), status_code=401)
        if request.headers.get("x-runway-version") != API_VERSION:
            return body, fault, JSONResponse(
                self._error(400, f"X-Runway-Version header must be {API_VERSION}"), status_code=400
            )
        return body, fault, None

    @staticmethod
    async def _finish(fault: Fault | None, response: Response) -> Response:
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
        return response

    def _state(self, task: FakeTask, advance: bool) -> str:
        if advance:
            task.polls += 1
        k = task.polls
        if task.cancelled:
            return "CANCELLED"
        if k <= task.throttle_polls:
            return "THROTTLED"
        k -= task.throttle_polls
        if self.task_latency_s is not None and k > 0:
            age = time.time() - task.created_at
            if task.outcome == "STUCK" or age < self.task_latency_s:
                return "PENDING" if age < self.task_latency_s / 5 else "RUNNING"
            return task.outcome
        if k <= self.pending_polls:
            return "PENDING"
        if task.outcome == "STUCK" or k <= self.pending_polls + self.running_polls:
            return "RUNNING"
        return task.outcome

    def _render(self, task: FakeTask) -> bytes:
        width, height = self._size(task.ratio)
        key = (task.prompt, task.seed, width, height, task.duration, self.fps, self.provider_style,
               hashlib.sha256(task.image).hexdigest() if task.image else None)
        if self._kept is not None and key in self._kept:
            return self._kept[key]
        clip = render_clip(task.prompt, task.seed, width, height, task.duration, self.fps, task.image, self.provider_style)
        with self._lock:
            self.counts["render"] += 1
        if self._kept is not None:
            self._kept[key] = clip
        return clip

    def kept_clips(self) -> int:
        """How many clips `keep_clips` holds."""
        return len(self._kept or {})

    def _size(self, ratio: str) -> tuple[int, int]:
        width, height = (int(x) for x in ratio.split(":"))
        return even(width * self.scale), even(height * self.scale)

    # -- routes --------------------------------------------------------------------------

    async def _create_i2v(self, request: Request) -> Response:
        return await self._create(request, "image_to_video")

    async def _create_t2v(self, request: Request) -> Response:
        return await self._create(request, "text_to_video")

    def _validate(self, body: object, route: str) -> tuple[list[dict], bytes | None]:
        issues: list[dict] = []

        def issue(path: str, message: str) -> None:
            issues.append({"path": [path], "message": message})

        if not isinstance(body, dict):
            return [{"path": [], "message": "body must be a JSON object"}], None
        model = body.get("model")
        if model not in MODELS:
            issue("model", f"must be one of {sorted(MODELS)}")
            return issues, None
        durations, i2v_ratios, t2v_ratios, extra = MODELS[model]
        for key in body:
            if key not in _COMMON_FIELDS | extra:
                issue(key, "unrecognized key")
        if route == "text_to_video" and t2v_ratios is None:
            issue("model", f"{model} does not support text to video")
            return issues, None
        ratios = i2v_ratios if route == "image_to_video" else t2v_ratios
        if body.get("ratio") not in ratios:
            issue("ratio", f"must be one of {sorted(ratios)}")
        duration = body.get("duration")
        if not isinstance(duration, int) or isinstance(duration, bool) or duration not in durations:
            issue("duration", f"must be one of {sorted(durations)}")
        text = body.get("promptText")
        if text is not None and (not isinstance(text, str) or not 1 <= len(text) <= 1000):
            issue("promptText", "must be a string of 1 to 1000 characters")
        if text is None and (route == "text_to_video" or model == "gen4.5"):
            issue("promptText", "required")
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= 4294967295):
            issue("seed", "must be an integer from 0 to 4294967295")
        image = None
        if route == "image_to_video":
            prompt_image = body.get("promptImage")
            if isinstance(prompt_image, list):
                uris = [p.get("uri") for p in prompt_image if isinstance(p, dict)]
                prompt_image = uris[0] if uris else None
            if not isinstance(prompt_image, str):
                issue("promptImage", "required: an https URL, runway:// URI or data URI")
            elif prompt_image.startswith("data:"):
                if len(prompt_image) > 5 * 1024 * 1024:
                    issue("promptImage", "data URIs must be at most 5 MB")
                image = decode_data_uri(prompt_image)
                if image is None:
                    issue("promptImage", "not a base64 data URI")
            elif not prompt_image.startswith(("https://", "runway://")):
                issue("promptImage", "must be an https URL, runway:// URI or data URI")
        return issues, image

    async def _create(self, request: Request, route: str) -> Response:
        body, fault, early = await self._begin(request, "create")
        if early is not None:
            return early
        issues, image = self._validate(body, route)
        if issues:
            return JSONResponse({"error": "Validation of body failed", "issues": issues}, status_code=400)
        task = FakeTask(
            id=str(uuid.uuid4()), model=body["model"], route=route, ratio=body["ratio"], duration=body["duration"],
            seed=body.get("seed", 0), prompt=body.get("promptText") or "", image=image,
        )
        if image is not None and not image_ok(image):
            task.outcome, task.failure_code, task.failure = "FAILED", "ASSET.INVALID", "The prompt image could not be read"
        for task_fault in self.faults.take_task_faults():
            if task_fault.kind == "fail":
                task.outcome, task.failure_code = "FAILED", task_fault.failure_code
                task.failure = task_fault.message or f"The task failed ({task_fault.failure_code})"
            elif task_fault.kind == "stuck":
                task.outcome = "STUCK"
            elif task_fault.kind == "throttle":
                task.throttle_polls = task_fault.polls
        with self._lock:
            self.tasks[task.id] = task
        return await self._finish(fault, JSONResponse({"id": task.id}))

    async def _get_task(self, request: Request) -> Response:
        _, fault, early = await self._begin(request, "poll")
        if early is not None:
            return early
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return JSONResponse(self._error(404), status_code=404)
        state = self._state(task, advance=True)
        data: dict[str, object] = {"id": task.id, "status": state, "createdAt": _iso(task.created_at)}
        if state == "RUNNING":
            done = task.polls - task.throttle_polls - self.pending_polls
            data["progress"] = 0.99 if task.outcome == "STUCK" else round(min(0.99, done / (self.running_polls + 1)), 3)
        elif state == "SUCCEEDED":
            base = (self.output_base_url or str(request.base_url)).rstrip("/")
            data["output"] = [f"{base}/_cdn/{task.id}.mp4?_jwt=signed-{uuid.uuid4().hex}"]
        elif state == "FAILED":
            data["failure"] = task.failure
            data["failureCode"] = task.failure_code
        return await self._finish(fault, JSONResponse(data))

    async def _delete_task(self, request: Request) -> Response:
        _, fault, early = await self._begin(request, "cancel")
        if early is not None:
            return early
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return JSONResponse(self._error(404), status_code=404)
        if self._state(task, advance=False) in ("SUCCEEDED", "FAILED", "CANCELLED"):
            with self._lock:
                del self.tasks[task.id]  # deleting a finished task removes it
        else:
            task.cancelled = True
        return await self._finish(fault, Response(status_code=204))

    async def _download(self, request: Request) -> Response:
        _, fault, early = await self._begin(request, "download")
        self.download_headers.append(dict(request.headers))
        if early is not None:
            return early
        task = self.tasks.get(request.path_params["task_id"])
        if task is None or self._state(task, advance=False) != "SUCCEEDED":
            return Response("<Error><Code>AccessDenied</Code></Error>", status_code=403, media_type="application/xml")
        if task.mp4 is None:
            task.mp4 = await run_in_threadpool(self._render, task)
        data = task.mp4
        task.downloaded_at = time.time()
        return await self._finish(fault, mp4_response(data, fault))


def mp4_response(data: bytes, fault: Fault | None) -> Response:
    """The MP4, whole, or (faults) truncated with a matching length, or cut mid-body."""
    if fault is not None and fault.kind == "truncate":
        return Response(data[: len(data) // 2], media_type="video/mp4")
    if fault is not None and fault.kind == "cut":
        half = data[: len(data) // 2]

        async def body():
            yield half

        from starlette.responses import StreamingResponse

        return StreamingResponse(body(), media_type="video/mp4", headers={"Content-Length": str(len(data))})
    return Response(data, media_type="video/mp4")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def start_fake_runway(**options) -> tuple[LocalServer, FakeRunway]:
    """A FakeRunway served on 127.0.0.1 (a free port); stop the server when done."""
    fake = FakeRunway(**options)
    return LocalServer(fake.app).start(), fake


@contextlib.contextmanager
def fake_runway(**options) -> Iterator[tuple[LocalServer, FakeRunway]]:
    server, fake = start_fake_runway(**options)
    try:
        yield server, fake
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m longvid.testing.fake_runway", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--key", default=DEFAULT_KEY, help="the API key it accepts")
    parser.add_argument("--scale", type=float, default=0.5, help="output size as a fraction of the ratio (0.5: 640x360)")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--pending-polls", type=int, default=1)
    parser.add_argument("--running-polls", type=int, default=2)
    parser.add_argument("--provider-style", action="store_true", help="clips from another encoder, with AAC audio, as Runway's are")
    args = parser.parse_args(argv)
    fake = FakeRunway(args.key, scale=args.scale, fps=args.fps, pending_polls=args.pending_polls, running_polls=args.running_polls,
                      provider_style=args.provider_style)
    print(f"fake Runway on http://{args.host}:{args.port}\n"
          f"  export RUNWAYML_BASE_URL=http://{args.host}:{args.port}\n  export RUNWAYML_API_SECRET={args.key}", flush=True)
    import uvicorn

    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
