"""A local Vertex AI Veo endpoint: the wire google-genai 3.x speaks, with real MP4 outputs.

Routes (the paths the installed SDK calls, checked by recording them):
`POST /v1beta1/[projects/{p}/locations/{l}/]publishers/google/models/{model}:predictLongRunning`
-> `{"name": "<same prefix>/publishers/google/models/{model}/operations/{uuid}"}`, and
`POST .../models/{model}:fetchPredictOperation {"operationName"}` -> `{"name"}` while
running, then `{"name", "done": true, "response": {"videos": [{"bytesBase64Encoded",
"mimeType": "video/mp4"}], "raiMediaFilteredCount": 0}}` or `{"done": true, "error":
{"code", "message"}}`. Auth: `x-goog-api-key: <api_key>` (express mode) or
`Authorization: Bearer <token>` (project mode). Errors are Google's
`{"error": {"code", "message", "status"}}`.

Faults as in the fake Runway (`Fault`, appended to `fake.faults`): request faults on
"create" or "poll" (HTTP statuses with Retry-After, "slow", "malformed", "truncate" =
the finished operation carries half an MP4); task faults "fail" (an operation `error`:
code 3 with a usage-guidelines message when `failure_code` has SAFETY or INPUT in it,
else code 13), "rai" (done, every video filtered), "stuck", "throttle" (`polls` more
polls before done). Counters in `fake.counts` ("create", "poll").

By hand: `python -m longvid.testing.fake_veo --port 8090`, then
`GOOGLE_VERTEX_BASE_URL=http://127.0.0.1:8090 GOOGLE_API_KEY=<printed key> longvid render ... --provider veo`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .fake_runway import Fault, FaultList, Recorded, apply_request_fault, even, image_ok, render_clip
from .server import LocalServer

DEFAULT_KEY = "AIzaFAKE-veo-0123456789abcdefghijklmnop"
DEFAULT_TOKEN = "ya29.fake-access-token"
_PATH = re.compile(
    r"^/(?P<version>v1beta1|v1)/(?P<resource>(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/(?P<model>[^/:]+))"
    r":(?P<method>predictLongRunning|fetchPredictOperation)$"
)
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_PARAMETERS = {"sampleCount", "durationSeconds", "aspectRatio", "resolution", "negativePrompt", "seed", "generateAudio",
               "personGeneration", "storageUri", "enhancePrompt", "compressionQuality", "fps"}
_SIZES = {("16:9", "720p"): (1280, 720), ("9:16", "720p"): (720, 1280), ("16:9", "1080p"): (1920, 1080), ("9:16", "1080p"): (1080, 1920)}


@dataclass
class FakeOperation:
    name: str
    model: str
    prompt: str
    image: bytes | None
    duration: int
    aspect: str
    resolution: str
    seed: int
    samples: int
    extra_polls: int = 0
    outcome: str = "SUCCEEDED"  # SUCCEEDED | FAILED | RAI | STUCK
    error: dict | None = None
    rai_reason: str = ""
    polls: int = 0
    mp4: bytes | None = None


class FakeVeo:
    def __init__(
        self,
        api_key: str = DEFAULT_KEY,
        *,
        token: str = DEFAULT_TOKEN,
        scale: float = 0.1,
        fps: int = 24,
        running_polls: int = 1,
    ):
        self.api_key = api_key
        self.token = token
        self.scale = scale
        self.fps = fps
        self.running_polls = running_polls
        self.faults = FaultList()
        self.counts: Counter[str] = Counter()
        self.requests: list[Recorded] = []
        self.operations: dict[str, FakeOperation] = {}
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{path:path}", self._dispatch, methods=["POST", "GET"])])

    def reset(self) -> None:
        self.faults.clear()
        self.counts.clear()
        self.requests.clear()
        self.operations.clear()

    @staticmethod
    def _error(status: int, message: str | None = None) -> dict:
        return {"error": {"code": status, "message": message or _STATUS.get(status, "error").replace("_", " ").lower(),
                          "status": _STATUS.get(status, "UNKNOWN")}}

    def _reply_error(self, status: int, message: str) -> JSONResponse:
        return JSONResponse(self._error(status, message), status_code=status)

    async def _dispatch(self, request: Request) -> Response:
        match = _PATH.match(request.url.path)
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        route = "create" if match and match["method"] == "predictLongRunning" else "poll"
        with self._lock:
            self.counts[route] += 1
            self.requests.append(Recorded(request.method, request.url.path, dict(request.headers), body))
        fault = self.faults.take_request_fault(route)
        early = await apply_request_fault(fault, self._error)
        if early is not None:
            return early
        if match is None or request.method != "POST":
            return self._reply_error(404, f"no such method: {request.method} {request.url.path}")
        key = request.headers.get("x-goog-api-key")
        bearer = request.headers.get("authorization")
        if not ((key is not None and key == self.api_key) or bearer == f"Bearer {self.token}"):
            if key is not None:
                return self._reply_error(400, "API key not valid. Please pass a valid API key.")
            return self._reply_error(401, "Request is missing required authentication credential.")
        if not isinstance(body, dict):
            return self._reply_error(400, "Invalid JSON payload received.")
        if route == "create":
            response = self._create(match, body)
        else:
            response = await self._fetch(match, body, fault)
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
        return response

    def _create(self, match: re.Match, body: dict) -> Response:
        instances = body.get("instances")
        parameters = body.get("parameters") or {}
        if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
            return self._reply_error(400, "instances must hold exactly one instance")
        instance = instances[0]
        unknown = [k for k in parameters if k not in _PARAMETERS]
        if unknown:
            return self._reply_error(400, f'Invalid JSON payload received. Unknown name "{unknown[0]}" at \'parameters\'')
        prompt = instance.get("prompt")
        image = None
        if instance.get("image") is not None:
            encoded = instance["image"].get("bytesBase64Encoded") if isinstance(instance["image"], dict) else None
            try:
                image = base64.b64decode(encoded or "", validate=True)
            except ValueError:
                image = b""
            if not image or not image_ok(image):
                return self._reply_error(400, "The image could not be decoded.")
        if not prompt and image is None:
            return self._reply_error(400, "A prompt or an image is required.")
        duration = parameters.get("durationSeconds", 8)
        if duration not in (4, 6, 8):
            return self._reply_error(400, f"Unsupported durationSeconds {duration}: use 4, 6 or 8.")
        aspect = parameters.get("aspectRatio", "16:9")
        resolution = parameters.get("resolution", "720p")
        if (aspect, resolution) not in _SIZES:
            return self._reply_error(400, f"Unsupported aspectRatio/resolution {aspect}/{resolution}.")
        samples = parameters.get("sampleCount", 1)
        if not isinstance(samples, int) or not 1 <= samples <= 4:
            return self._reply_error(400, "sampleCount must be 1 to 4.")
        seed = parameters.get("seed", 0)
        if not isinstance(seed, int) or not 0 <= seed <= 4294967295:
            return self._reply_error(400, "seed must be a uint32.")
        op = FakeOperation(
            name=f"{match['resource']}/operations/{uuid.uuid4()}", model=match["model"], prompt=prompt or "",
            image=image, duration=duration, aspect=aspect, resolution=resolution, seed=seed, samples=samples,
        )
        for task_fault in self.faults.take_task_faults():
            if task_fault.kind == "fail":
                code = task_fault.failure_code.upper()
                if "SAFETY" in code or code.startswith("INPUT"):
                    message = task_fault.message or ("The prompt could not be submitted: it contains words that "
                                                     "violate Vertex AI's usage guidelines.")
                    op.outcome, op.error = "FAILED", {"code": 3, "message": message}
                else:
                    op.outcome, op.error = "FAILED", {"code": 13, "message": task_fault.message or "Internal error."}
            elif task_fault.kind == "rai":
                op.outcome, op.rai_reason = "RAI", task_fault.message or "Unable to show the video: it may violate usage guidelines."
            elif task_fault.kind == "stuck":
                op.outcome = "STUCK"
            elif task_fault.kind == "throttle":
                op.extra_polls = task_fault.polls
        with self._lock:
            self.operations[op.name] = op
        return JSONResponse({"name": op.name})

    async def _fetch(self, match: re.Match, body: dict, fault: Fault | None) -> Response:
        name = body.get("operationName")
        op = self.operations.get(name) if isinstance(name, str) else None
        if op is None or not name.startswith(match["resource"] + "/operations/"):
            return self._reply_error(404, f"Operation {name!r} not found.")
        op.polls += 1
        if op.outcome == "STUCK" or op.polls <= self.running_polls + op.extra_polls:
            return JSONResponse({"name": op.name, "metadata": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1beta1.GenericOperationMetadata"}})
        if op.outcome == "FAILED":
            return JSONResponse({"name": op.name, "done": True, "error": op.error})
        if op.outcome == "RAI":
            return JSONResponse({"name": op.name, "done": True, "response": {
                "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
                "raiMediaFilteredCount": op.samples, "raiMediaFilteredReasons": [op.rai_reason]}})
        if op.mp4 is None:
            width, height = _SIZES[(op.aspect, op.resolution)]
            op.mp4 = await run_in_threadpool(
                render_clip, op.prompt, op.seed, even(width * self.scale), even(height * self.scale), op.duration, self.fps, op.image
            )
        data = op.mp4[: len(op.mp4) // 2] if fault is not None and fault.kind == "truncate" else op.mp4
        video = {"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": "video/mp4"}
        return JSONResponse({"name": op.name, "done": True, "response": {
            "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
            "raiMediaFilteredCount": 0, "videos": [video] * op.samples}})


def start_fake_veo(**options) -> tuple[LocalServer, FakeVeo]:
    """A FakeVeo served on 127.0.0.1 (a free port); stop the server when done."""
    fake = FakeVeo(**options)
    return LocalServer(fake.app).start(), fake


@contextlib.contextmanager
def fake_veo(**options) -> Iterator[tuple[LocalServer, FakeVeo]]:
    server, fake = start_fake_veo(**options)
    try:
        yield server, fake
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m longvid.testing.fake_veo", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--key", default=DEFAULT_KEY, help="the API key it accepts (express mode)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bearer token it accepts (project mode)")
    parser.add_argument("--scale", type=float, default=0.5, help="output size as a fraction of 720p/1080p")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--running-polls", type=int, default=2)
    args = parser.parse_args(argv)
    fake = FakeVeo(args.key, token=args.token, scale=args.scale, fps=args.fps, running_polls=args.running_polls)
    print(f"fake Veo (Vertex) on http://{args.host}:{args.port}\n"
          f"  export GOOGLE_VERTEX_BASE_URL=http://{args.host}:{args.port}\n  export GOOGLE_API_KEY={args.key}", flush=True)
    import uvicorn

    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
