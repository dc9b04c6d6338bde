"""The Serve app over real HTTP: `serve.run` on the session's Ray, on 127.0.0.1, with httpx.

One Serve application for the module (starting it costs seconds). Each concern uses its
own token, so per-token limits of one test do not leak into another. Renders are tiny:
5 s at 360p on the preview renderer; the ones to cancel are long at 720p and stopped early.
"""

import base64
import io
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.ray

TOKENS = {name: f"http-test-{name}-{i:02d}-6f1c0d2e9a7b4c3d" for i, name in
          enumerate(["life", "limits", "rate", "idem", "idem2", "busy", "ids", "ssrf"])}
RATE_LIMIT = 20  # POST/DELETE per token and minute
TINY = {"prompt": "a red fox explores a snowy forest at dawn", "duration_s": 5, "resolution": "360p", "judge": "off"}
LONG = {"prompt": "a lighthouse on a cliff through a long stormy night", "duration_s": 120, "resolution": "720p",
        "continuity": "chain", "judge": "off"}


def auth(name: str) -> dict:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    port: int
    store: Path
    client: httpx.Client


@pytest.fixture(scope="module")
def server(ray_session, tmp_path_factory):
    from ray import serve

    from serve.app import build_app

    store = tmp_path_factory.mktemp("serve-http") / "runs"
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 120})
    env = {
        "LONGVID_API_TOKENS": ",".join(TOKENS.values()),
        "LONGVID_RATE_LIMIT_PER_MIN": str(RATE_LIMIT),
        "LONGVID_MAX_CONCURRENT_RENDERS": "2",
        "LONGVID_PLANNER": "offline",
    }
    serve.run(build_app({"store": str(store)}, runtime_env={"env_vars": env}, num_cpus=0), name="longvid", route_prefix="/")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        yield Server(f"http://127.0.0.1:{port}", port, store, client)
    finally:
        client.close()
        serve.delete("longvid")
        serve.shutdown()


def events(client: httpx.Client, url: str, timeout_s: float = 120.0):
    """(event, data) pairs of a server-sent event stream, until it closes."""
    deadline = time.monotonic() + timeout_s
    with client.stream("GET", url, timeout=timeout_s) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        event, data = None, []
        for line in response.iter_lines():
            assert time.monotonic() < deadline, "the event stream did not end in time"
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and event:
                yield event, json.loads("\n".join(data))
                event, data = None, []


def wait_status(server: Server, run_id: str, token: str, wanted: set[str], timeout_s: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = server.client.get(f"/v1/renders/{run_id}", headers=auth(token)).json()
        if body["status"] in wanted:
            return body
        time.sleep(0.2)
    raise AssertionError(f"render {run_id} never reached {wanted}; last: {body['status']} {body['error']}")


def png_base64(size=(64, 36)) -> str:
    out = io.BytesIO()
    Image.new("RGB", size, (220, 120, 40)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]["code"]


# -- open routes and auth ---------------------------------------------------------------------------

def test_open_routes_need_no_token_and_the_rest_do(server):
    c = server.client
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/openapi.json").json()["info"]["title"] == "longvid"
    assert c.get("/docs").status_code == 200
    from serve.api import STUDIO_DIR

    root = c.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == ("/studio/" if STUDIO_DIR.is_dir() else "/docs")
    assert c.get(root.headers["location"]).status_code == 200
    for method, path in (("GET", "/v1/renders"), ("POST", "/v1/plans"), ("POST", "/v1/renders"), ("GET", "/v1/renders/x"),
                         ("DELETE", "/v1/renders/x"), ("GET", "/v1/renders/x/video"), ("GET", "/v1/renders/x/events")):
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKENS['life']}"}):
            response = c.request(method, path, headers=headers, json=TINY if method == "POST" else None)
            assert response.status_code == 401 and error_code(response) == "unauthorized", (method, path, headers)
            assert TOKENS["life"] not in response.text


# -- the lifecycle ------------------------------------------------------------------------------------

def test_render_lifecycle_plan_edit_render_events_status_video(server):
    c = server.client
    plan = c.post("/v1/plans", json={**TINY, "judge": "structural"}, headers=auth("life"))
    assert plan.status_code == 200, plan.text
    storyboard = plan.json()["storyboard"]
    storyboard["scenes"][0]["description"] = "edited: the fox wakes under a pine"
    submitted = c.post("/v1/renders", json={**TINY, "judge": "structural", "storyboard": storyboard}, headers=auth("life"))
    assert submitted.status_code == 202, submitted.text
    accepted = submitted.json()
    run_id, links = accepted["id"], accepted["links"]
    assert accepted["status"] in ("queued", "rendering") and links["self"] == f"/v1/renders/{run_id}"

    # The event stream, on its signed link (as an EventSource would open it: no headers).
    seen = list(events(c, links["events"]))
    kinds = [kind for kind, _ in seen]
    assert kinds[-1] == "end" and set(kinds[:-1]) == {"status"}, kinds
    statuses = [data["status"] for kind, data in seen if kind == "status"]
    assert statuses[-1] == "done" and seen[-1][1] == {"status": "done"}
    order = ["queued", "rendering", "merging", "done"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)  # never backwards
    percents = [data["progress"]["percent"] for kind, data in seen if kind == "status"]
    assert percents == sorted(percents) and percents[-1] == 100.0

    status = c.get(links["self"], headers=auth("life")).json()
    assert status["status"] == "done" and status["error"] is None
    assert status["progress"]["done"] == status["progress"]["total"] == len(status["segments"]) >= 1
    assert all(s["state"] == "accepted" and s["scores"] for s in status["segments"])  # judged (structural)
    plan_file = json.loads((server.store / run_id / "plan.json").read_text())
    assert plan_file["storyboard"]["scenes"][0]["description"] == "edited: the fox wakes under a pine"

    final = (server.store / run_id / "final.mp4").read_bytes()
    whole = c.get(links["video"])
    assert whole.status_code == 200 and whole.content == final
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    part = c.get(links["video"], headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == final[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(final)}"
    beyond = c.get(f"/v1/renders/{run_id}/video", headers={**auth("life"), "Range": f"bytes={len(final) + 10}-"})
    assert beyond.status_code == 416 and error_code(beyond) == "range_not_satisfiable"
    tampered = links["video"][:-1] + ("0" if links["video"][-1] != "0" else "1")
    assert c.get(tampered).status_code == 401

    listed = c.get("/v1/renders", headers=auth("life")).json()["renders"]
    assert any(r["id"] == run_id and r["status"] == "done" and r["progress"]["percent"] == 100.0 for r in listed)
    assert c.delete(f"/v1/renders/{run_id}", headers=auth("life")).status_code == 409
    assert error_code(c.post(f"/v1/renders/{run_id}/resume", headers=auth("life"))) == "already_done"

    # The pipeline writes the report and contact sheet before the run says done.
    from longvid.runtime import LocalRunStore

    run = LocalRunStore(server.store).open(run_id)
    report = c.get(links["report"])
    assert report.status_code == 200 and f'src="/v1/renders/{run_id}/video?exp=' in report.text
    sheet = c.get(links["contact_sheet"])
    assert sheet.status_code == 200 and sheet.content == run.read_bytes("contact_sheet.png")

    # Another ingress over the same store (another replica, or this one restarted) sees the same render.
    from fastapi.testclient import TestClient

    from serve.api import create_api
    from serve.planning import PlanService
    from serve.settings import ApiSettings

    settings = ApiSettings.from_env({"LONGVID_API_TOKENS": ",".join(TOKENS.values()), "LONGVID_STORE": str(server.store)})
    other = TestClient(create_api(PlanService("offline"), object(), settings)).get(links["self"], headers=auth("life")).json()
    assert {k: v for k, v in other.items() if k != "links"} == {k: v for k, v in status.items() if k != "links"}


def test_cancel_another_render_then_resume_and_cancel_again(server):
    c = server.client
    first = c.post("/v1/renders", json=LONG, headers=auth("busy"))
    second = c.post("/v1/renders", json={**LONG, "seed": 1}, headers=auth("busy"))
    assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
    third = c.post("/v1/renders", json={**LONG, "seed": 2}, headers=auth("busy"))
    assert third.status_code == 429 and error_code(third) == "too_many_renders"
    run_ids = [first.json()["id"], second.json()["id"]]
    for run_id in run_ids:
        wait_status(server, run_id, "busy", {"rendering"})
        cancelling = c.delete(f"/v1/renders/{run_id}", headers=auth("busy"))
        assert cancelling.status_code == 202 and cancelling.json() == {"id": run_id, "status": "cancelling"}
    for run_id in run_ids:
        stopped = wait_status(server, run_id, "busy", {"cancelled", "done", "failed"})
        assert stopped["status"] == "cancelled", stopped["error"]
        assert stopped["progress"]["done"] < stopped["progress"]["total"]  # stopped part-way
    assert error_code(c.delete(f"/v1/renders/{run_ids[0]}", headers=auth("busy"))) == "already_finished"

    resumed = c.post(f"/v1/renders/{run_ids[0]}/resume", headers=auth("busy"))
    assert resumed.status_code == 202 and resumed.json()["id"] == run_ids[0]
    wait_status(server, run_ids[0], "busy", {"rendering"})
    assert c.delete(f"/v1/renders/{run_ids[0]}", headers=auth("busy")).status_code == 202
    assert wait_status(server, run_ids[0], "busy", {"cancelled", "done", "failed"})["status"] == "cancelled"


# -- limits, SSRF, ids, idempotency -----------------------------------------------------------------

def test_each_input_limit_is_refused_with_its_reason(server):
    c, h = server.client, auth("limits")
    big = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024)).decode()
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    cases = [
        ({**TINY, "prompt": "x" * 2001}, 422, "invalid_request", "prompt"),
        ({**TINY, "prompt": "   "}, 422, "invalid_request", "prompt is empty"),
        ({**TINY, "duration_s": 4}, 422, "invalid_request", "between 5 and 120"),
        ({**TINY, "duration_s": 121}, 422, "invalid_request", "between 5 and 120"),
        ({**TINY, "resolution": "1080p"}, 422, "invalid_request", "resolution"),
        ({**TINY, "reference_images": [{"data_base64": png_base64()}] * 5}, 422, "invalid_request", "reference_images"),
        ({**TINY, "reference_images": [{"data_base64": big}]}, 413, "image_too_large", "5 MB"),
        ({**TINY, "reference_images": [{"data_base64": base64.b64encode(b"just text").decode()}]}, 415, "unsupported_image", "PNG"),
        ({**TINY, "reference_images": [{"data_base64": base64.b64encode(gif.getvalue()).decode()}]}, 415, "unsupported_image", "PNG"),
        ({**TINY, "reference_images": [{"data_base64": "%%%"}]}, 422, "invalid_base64", "base64"),
        ({**TINY, "reference_images": [{}]}, 422, "invalid_request", "data_base64"),
        ({**TINY, "webhook": "https://example.com"}, 422, "invalid_request", "webhook"),
    ]
    for body, status, code, hint in cases:
        response = c.post("/v1/plans", json=body, headers=h)
        assert (response.status_code, error_code(response)) == (status, code), (body.keys(), response.text[:300])
        assert hint in response.json()["error"]["message"]
    ok = c.post("/v1/plans", json={**TINY, "reference_images": [{"data_base64": png_base64()}] * 4}, headers=h)
    assert ok.status_code == 200, ok.text
    oversized = c.post("/v1/plans", content=b"{" + b" " * (33 * 1024 * 1024) + b"}", headers={**h, "Content-Type": "application/json"})
    assert oversized.status_code == 413 and error_code(oversized) == "payload_too_large"
    form = c.post("/v1/plans", content=b"prompt=fox", headers={**h, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and error_code(form) == "unsupported_media_type"


def test_rate_limit_per_token(server):
    c = server.client
    codes = [c.post("/v1/plans", json={"prompt": ""}, headers=auth("rate")).status_code for _ in range(RATE_LIMIT + 1)]
    assert codes[:RATE_LIMIT] == [422] * RATE_LIMIT and codes[-1] == 429
    limited = c.post("/v1/plans", json=TINY, headers=auth("rate"))
    assert error_code(limited) == "rate_limited" and int(limited.headers["retry-after"]) >= 1
    assert c.post("/v1/plans", json=TINY, headers=auth("ids")).status_code == 200  # other tokens are not limited


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/fox.png",
    "https://10.0.0.1/fox.png",
    "https://169.254.169.254/latest/meta-data/",
    "https://localhost/fox.png",
    "https://[::1]/fox.png",
    "https://[::ffff:127.0.0.1]/fox.png",
    "https://user:secret@example.com/fox.png",
])
def test_reference_urls_to_internal_hosts_are_refused(server, url):
    response = server.client.post("/v1/plans", json={**TINY, "reference_images": [{"url": url}]}, headers=auth("ssrf"))
    assert response.status_code == 400 and error_code(response) == "url_not_allowed", response.text
    assert "secret" not in response.text


def test_path_traversal_ids_are_refused(server):
    c, h = server.client, auth("ids")
    for path in ("/v1/renders/%2e%2e", "/v1/renders/%2E%2E/video", "/v1/renders/a%2Fb", "/v1/renders/..%2F..%2Fetc",
                 f"/v1/renders/{'x' * 81}", "/v1/renders/%2e", "/v1/renders/a%00b/events"):
        for method in ("GET", "DELETE"):
            response = c.request(method, path, headers=h)
            assert response.status_code == 400 and error_code(response) == "invalid_id", (method, path, response.text)
    assert error_code(c.post("/v1/renders/%2e%2e/resume", headers=h)) == "invalid_id"
    # A raw '..' segment, as a client that does not normalise paths sends it.
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(f"GET /v1/renders/.. HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKENS['ids']}\r\n"
                    "Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400" and json.loads(body)["error"]["code"] == "invalid_id"
    assert sorted(p.name for p in server.store.parent.iterdir()) == ["runs"]  # nothing written beside the store


def test_idempotent_resubmission(server):
    c = server.client
    key = {"Idempotency-Key": "nightly-fox-2025-01-01"}
    first = c.post("/v1/renders", json=TINY, headers={**auth("idem"), **key})
    again = c.post("/v1/renders", json=TINY, headers={**auth("idem"), **key})
    assert (first.status_code, again.status_code) == (202, 200), (first.text, again.text)
    assert again.json()["id"] == first.json()["id"] and again.json()["links"]["self"] == first.json()["links"]["self"]
    conflict = c.post("/v1/renders", json={**TINY, "seed": 3}, headers={**auth("idem"), **key})
    assert conflict.status_code == 409 and error_code(conflict) == "idempotency_conflict"
    other = c.post("/v1/renders", json=TINY, headers={**auth("idem2"), **key})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    for run_id, token in ((first.json()["id"], "idem"), (other.json()["id"], "idem2")):
        assert wait_status(server, run_id, token, {"done", "failed", "cancelled"})["status"] == "done"
    assert len([p for p in server.store.iterdir() if p.name.startswith("k-")]) == 2
