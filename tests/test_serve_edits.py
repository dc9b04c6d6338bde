"""Editing over HTTP, without Serve or Ray: create_api over a real store, a render made by the
pipeline on the inline runner, and the real render worker (inline runner) as the renderer."""

import json
import time

from fastapi.testclient import TestClient

from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.spec import RenderSpec
from serve.api import create_api
from serve.planning import PlanService
from serve.security import token_fingerprint
from serve.settings import ApiSettings
from serve.worker import RenderWorker

TOKEN, OTHER = "unit-token-0123456789abcdef", "unit-token-other-9876543210"
AUTH, OTHER_AUTH = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {OTHER}"}


def _wait(predicate, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _rendered_harbour(tmp_path, tokens: str):
    """A finished 5 s render `harbour` owned by TOKEN, and the API over its store with the
    real render worker on the inline runner (no Ray)."""
    store = LocalRunStore(tmp_path / "runs")
    spec = RenderSpec(prompt="a harbour at dawn", duration_s=5, fps=12, resolution="360p", narration="off", judge="off")
    RenderPipeline(store, InlineSegmentRunner()).render(spec, run_id="harbour")
    (tmp_path / "runs/harbour/request.json").write_text(json.dumps({"owner": token_fingerprint(TOKEN), "request_sha256": "-",
                                                                    "created_at": time.time()}))
    worker = RenderWorker(store, InlineSegmentRunner, judge_factory=lambda spec: None, poll_s=0.05)
    settings = ApiSettings.from_env({"LONGVID_API_TOKENS": tokens, "LONGVID_STORE": str(tmp_path / "runs")})
    return store, worker, TestClient(create_api(PlanService("offline"), worker, settings), base_url="http://127.0.0.1")


def test_edit_a_render_over_http_then_play_and_list_both_versions(tmp_path):
    store, worker, client = _rendered_harbour(tmp_path, f"{TOKEN},{OTHER}")
    first = client.get("/v1/renders/harbour/versions", headers=AUTH).json()
    assert [v["version"] for v in first["versions"]] == [1] and first["pending"] is None

    # Bad input is refused before anything is written; another token's render does not exist.
    assert client.post("/v1/renders/harbour/edits", json={"edits": [{"kind": "scene", "scene": 7, "text": "x"}]},
                       headers=AUTH).json()["error"]["message"].startswith("scene 7 does not exist")
    replace = {"edits": [{"kind": "replace", "segment": 0, "clip": "/etc/hostname"}]}
    assert client.post("/v1/renders/harbour/edits", json=replace, headers=AUTH).status_code == 422
    assert client.post("/v1/renders/harbour/edits", json={"edits": [{"kind": "regenerate", "segment": 1}]},
                       headers=OTHER_AUTH).status_code == 404
    estimate = client.post("/v1/renders/harbour/edits?estimate_only=true", json={"edits": [{"kind": "regenerate", "segment": 1}]},
                           headers=AUTH)
    assert estimate.status_code == 200 and estimate.json()["regenerate"] == [1]
    assert not (tmp_path / "runs/harbour/history.json").exists()

    edit = {"edits": [{"kind": "regenerate", "segment": 1, "seed": 5}]}
    answer = client.post("/v1/renders/harbour/edits", json=edit, headers={**AUTH, "Idempotency-Key": "e1"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["version"] == 2 and answer.json()["status"] == "queued"
    assert _wait(lambda: client.get("/v1/renders/harbour", headers=AUTH).json()["status"] == "done"
                 and client.get("/v1/renders/harbour/versions", headers=AUTH).json()["pending"] is None)
    again = client.post("/v1/renders/harbour/edits", json=edit, headers={**AUTH, "Idempotency-Key": "e1"})
    assert again.status_code == 200 and again.json()["version"] == 2  # the same key: the same version, nothing new

    versions = client.get("/v1/renders/harbour/versions", headers=AUTH).json()
    assert [v["version"] for v in versions["versions"]] == [1, 2]
    assert versions["versions"][1]["regenerated"] == [1] and versions["versions"][1]["edits"][0]["seed"] == 5
    videos = []
    for v in versions["versions"]:
        video = client.get(v["links"]["video"])  # a signed link: no header, as a <video> element asks
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        videos.append(video.content)
        report = client.get(v["links"]["report"]).json()
        assert report["run_id"] == "harbour" and str(tmp_path) not in json.dumps(report)
    assert videos[0] != videos[1] and videos[0] == (tmp_path / "runs/harbour/versions/v1/final.mp4").read_bytes()
    v2_video = versions["versions"][1]["links"]["video"]
    assert client.get(v2_video.replace("/versions/2/", "/versions/1/")).status_code == 401  # a link opens its own path only
    assert client.get("/v1/renders/harbour/versions/9/video", headers=AUTH).status_code == 404
    assert client.get("/v1/renders/harbour/versions", headers=OTHER_AUTH).status_code == 404
    assert versions["versions"][0]["changed_span_s"] is None
    span = versions["versions"][1]["changed_span_s"]
    segment = versions["segments"][1]
    assert span == [segment["start_s"], segment["start_s"] + segment["duration_s"]]
    thumbnail = client.get(segment["thumbnail"])  # signed, as an <img> asks
    assert thumbnail.status_code == 200 and thumbnail.content.startswith(b"\x89PNG")
    assert client.get(segment["thumbnail"].replace("/segments/1/", "/segments/0/")).status_code == 401

    # A replacement clip goes inline as base64, is checked by decoding, and its server path never shows.
    import base64

    garbage = {"edits": [{"kind": "lock", "segments": [3]}], "clips": {"0": base64.b64encode(b"not a video").decode()}}
    refused = client.post("/v1/renders/harbour/edits", json=garbage, headers=AUTH)
    assert refused.status_code == 422 and "clips.0 is not a video" in refused.json()["error"]["message"]
    assert "/tmp" not in refused.text and "longvid-clips" not in refused.text
    clip = base64.b64encode((tmp_path / "runs/harbour/segments/seg_0003.mp4").read_bytes()).decode()
    replaced = client.post("/v1/renders/harbour/edits", json={"edits": [{"kind": "lock", "segments": [1]}], "clips": {"0": clip}},
                           headers=AUTH)
    assert replaced.status_code == 202, replaced.text
    assert replaced.json()["replace"] == [0] and replaced.json()["version"] == 3
    assert _wait(lambda: len(client.get("/v1/renders/harbour/versions", headers=AUTH).json()["versions"]) == 3)
    latest = client.get("/v1/renders/harbour/versions", headers=AUTH).json()
    assert latest["versions"][2]["replaced"] == [0] and latest["locked"] == [1]
    assert all("clip" not in e for e in latest["versions"][2]["edits"]) and "longvid-clips" not in json.dumps(latest)
    # While another request holds the run's lease, a lock click is a conflict to retry (409), not a 500.
    from longvid.runtime.runlock import RunLock

    _wait(lambda: client.get("/v1/renders/harbour/versions", headers=AUTH).json()["pending"] is None)
    with RunLock(store.open("harbour"), 60):
        busy = client.post("/v1/renders/harbour/edits", json={"edits": [{"kind": "lock", "segments": [2]}]}, headers=AUTH)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "edit_conflict", busy.text
    worker.stop_all()


def test_an_edit_whose_driver_died_is_resumed_over_http(tmp_path):
    """The API died in begin_edit after edit.json (the retried request starts it again), or the
    worker died after the video was done but before the version was filed (POST /resume
    finishes it): neither leaves the run stuck at 409/422."""
    import hashlib

    from longvid.editing import parse_edit_request
    from longvid.manifest import RunStatus
    from longvid.runtime.edit_run import _write_prepared, apply_prepared, prepare_edit
    from longvid.runtime.store import read_manifest, write_model
    from longvid.runtime.versions import ensure_first_version, read_history

    store, worker, client = _rendered_harbour(tmp_path, TOKEN)
    run, planner = store.open("harbour"), RenderPipeline(store, None)

    def versions():
        return client.get("/v1/renders/harbour/versions", headers=AUTH).json()

    # The API replica died after writing edit.json: the same request (same key) starts it again.
    edit = {"edits": [{"kind": "regenerate", "segment": 1, "seed": 5}]}
    key = "api:" + hashlib.sha256(f"{token_fingerprint(TOKEN)}\ne1".encode()).hexdigest()[:40]
    ensure_first_version(run, read_manifest(run))
    _write_prepared(run, prepare_edit(planner, "harbour", parse_edit_request(edit), key))
    assert versions()["pending"] is not None
    again = client.post("/v1/renders/harbour/edits", json=edit, headers={**AUTH, "Idempotency-Key": "e1"})
    assert again.status_code == 200 and again.json()["version"] == 2 and again.json()["status"] == "queued"
    assert _wait(lambda: versions()["pending"] is None and client.get("/v1/renders/harbour", headers=AUTH).json()["status"] == "done")
    assert [v.version for v in read_history(run).versions] == [1, 2]

    # The worker died after the video was done, before filing v3: POST /resume files it.
    pending = _write_prepared(run, prepare_edit(planner, "harbour", parse_edit_request({"edits": [{"kind": "regenerate", "segment": 0}]})))
    apply_prepared(run, pending)
    write_model(run, "manifest.json", read_manifest(run).model_copy(update={"status": RunStatus.DONE}))
    resumed = client.post("/v1/renders/harbour/resume", headers=AUTH)
    assert resumed.status_code == 202, resumed.text
    assert _wait(lambda: versions()["pending"] is None and client.get("/v1/renders/harbour", headers=AUTH).json()["status"] == "done")
    assert [v.version for v in read_history(run).versions] == [1, 2, 3]
    assert client.post("/v1/renders/harbour/resume", headers=AUTH).json()["error"]["code"] == "already_done"
    worker.stop_all()
