"""A fake Gemini Developer API for tests and offline demos.

Serves `POST /{v1beta|v1}/models/{model}:generateContent` as PROVIDERS.md describes it:
key in `x-goog-api-key` (or `?key=`), body with `contents` / `generationConfig` (camelCase
or snake_case, as google-genai mixes them), answer

    {"candidates":[{"content":{"role":"model","parts":[{"text":"<json>"}]},
                    "finishReason":"STOP","index":0}],
     "usageMetadata":{"promptTokenCount":…,"candidatesTokenCount":…,"totalTokenCount":…},
     "modelVersion":"…"}

A request for AUDIO (Gemini speech) gets raw PCM speech (fake_gemini_tts.py). By default
the JSON is a sensible storyboard plan (the offline planner's, for the prompt
found in the request, in the planner's response-schema shape). Faults can be queued
(`fake.inject(Fault.MALFORMED, times=1)`) to test retries and fallbacks; every request is
recorded in `fake.requests`.

    with start_fake_gemini() as server:
        os.environ.update(server.env())          # GEMINI_API_KEY + GOOGLE_GEMINI_BASE_URL
        ...
        assert server.fake.request_count == 1

`python -m longvid.testing.fake_gemini --port 8088` runs it in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import enum
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .fake_gemini_tts import audio_answer, wants_audio
from .server import LocalServer

DEFAULT_FAKE_KEY = "fake-gemini-key-0123456789"


class Fault(str, enum.Enum):
    RATE_LIMIT = "429"  # 429 RESOURCE_EXHAUSTED
    SERVER_ERROR = "500"  # 500 INTERNAL
    UNAVAILABLE = "503"  # 503 UNAVAILABLE
    UNAUTHENTICATED = "401"  # 401 UNAUTHENTICATED
    FORBIDDEN = "403"  # 403 PERMISSION_DENIED
    KEY_INVALID = "key_invalid"  # 400 INVALID_ARGUMENT / API_KEY_INVALID (what Google sends for a bad key)
    NOT_FOUND = "404"  # 404 NOT_FOUND (unknown model)
    MALFORMED = "malformed"  # 200, but the candidate's text is not JSON
    TOO_MANY_SCENES = "too_many_scenes"  # 200, a plan with 20 scenes
    BAD_ENUM = "bad_enum"  # 200, a camera move that does not exist
    BAD_COLOUR = "bad_colour"  # 200, every scene's palette holds no usable colour (nothing to repair)
    COLOUR_NAMES = "colour_names"  # 200, palettes of colour names ("midnight blue"), 9 entries, one no colour
    EMPTY_SCENE = "empty_scene"  # 200, the last scene has no description
    EMPTY = "empty"  # 200, a candidate with no parts (finishReason SAFETY)
    SLOW = "slow"  # the default answer, after `slow_s` seconds


_ERRORS = {
    Fault.RATE_LIMIT: (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    Fault.SERVER_ERROR: (500, "INTERNAL", "An internal error has occurred. Please retry."),
    Fault.UNAVAILABLE: (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    Fault.UNAUTHENTICATED: (401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
    Fault.FORBIDDEN: (403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
    Fault.KEY_INVALID: (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
}


@dataclass
class ReceivedRequest:
    api_version: str
    model: str
    api_key: str | None
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def texts(self) -> list[str]:
        """Every text part of every content, in order."""
        return [p["text"] for c in _get(self.body, "contents", default=[]) for p in c.get("parts", []) if "text" in p]

    @property
    def prompt_text(self) -> str:
        return "\n".join(self.texts)

    @property
    def inline_data(self) -> list[dict[str, Any]]:
        """Every inline blob: {"data": b64, "mime_type" or "mimeType": …}."""
        out = []
        for content in _get(self.body, "contents", default=[]):
            for part in content.get("parts", []):
                blob = _get(part, "inlineData", "inline_data")
                if blob is not None:
                    out.append(blob)
        return out

    @property
    def images(self) -> list[tuple[str, bytes]]:
        """(mime type, bytes) of every inline blob. google-genai sends URL-safe base64;
        standard base64 is accepted too."""
        out = []
        for blob in self.inline_data:
            mime = _get(blob, "mimeType", "mime_type", default="")
            data = str(blob.get("data", "")).replace("+", "-").replace("/", "_")
            out.append((mime, base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))))
        return out

    @property
    def generation_config(self) -> dict[str, Any]:
        return _get(self.body, "generationConfig", "generation_config", default={})

    @property
    def response_schema(self) -> dict[str, Any] | None:
        return _get(self.generation_config, "responseSchema", "response_schema")

    @property
    def system_instruction(self) -> str:
        si = _get(self.body, "systemInstruction", "system_instruction", default={}) or {}
        return "\n".join(p.get("text", "") for p in si.get("parts", []))


def _get(d: dict, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(d, dict) and name in d:
            return d[name]
    return default


@dataclass
class FakeGemini:
    """The fake's state: the key it accepts, the queued faults and what it received."""

    api_key: str | None = DEFAULT_FAKE_KEY  # None: accept any key (but still require one)
    models: set[str] | None = None  # None: every model id exists
    model_version: str = "fake-gemini-001"
    slow_s: float = 2.0
    error_message: str | None = None  # replaces the message of injected HTTP-error faults
    requests: list[ReceivedRequest] = field(default_factory=list, init=False)
    _faults: deque = field(default_factory=deque, init=False, repr=False)
    _always: Fault | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # -- control -------------------------------------------------------------------------

    def inject(self, fault: Fault | str, times: int | None = 1) -> FakeGemini:
        """Answer the next `times` requests with `fault` (times=None: every request from
        now on, after the queued ones). Queued faults apply in order."""
        fault = Fault(fault)
        with self._lock:
            if times is None:
                self._always = fault
            else:
                self._faults.extend([fault] * times)
        return self

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._always = None
            self.requests.clear()

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            return self._always

    # -- the app -------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/{version}/models/{target}", self._generate, methods=["POST"]),
                Route("/_fake/state", self._state, methods=["GET"]),
                Route("/_fake/faults", self._add_fault, methods=["POST"]),
            ]
        )

    async def _generate(self, request: Request) -> JSONResponse:
        version, target = request.path_params["version"], request.path_params["target"]
        model, _, method = target.partition(":")
        if version not in ("v1", "v1beta") or method != "generateContent":
            return _error(404, "NOT_FOUND", f"Method {target} is not served by this fake.")
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not isinstance(body, dict):
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        received = ReceivedRequest(
            api_version=version,
            model=model,
            api_key=key,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(received)

        if not key:
            return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
        if self.api_key is not None and key != self.api_key:
            return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID")
        if self.models is not None and model not in self.models:
            return _error(404, "NOT_FOUND", f"models/{model} is not found for API version {version}.")
        contents = _get(body, "contents")
        if not isinstance(contents, list) or not contents or not all(isinstance(c, dict) and c.get("parts") for c in contents):
            return _error(400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified")

        fault = self._next_fault()
        if fault in _ERRORS:
            code, status, message = _ERRORS[fault]
            message = self.error_message or message
            return _error(code, status, message, reason="API_KEY_INVALID" if fault is Fault.KEY_INVALID else None)
        if fault is Fault.NOT_FOUND:
            return _error(404, "NOT_FOUND", f"models/{model} is not found for API version {version}.")
        if fault is Fault.SLOW:
            await asyncio.sleep(self.slow_s)

        if fault is Fault.EMPTY:
            return JSONResponse(
                {
                    "candidates": [{"content": {"role": "model"}, "finishReason": "SAFETY", "index": 0}],
                    "usageMetadata": _usage(received, ""),
                    "modelVersion": self.model_version,
                }
            )
        if wants_audio(received.generation_config):  # a speech (TTS) request: fake_gemini_tts answers it
            return JSONResponse(audio_answer(received.prompt_text, self.model_version))
        text = answer_text(received, fault)
        return JSONResponse(
            {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
                ],
                "usageMetadata": _usage(received, text),
                "modelVersion": self.model_version,
            }
        )

    async def _state(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "request_count": self.request_count,
                "queued_faults": [f.value for f in self._faults],
                "always": self._always.value if self._always else None,
                "requests": [{"model": r.model, "api_version": r.api_version, "prompt": r.prompt_text} for r in self.requests],
            }
        )

    async def _add_fault(self, request: Request) -> JSONResponse:
        data = await request.json()
        try:
            self.inject(data["fault"], data.get("times", 1))
        except (KeyError, ValueError):
            return _error(400, "INVALID_ARGUMENT", f"fault must be one of {[f.value for f in Fault]}")
        return JSONResponse({"ok": True})


def _error(code: int, status: str, message: str, reason: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}
        ]
    return JSONResponse({"error": error}, status_code=code)


def _usage(received: ReceivedRequest, answer: str) -> dict[str, int]:
    prompt = max(1, (len(received.prompt_text) + len(received.system_instruction)) // 4) + 258 * len(received.inline_data)
    out = max(1, len(answer) // 4) if answer else 0
    return {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out}


# -- the default answer -------------------------------------------------------------------

_PROMPT_BLOCK = re.compile(r"<<<PROMPT\s*\n(.*?)\n\s*PROMPT>>>", re.DOTALL)
_DURATION = re.compile(r"duration:\s*([0-9]+(?:\.[0-9]+)?)\s*s", re.IGNORECASE)
_BETWEEN = re.compile(r"between\s+(\d+)\s+and\s+(\d+)\s+scenes", re.IGNORECASE)
_EXACTLY = re.compile(r"exactly\s+(\d+)\s+scenes", re.IGNORECASE)


def read_request(received: ReceivedRequest) -> tuple[str, float, int]:
    """(the user's prompt, the duration, the most scenes allowed), read from the text the
    way a model would: the prompt between the planner's markers, else the whole text."""
    text = received.prompt_text
    m = _PROMPT_BLOCK.search(text)
    prompt = (m.group(1) if m else text).strip() or "a short film"
    duration = float(d.group(1)) if (d := _DURATION.search(text)) else 45.0
    if b := _BETWEEN.search(text):
        most = int(b.group(2))
    elif e := _EXACTLY.search(text):
        most = int(e.group(1))
    else:
        most = 8
    return prompt, min(max(duration, 5.0), 600.0), max(1, most)


def default_plan(received: ReceivedRequest) -> dict[str, Any]:
    """The offline planner's storyboard for the request's prompt, in the response shape
    (title, style, characters[], scenes[] with character names)."""
    from ..planning.offline import OfflinePlanner
    from ..spec import MAX_PROMPT_CHARS, RenderSpec

    prompt, duration, most = read_request(received)
    spec = RenderSpec(prompt=prompt[:MAX_PROMPT_CHARS], duration_s=duration)
    board = OfflinePlanner().plan(spec, max_scenes=most)
    cast: dict[str, dict[str, str]] = {}
    for scene in board.scenes:
        for person in scene.characters:
            cast.setdefault(person.name, {"name": person.name, "description": person.description or person.name})
    return {
        "title": board.title,
        "style": board.style,
        "characters": list(cast.values()),
        "scenes": [
            {
                "description": s.description,
                "duration_s": s.duration_s,
                "visual_style": s.visual_style,
                "characters": [p.name for p in s.characters],
                "camera_movement": s.camera_movement.value,
                "lighting": s.lighting.value,
                "color_palette": list(s.color_palette),
                "transition": s.transition.value,
                "narration": s.narration,
            }
            for s in board.scenes
        ],
    }


def _asks_for_rephrase(received: ReceivedRequest) -> bool:
    """The planner's rephrase call: its response schema has a prompt and no scenes."""
    properties = (received.response_schema or {}).get("properties") or {}
    return "prompt" in properties and "scenes" not in properties


def answer_text(received: ReceivedRequest, fault: Fault | None = None) -> str:
    if fault is Fault.MALFORMED:
        return '{"title": "A fox", "scenes": [{"description": "snow'  # cut off mid-string
    if _asks_for_rephrase(received):
        from ..planning.offline import soften_prompt

        m = _PROMPT_BLOCK.search(received.prompt_text)
        original = (m.group(1) if m else received.prompt_text).strip()
        softened = soften_prompt(original)
        return json.dumps({"prompt": softened if softened != original else f"Softly lit: {original}"}, ensure_ascii=False)
    plan = default_plan(received)
    if fault is Fault.TOO_MANY_SCENES:
        base = plan["scenes"]
        plan["scenes"] = [dict(base[i % len(base)]) for i in range(20)]
    elif fault is Fault.BAD_ENUM:
        plan["scenes"][0]["camera_movement"] = "spin_around"
    elif fault is Fault.BAD_COLOUR:
        for scene in plan["scenes"]:
            scene["color_palette"] = ["#zzzzzz", "not a colour"]
    elif fault is Fault.COLOUR_NAMES:
        for scene in plan["scenes"]:
            scene["color_palette"] = ["midnight blue", "DarkSlateGray", "#ABC", "not a colour", "gold", "white",
                                      "black", "red", "teal"]
    elif fault is Fault.EMPTY_SCENE:
        plan["scenes"][-1]["description"] = "  "
    return json.dumps(plan, ensure_ascii=False)


# -- running it ---------------------------------------------------------------------------


class FakeGeminiServer(LocalServer):
    """A LocalServer running a FakeGemini; `start()` is idempotent so `with` works on a
    server that start_fake_gemini() already started."""

    def __init__(self, fake: FakeGemini | None = None, host: str = "127.0.0.1", port: int = 0):
        self.fake = fake or FakeGemini()
        super().__init__(self.fake.app, host=host, port=port)
        self._started = False

    def start(self) -> FakeGeminiServer:
        if not self._started:
            super().start()
            self._started = True
        return self

    @property
    def api_key(self) -> str:
        return self.fake.api_key or DEFAULT_FAKE_KEY

    def env(self) -> dict[str, str]:
        """What makes an unmodified client talk to this fake."""
        return {"GEMINI_API_KEY": self.api_key, "GOOGLE_GEMINI_BASE_URL": self.url}


def start_fake_gemini(fake: FakeGemini | None = None, *, port: int = 0, **settings: Any) -> FakeGeminiServer:
    """Start a fake on 127.0.0.1 (a free port unless given) and return it, running.
    `settings` go to FakeGemini (api_key, models, model_version, slow_s)."""
    if fake is None:
        fake = FakeGemini(**settings)
    elif settings:
        raise TypeError("pass either a FakeGemini or its settings, not both")
    return FakeGeminiServer(fake, port=port).start()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m longvid.testing.fake_gemini", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--api-key", default=DEFAULT_FAKE_KEY, help="the key to accept ('any' accepts every key)")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND[:TIMES]",
                        help=f"queue a fault ({', '.join(f.value for f in Fault)}); TIMES 'always' repeats it")
    parser.add_argument("--slow-s", type=float, default=2.0)
    args = parser.parse_args(argv)

    fake = FakeGemini(api_key=None if args.api_key == "any" else args.api_key, slow_s=args.slow_s)
    for spec in args.fault:
        kind, _, times = spec.partition(":")
        fake.inject(kind, None if times == "always" else int(times or 1))
    print(f"fake Gemini on http://{args.host}:{args.port}")
    print(f"  export GOOGLE_GEMINI_BASE_URL=http://{args.host}:{args.port} GEMINI_API_KEY={args.api_key}")
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
