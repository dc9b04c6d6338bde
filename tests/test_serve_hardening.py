"""Issue 15: the HTTP API under hostile or careless clients. Signed links that are not ASCII,
link rate limits per tenant, oversized base64 images, HEAD on the video, control characters in
prompts, provider keys kept out of error texts. In-process (create_api over a real store and
the offline planner); no Ray."""

import base64
import hashlib
import io
import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from media_helpers import solid_frames, write_clip
from PIL import Image
from provider_doubles import RecordingRenderer

from longvid.runtime import LocalRunStore
from serve.api import create_api
from serve.planning import PlanService
from serve.runs import RenderStore
from serve.security import verify_link
from serve.settings import ApiSettings

TOKEN, OTHER = "hard-token-0123456789abcdef", "hard-token-other-9876543210"
AUTH, OTHER_AUTH = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {OTHER}"}
SMALL = {"prompt": "a red fox in the snow", "duration_s": 5, "resolution": "360p", "judge": "off"}


def make_client(tmp_path, **overrides):
    env = {"LONGVID_API_TOKENS": f"{TOKEN},{OTHER}", "LONGVID_STORE": str(tmp_path / "runs"), "LONGVID_PLANNER": "offline"}
    settings = ApiSettings.from_env(env, **overrides)
    client = TestClient(create_api(PlanService("offline"), RecordingRenderer(), settings), base_url="http://127.0.0.1")
    return client, RenderStore(LocalRunStore(settings.store))


def picture(size=(32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 10)).save(out, format="PNG")
    return out.getvalue()


# -- 1. signed links: ASCII only, 401, rate-limited -------------------------------------------------

def test_non_ascii_digits_and_hex_are_not_a_link():
    secret, now, path = b"s" * 32, 1_000_000.0, "/v1/renders/r1/video"
    exp = str(int(now) + 3600)
    for bad_exp, bad_sig in (("\u00b2", "a" * 64), (exp, "\u00e9" * 64), ("\u0661" * 10, "a" * 64),
                             (exp, "\uff41" * 64), (exp + "\n", "a" * 64)):
        assert verify_link(secret, path, bad_exp, bad_sig, now, 3600) is False


def test_malformed_signed_links_answer_401_and_are_rate_limited(tmp_path):
    client, _ = make_client(tmp_path, read_rate_per_minute=4)
    run_id = client.post("/v1/renders", json=SMALL, headers=AUTH).json()["id"]
    queries = ["exp=%C2%B2&sig=" + "a" * 64, "exp=9999999999&sig=" + "%C3%A9" * 64, "exp=1&sig=zz", "exp=%C2%B2&sig=" + "a" * 64]
    for kind in ("video", "events", "report", "contact-sheet"):
        assert client.get(f"/v1/renders/{run_id}/{kind}?{queries[0]}").status_code == 401, kind
    client, _ = make_client(tmp_path / "again", read_rate_per_minute=4)
    answers = [client.get(f"/v1/renders/any-id/video?{q}") for q in queries * 2]
    assert [a.status_code for a in answers[:4]] == [401] * 4
    assert all(a.json()["error"]["code"] == "unauthorized" for a in answers[:4])
    assert answers[4].status_code == 429 and answers[4].json()["error"]["code"] == "rate_limited"
    assert answers[4].headers["retry-after"]


# -- 3. link reads are limited per render owner, not shared by every tenant ---------------------------

def test_one_tenants_link_traffic_does_not_block_anothers(tmp_path):
    client, _ = make_client(tmp_path, read_rate_per_minute=3)
    mine = client.post("/v1/renders", json=SMALL, headers=AUTH).json()["links"]["video"]
    theirs = client.post("/v1/renders", json={**SMALL, "seed": 1}, headers=OTHER_AUTH).json()["links"]["video"]
    assert [client.get(mine).status_code for _ in range(4)] == [409, 409, 409, 429]  # not ready; then limited
    assert client.get(theirs).status_code == 409  # the same client address, another tenant's render: not limited


# -- 4. an oversized base64 image is 413 image_too_large ---------------------------------------------

def test_an_oversized_base64_image_is_413(tmp_path):
    client, store = make_client(tmp_path, max_body_bytes=64 * 1024 * 1024)
    huge = "A" * 7_100_000  # over what 5 MB encode to, and over the model's old length limit
    for path in ("/v1/plans", "/v1/renders"):
        response = client.post(path, json={**SMALL, "reference_images": [{"data_base64": huge}]}, headers=AUTH)
        assert response.status_code == 413 and response.json()["error"]["code"] == "image_too_large", response.text


# -- 5. HEAD on the video, control characters, provider keys --------------------------------------------

def test_head_on_the_video_answers_like_get_without_a_body(tmp_path):
    client, _ = make_client(tmp_path)
    accepted = client.post("/v1/renders", json=SMALL, headers=AUTH).json()
    run_id, link = accepted["id"], accepted["links"]["video"]
    assert client.head(link).status_code == 409  # not written yet, as for GET
    data = write_clip(tmp_path / "runs" / run_id / "final.mp4", solid_frames((200, 90, 30), 24)).read_bytes()
    get, head = client.get(link), client.head(link)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "accept-ranges", "cache-control", "etag", "content-disposition"):
        assert head.headers[name] == get.headers[name], name
    assert int(head.headers["content-length"]) == len(data)
    part = client.head(f"/v1/renders/{run_id}/video", headers={**AUTH, "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == b"" and part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert client.head(f"/v1/renders/{run_id}/video").status_code == 401
    assert "head" not in client.get("/openapi.json").json()["paths"]["/v1/renders/{render_id}/video"]


@pytest.mark.parametrize("prompt", ["a fox\x00 in the snow", "a fox \x1b[31mred\x1b[0m", "a fox\rover", "a fox \x9b2J"])
def test_prompts_with_control_characters_are_refused(tmp_path, prompt):
    client, store = make_client(tmp_path)
    for path in ("/v1/plans", "/v1/renders"):
        response = client.post(path, json={**SMALL, "prompt": prompt}, headers=AUTH)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
        assert "control characters" in response.json()["error"]["message"]
    assert store.records() == []
    fine = client.post("/v1/plans", json={**SMALL, "prompt": "a fox\n\tin the snow"}, headers=AUTH)
    assert fine.status_code == 200, fine.text


def test_a_missing_provider_key_is_not_named_to_api_callers(tmp_path, monkeypatch):
    monkeypatch.delenv("RUNWAYML_API_SECRET", raising=False)
    client, _ = make_client(tmp_path)
    for path in ("/v1/plans", "/v1/renders"):
        response = client.post(path, json={**SMALL, "provider": "runway"}, headers=AUTH)
        assert response.status_code == 422, response.text
        message = response.json()["error"]["message"]
        assert message.startswith("provider 'runway' is not available on this server")
        assert "RUNWAYML" not in message and "API_SECRET" not in message
    unknown = client.post("/v1/plans", json={**SMALL, "provider": "sora"}, headers=AUTH)
    assert unknown.status_code == 422 and "unknown provider" in unknown.json()["error"]["message"]


# -- 2. reference images are kept only for renders that were created -----------------------------------

def coloured(colour, size=(32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def inline(*images: bytes) -> list[dict]:
    return [{"data_base64": base64.b64encode(data).decode()} for data in images]


def stored(tmp_path) -> list[str]:
    folder = tmp_path / "runs" / "state" / "inputs"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def staged(tmp_path) -> list[Path]:
    folder = tmp_path / "runs" / "state" / "pending"
    return sorted(folder.rglob("*")) if folder.is_dir() else []


def test_plans_and_refused_renders_keep_no_images(tmp_path, monkeypatch):
    monkeypatch.delenv("RUNWAYML_API_SECRET", raising=False)
    client, store = make_client(tmp_path)
    red, green = coloured((200, 0, 0)), coloured((0, 200, 0))
    assert client.post("/v1/plans", json={**SMALL, "reference_images": inline(red, green)}, headers=AUTH).status_code == 200
    form = client.post("/v1/plans", data={"spec": json.dumps(SMALL)}, files=[("images", ("r.png", red, "image/png"))], headers=AUTH)
    assert form.status_code == 200
    refused = client.post("/v1/renders", json={**SMALL, "provider": "runway", "reference_images": inline(red)}, headers=AUTH)
    assert refused.status_code == 422
    assert stored(tmp_path) == [] and staged(tmp_path) == []
    accepted = client.post("/v1/renders", json={**SMALL, "reference_images": inline(red)}, headers=AUTH)
    assert accepted.status_code == 202, accepted.text
    assert stored(tmp_path) == [f"{hashlib.sha256(red).hexdigest()}.png"] and staged(tmp_path) == []
    spec = store.load(accepted.json()["id"]).manifest.spec
    assert spec.reference_images == [(tmp_path / "runs" / "state" / "inputs" / stored(tmp_path)[0]).resolve()]


def test_orphaned_images_and_stages_are_swept_after_a_grace_period(tmp_path):
    client, store = make_client(tmp_path)
    kept = client.post("/v1/renders", json={**SMALL, "reference_images": inline(coloured((1, 2, 3)))}, headers=AUTH)
    assert kept.status_code == 202
    inputs = tmp_path / "runs" / "state" / "inputs"
    (used,) = stored(tmp_path)
    old_orphan, new_orphan = inputs / ("a" * 64 + ".png"), inputs / ("b" * 64 + ".png")
    old_orphan.write_bytes(coloured((9, 9, 9)))
    new_orphan.write_bytes(coloured((8, 8, 8)))
    stage = tmp_path / "runs" / "state" / "pending" / "dead-replica"
    stage.mkdir(parents=True)
    (stage / "x.png").write_bytes(b"left behind")
    now = time.time()
    for path in (old_orphan, inputs / used, stage):
        os.utime(path, (now - 7200, now - 7200))
    assert store.sweep_inputs(now, grace_s=3600) == [old_orphan.name]
    assert stored(tmp_path) == sorted([used, new_orphan.name]) and not stage.exists()
    # A replica starting up sweeps too.
    os.utime(new_orphan, (now - 7200, now - 7200))
    make_client(tmp_path)
    deadline = time.monotonic() + 30
    while new_orphan.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored(tmp_path) == [used]


def test_what_one_token_keeps_is_bounded(tmp_path):
    red, green, blue = coloured((200, 0, 0)), coloured((0, 200, 0)), coloured((0, 0, 200))
    client, _ = make_client(tmp_path, input_quota_bytes=len(red) + len(green) + 10, max_concurrent_renders=10)
    assert client.post("/v1/renders", json={**SMALL, "reference_images": inline(red, green)}, headers=AUTH).status_code == 202
    again = client.post("/v1/renders", json={**SMALL, "seed": 1, "reference_images": inline(green, red)}, headers=AUTH)
    assert again.status_code == 202  # images it keeps already cost nothing more
    over = client.post("/v1/renders", json={**SMALL, "seed": 2, "reference_images": inline(blue)}, headers=AUTH)
    assert over.status_code == 413 and over.json()["error"]["code"] == "input_quota_exceeded"
    assert "limit" in over.json()["error"]["message"]
    assert len(stored(tmp_path)) == 2 and staged(tmp_path) == []
    assert client.post("/v1/renders", json={**SMALL, "seed": 3, "reference_images": inline(blue)}, headers=OTHER_AUTH).status_code == 202
    assert client.post("/v1/plans", json={**SMALL, "reference_images": inline(blue)}, headers=AUTH).status_code == 200


def test_orphans_are_swept_from_an_s3_store_too(s3_server, tmp_path):
    from longvid.runtime import open_store

    settings = ApiSettings.from_env({"LONGVID_API_TOKENS": TOKEN, "LONGVID_STORE": "s3://renders/sweep-test"})
    client = TestClient(create_api(PlanService("offline"), RecordingRenderer(), settings))
    used = coloured((4, 5, 6))
    assert client.post("/v1/plans", json={**SMALL, "reference_images": inline(coloured((7, 7, 7)))}, headers=AUTH).status_code == 200
    assert client.post("/v1/renders", json={**SMALL, "reference_images": inline(used)}, headers=AUTH).status_code == 202
    store = RenderStore(open_store("s3://renders/sweep-test"))
    orphan = "c" * 64 + ".png"
    store.store.put_state(f"inputs/{orphan}", coloured((1, 1, 1)))
    assert sorted(name for name, _ in store.inputs.written()) == sorted([f"{hashlib.sha256(used).hexdigest()}.png", orphan])
    assert store.sweep_inputs(time.time(), grace_s=3600) == []  # all too young
    assert store.sweep_inputs(time.time() + 7200, grace_s=3600) == [orphan]
    assert [name for name, _ in store.inputs.written()] == [f"{hashlib.sha256(used).hexdigest()}.png"]


def test_a_planner_without_its_key_is_the_servers_fault_not_the_callers(tmp_path):
    settings = ApiSettings.from_env({"LONGVID_API_TOKENS": TOKEN, "LONGVID_STORE": str(tmp_path / "runs")})
    client = TestClient(create_api(PlanService("gemini"), RecordingRenderer(), settings), base_url="http://127.0.0.1")
    answer = client.post("/v1/plans", json=SMALL, headers=AUTH)
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "planner_failed"
    assert "API_KEY" not in error["message"] and "GOOGLE" not in error["message"]
    render = client.post("/v1/renders", json=SMALL, headers=AUTH)
    assert render.status_code == 503 and render.json()["error"]["code"] == "planner_failed"
