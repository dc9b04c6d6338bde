"""A fake of Gemini's generateContent for the vision judge (consistency/gemini_judge.py).

The same wire format as fake_gemini.py (its request parsing, errors and token counts are
reused), answering a verdict instead of a storyboard: the next scripted one
(`fake.script(verdict, times)`), else `fake.default` (a pass). Faults from fake_gemini's
`Fault` are queued the same way: RATE_LIMIT (429), SERVER_ERROR (500), MALFORMED (not JSON),
SLOW (answers after `slow_s`). Every request is recorded, with its inline images.

    with start_fake_gemini_judge() as server:
        settings = GeminiSettings(api_key=server.api_key, base_url=server.url)
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .fake_gemini import _ERRORS, DEFAULT_FAKE_KEY, Fault, ReceivedRequest, _error, _usage
from .server import LocalServer

PASSING = {"character": 0.92, "scene": 0.9, "lighting": 0.93, "motion": 0.95, "passed": True, "reasons": [], "adjustments": []}


@dataclass
class FakeGeminiJudge:
    api_key: str = DEFAULT_FAKE_KEY
    default: dict[str, Any] = field(default_factory=lambda: dict(PASSING))
    slow_s: float = 2.0
    requests: list[ReceivedRequest] = field(default_factory=list, init=False)
    _script: deque = field(default_factory=deque, init=False, repr=False)
    _faults: deque = field(default_factory=deque, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def script(self, verdict: dict[str, Any], times: int = 1) -> FakeGeminiJudge:
        with self._lock:
            self._script.extend([verdict] * times)
        return self

    def inject(self, fault: Fault | str, times: int = 1) -> FakeGeminiJudge:
        with self._lock:
            self._faults.extend([Fault(fault)] * times)
        return self

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{version}/models/{target}", self._generate, methods=["POST"])])

    async def _generate(self, request: Request) -> JSONResponse:
        version, target = request.path_params["version"], request.path_params["target"]
        model, _, method = target.partition(":")
        if method != "generateContent":
            return _error(404, "NOT_FOUND", f"Method {target} is not served by this fake.")
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        received = ReceivedRequest(api_version=version, model=model, api_key=key,
                                   headers={k.lower(): v for k, v in request.headers.items()}, body=json.loads(await request.body()))
        with self._lock:
            self.requests.append(received)
            fault = self._faults.popleft() if self._faults else None
            verdict = self._script.popleft() if self._script else self.default
        if key != self.api_key:
            return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID")
        if fault in _ERRORS:
            return _error(*_ERRORS[fault])
        if fault is Fault.SLOW:
            await asyncio.sleep(self.slow_s)
        text = "The frames look consistent to me!" if fault is Fault.MALFORMED else json.dumps(verdict)
        return JSONResponse({
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": _usage(received, text),
            "modelVersion": "fake-gemini-judge-001",
        })


class FakeGeminiJudgeServer(LocalServer):
    def __init__(self, fake: FakeGeminiJudge | None = None, host: str = "127.0.0.1", port: int = 0):
        self.fake = fake or FakeGeminiJudge()
        super().__init__(self.fake.app, host=host, port=port)

    @property
    def api_key(self) -> str:
        return self.fake.api_key


def start_fake_gemini_judge(fake: FakeGeminiJudge | None = None, port: int = 0) -> FakeGeminiJudgeServer:
    server = FakeGeminiJudgeServer(fake, port=port)
    server.start()
    return server
