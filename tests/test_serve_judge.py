"""The API's judge and best-of-N fields, in process (create_api over a real store and the
offline planner; no Ray): `judge: gemini` needs the server's Gemini key and says so without
naming its variables; `candidates` is bounded and counted in the estimate and the budget."""

import pytest
from provider_doubles import offline_api
from pydantic import SecretStr

from longvid.runtime.store import read_manifest
from longvid.settings import GeminiSettings, RunwaySettings, Settings
from serve.models import RenderSubmission

TOKEN = "judge-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL = {"prompt": "a red fox in the snow", "duration_s": 20, "resolution": "360p", "narration": "off"}


def _api(tmp_path, longvid: Settings):
    return offline_api(tmp_path, longvid, TOKEN)


def test_gemini_judge_on_a_server_without_its_key_is_refused_before_anything_starts(tmp_path):
    client, store = _api(tmp_path, Settings())
    for path in ("/v1/plans", "/v1/renders"):
        answer = client.post(path, json={**SMALL, "judge": "gemini"}, headers=AUTH)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["message"].startswith("judge 'gemini' is not available on this server")
        for secret_name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "--judge"):
            assert secret_name not in answer.text
    assert store.list_runs() == []


def test_gemini_judge_with_a_key_is_kept_in_the_render_spec(tmp_path):
    client, store = _api(tmp_path, Settings(gemini=GeminiSettings(api_key=SecretStr("test-key-not-real"))))
    answer = client.post("/v1/renders", json={**SMALL, "judge": "gemini"}, headers=AUTH)
    assert answer.status_code == 202, answer.text
    spec = read_manifest(store.open(answer.json()["id"])).spec
    assert spec.judge == "gemini"
    assert "test-key-not-real" not in store.open(answer.json()["id"]).read_bytes("manifest.json").decode()


@pytest.mark.parametrize("count", [0, 5, 8])
def test_candidates_out_of_bounds_are_refused(tmp_path, count):
    client, _ = _api(tmp_path, Settings())
    answer = client.post("/v1/plans", json={**SMALL, "candidates": count}, headers=AUTH)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_request"
    assert "candidates" in answer.json()["error"]["message"]
    bad_scope = client.post("/v1/plans", json={**SMALL, "candidates_for": "some"}, headers=AUTH)
    assert bad_scope.status_code == 422


def test_the_estimate_counts_every_candidate_and_a_budget_lowers_n(tmp_path):
    client, store = _api(tmp_path, Settings(runway=RunwaySettings(api_secret=SecretStr("runway-not-real"))))
    priced = {**SMALL, "provider": "runway"}
    one = client.post("/v1/plans", json=priced, headers=AUTH).json()
    assert one["estimated_cost_usd"] > 0
    three_all = client.post("/v1/plans", json={**priced, "candidates": 3, "candidates_for": "all"}, headers=AUTH).json()
    assert three_all["estimated_cost_usd"] == pytest.approx(3 * one["estimated_cost_usd"], rel=1e-3)
    openers = client.post("/v1/plans", json={**priced, "candidates": 3}, headers=AUTH).json()
    opener_usd = sum(s["generate_duration_s"] for s in openers["segments"] if s["segment_in_scene"] == 0) \
        * one["estimated_cost_usd"] / sum(s["generate_duration_s"] for s in one["segments"])
    assert openers["estimated_cost_usd"] == pytest.approx(one["estimated_cost_usd"] + 2 * opener_usd, rel=1e-3)
    # A budget that fits the video and one extra candidate of everything: N lowered to 2, said.
    budget = one["estimated_cost_usd"] * 2.5
    lowered = client.post("/v1/plans", json={**priced, "candidates": 4, "candidates_for": "all", "budget_usd": budget},
                          headers=AUTH).json()
    assert lowered["estimated_cost_usd"] == pytest.approx(2 * one["estimated_cost_usd"], rel=1e-3)
    assert any("making 2 candidates" in w for w in lowered["warnings"])
    # Worded for the API too, not only in the CLI's flag.
    assert any('the request\'s "candidates"' in w and w.startswith("4 candidates per segment") for w in lowered["warnings"])
    # The render keeps the request's N (the render lowers it the same way when it starts).
    answer = client.post("/v1/renders", json={**priced, "candidates": 3, "candidates_for": "all"}, headers=AUTH)
    assert answer.status_code == 202, answer.text
    spec = read_manifest(store.open(answer.json()["id"])).spec
    assert (spec.candidates, spec.candidates_for) == (3, "all")


def test_defaults_leave_the_request_hash_as_it_was():
    """An Idempotency-Key is bound to the request's JSON: default candidates are left out of it."""
    body = RenderSubmission(prompt="a red fox")
    assert "candidates" not in body.model_dump_json()
    assert "candidates" in RenderSubmission(prompt="a red fox", candidates=2).model_dump_json()
