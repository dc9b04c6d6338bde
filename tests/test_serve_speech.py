"""Speech through the API, in process (create_api over a real store, the offline planner and
Gemini speech on its local fake); no Ray: what the planner pays is booked once in the run's
ledger and never paid again by the renderer, and a server without a Gemini key says so
without naming its variables."""

from provider_doubles import offline_api
from pydantic import SecretStr

from longvid.manifest import RunPlan
from longvid.runtime.layout import PLAN
from longvid.runtime.narration_step import write_narration
from longvid.runtime.store import read_manifest
from longvid.settings import GeminiSettings, Settings
from longvid.testing.fake_gemini import start_fake_gemini

TOKEN = "speech-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NARRATED = {"prompt": "a red fox in the snow", "duration_s": 8, "resolution": "360p", "judge": "off", "speech": "gemini",
            "narration": ["The fox wakes. It runs.", "It sleeps."]}


def _api(tmp_path, longvid: Settings):
    return offline_api(tmp_path, longvid, TOKEN)


def test_speech_paid_while_planning_is_booked_in_the_run_once_and_not_paid_again(tmp_path):
    with start_fake_gemini() as server:
        gemini = Settings(gemini=GeminiSettings(api_key=SecretStr(server.api_key), base_url=server.url))
        client, store = _api(tmp_path, gemini)
        answer = client.post("/v1/renders", json=NARRATED, headers=AUTH)
        assert answer.status_code == 202, answer.text
        paid = server.fake.request_count
        run = store.open(answer.json()["id"])
        manifest = read_manifest(run)
        booked = [e for e in manifest.ledger if e.provider == "gemini-tts"]
        assert len(booked) == paid == 3 and manifest.cost_usd > 0
        # the renderer's speak step finds every clip in the store's cache: nothing paid or booked again
        plan = RunPlan.model_validate_json(run.read_bytes(PLAN))
        after = write_narration(run, manifest, plan.narration, {}, store, gemini)
        assert server.fake.request_count == paid
        assert [e for e in after.ledger if e.provider == "gemini-tts"] == booked
        assert server.api_key not in run.read_bytes("manifest.json").decode()
        assert "speech_costs" not in client.post("/v1/plans", json=NARRATED, headers=AUTH).json()


def test_gemini_speech_on_a_server_without_its_key_is_not_available_here(tmp_path):
    client, _ = _api(tmp_path, Settings())
    answer = client.post("/v1/plans", json=NARRATED, headers=AUTH)
    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert "not available on this server" in message
    for secret_name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "--speech"):  # the operator's business, and no CLI flags
        assert secret_name not in answer.text


def test_a_video_stretched_by_its_narration_reports_its_planned_length(tmp_path):
    from longvid.manifest import RunManifest, stretched_s
    from longvid.review.summary import summarise
    from longvid.sound.espeak import espeak_binary

    if espeak_binary() is None:
        import pytest

        pytest.skip("espeak-ng is not installed")
    client, store = _api(tmp_path, Settings())
    long = {**NARRATED, "speech": "espeak", "duration_s": 5,
            "narration": ["The fox wakes in the snow and runs across the frozen river to the dark pines. " * 3]}
    run_id = client.post("/v1/renders", json=long, headers=AUTH).json()["id"]
    run = store.open(run_id)
    plan = RunPlan.model_validate_json(run.read_bytes(PLAN))
    planned = sum(plan.narration.scene_frames) / plan.narration.fps
    assert planned > 5
    listed = client.get("/v1/renders", headers=AUTH).json()["renders"][0]
    assert listed["duration_s"] == pytest_approx(planned)
    manifest = read_manifest(run)
    assert manifest.duration_s == pytest_approx(planned)
    older = RunManifest(run_id=run_id, spec=manifest.spec, segments=manifest.segments)  # made before stretched_s existed
    assert summarise(older, plan).duration_s == pytest_approx(planned)
    assert "stretched_s" not in older.model_dump_json() and stretched_s(plan.model_copy(update={"narration": None}), manifest.spec) is None


def pytest_approx(value):
    import pytest

    return pytest.approx(value, abs=1e-6)


def test_subtitles_off_reaches_the_render_and_burning_them_is_refused(tmp_path):
    client, store = _api(tmp_path, Settings())
    quiet = {"prompt": "a red fox in the snow", "duration_s": 5, "resolution": "360p", "judge": "off", "narration": "off"}
    answer = client.post("/v1/renders", json={**quiet, "subtitles": False}, headers=AUTH)
    assert answer.status_code == 202, answer.text
    assert read_manifest(store.open(answer.json()["id"])).spec.subtitles is False
    refused = client.post("/v1/renders", json={**quiet, "subtitles": False, "burn_subtitles": True}, headers=AUTH)
    assert refused.status_code == 422 and "burned subtitles need subtitles" in refused.json()["error"]["message"]
