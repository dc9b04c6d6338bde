"""longvid.settings: the environment read once, into a frozen value that never shows a secret."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from longvid.errors import InputError
from longvid.providers import provider_capabilities, provider_configured
from longvid.runtime.gates import GateConfig, gate_identity
from longvid.settings import RunwaySettings, Settings

REPO = Path(__file__).resolve().parent.parent
RUNWAY_KEY = "key_runway_never_print_0123456789abcdef"
GOOGLE_KEY = "AIza-google-never-print-0123456789"
GEMINI_KEY = "AIza-gemini-never-print-9876543210"

FULL = {
    "RUNWAYML_API_SECRET": RUNWAY_KEY,
    "RUNWAYML_BASE_URL": "http://127.0.0.1:9001/",
    "LONGVID_RUNWAY_MODEL": "gen4_turbo",
    "LONGVID_RUNWAY_PRICES": '{"gen4_turbo": 6}',
    "GOOGLE_API_KEY": GOOGLE_KEY,
    "GEMINI_API_KEY": GEMINI_KEY,
    "GOOGLE_CLOUD_PROJECT": "film-studio",
    "GOOGLE_CLOUD_LOCATION": "europe-west4",
    "GOOGLE_VERTEX_BASE_URL": "http://127.0.0.1:9002",
    "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9003",
    "LONGVID_VEO_MODEL": "veo-3.1-generate-preview",
    "LONGVID_VEO_PRICES": '{"veo-3.1-generate-preview": 0.5}',
    "LONGVID_GEMINI_MODEL": "models/gemini-flash-latest",
    "LONGVID_POLL_INTERVAL_S": "0.5",
    "LONGVID_TASK_TIMEOUT_S": "60",
    "LONGVID_MAX_CONCURRENT_RUNWAY": "2",
    "LONGVID_MAX_CONCURRENT_VEO": "0",
    "LONGVID_BREAKER_OPEN_S": "5",
    "LONGVID_STORE": "s3://renders/runs",
    "LONGVID_S3_PART_MB": "16",
    "LONGVID_RUN_LOCK_TTL_S": "30",
    "LONGVID_CLIP_MODEL": "ViT-L-14",
    "LONGVID_CLIP_CHECKPOINT": "/models/clip.safetensors",
    "RAY_ADDRESS": "ray://head:10001",
    "LONGVID_DEBUG": "1",
    "LONGVID_AUTOSCALING": "1",
}


def test_from_env_parses_every_group():
    s = Settings.from_env(FULL)
    assert s.runway.api_secret.get_secret_value() == RUNWAY_KEY
    assert (s.runway.base_url, s.runway.model, s.runway.prices, s.runway.poll_interval_s) == (
        "http://127.0.0.1:9001", "gen4_turbo", {"gen4_turbo": 6.0}, 0.5)
    assert s.veo.api_key.get_secret_value() == GOOGLE_KEY  # GOOGLE_API_KEY before GEMINI_API_KEY
    assert (s.veo.project, s.veo.location, s.veo.base_url, s.veo.model, s.veo.prices, s.veo.poll_interval_s) == (
        "film-studio", "europe-west4", "http://127.0.0.1:9002", "veo-3.1-generate-preview",
        {"veo-3.1-generate-preview": 0.5}, 0.5)
    assert s.gemini.api_key.get_secret_value() == GOOGLE_KEY and s.gemini.key_source == "GOOGLE_API_KEY"
    assert (s.gemini.base_url, s.gemini.model) == ("http://127.0.0.1:9003", "gemini-flash-latest")
    assert s.polling.task_timeout_s == 60
    assert (s.gates.max_concurrent, s.gates.breaker_open_s) == ({"runway": 2, "veo": 0}, 5)
    assert (s.store.location, s.store.s3_part_mb, s.store.run_lock_ttl_s) == ("s3://renders/runs", 16, 30)
    assert (s.clip.model, s.clip.checkpoint) == ("ViT-L-14", Path("/models/clip.safetensors"))
    assert (s.ray_address, s.debug) == ("ray://head:10001", True)
    assert s.autoscaling is True


def test_an_empty_environment_gives_the_documented_defaults():
    s = Settings.from_env({})
    assert s == Settings()
    assert s.runway.api_secret is None and s.veo.api_key is None and s.gemini.api_key is None
    assert (s.runway.base_url, s.runway.model, s.runway.poll_interval_s) == ("https://api.dev.runwayml.com", "gen4.5", 5.0)
    assert (s.veo.model, s.veo.location, s.veo.poll_interval_s) == ("veo-3.1-fast-generate-preview", "us-central1", 10.0)
    assert (s.polling.task_timeout_s, s.gates.breaker_open_s, s.store.location, s.store.s3_part_mb, s.store.run_lock_ttl_s) == (
        1800.0, 30.0, "runs", 8.0, 90.0)
    assert not provider_configured("runway", s) and not provider_configured("veo", s)
    assert provider_configured("preview", s)


def test_autoscaling_is_on_off_or_guessed():
    assert [Settings.from_env({"LONGVID_AUTOSCALING": v}).autoscaling for v in ("1", "0", "auto", "TRUE", "no")] == [
        True, False, None, True, False]
    assert Settings.from_env({}).autoscaling is None
    with pytest.raises(InputError, match="LONGVID_AUTOSCALING must be 1, 0 or auto"):
        Settings.from_env({"LONGVID_AUTOSCALING": "sometimes"})


def test_the_gemini_key_is_the_fallback_for_both_google_clients():
    s = Settings.from_env({"GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_API_KEY": "  "})
    assert s.veo.api_key.get_secret_value() == GEMINI_KEY == s.gemini.api_key.get_secret_value()
    assert s.gemini.key_source == "GEMINI_API_KEY"
    assert provider_configured("veo", s)


def test_settings_are_frozen():
    s = Settings.from_env({})
    with pytest.raises(ValidationError):
        s.runway.model = "gen4_turbo"


def test_secrets_are_masked_in_repr_str_and_json_but_survive_pickling_to_a_worker():
    import ray.cloudpickle

    s = Settings.from_env(FULL)
    for text in (repr(s), str(s), s.model_dump_json(), json.dumps(s.model_dump(mode="json")), repr(s.runway), repr(s.veo)):
        assert RUNWAY_KEY not in text and GOOGLE_KEY not in text and GEMINI_KEY not in text
    assert "**********" in repr(s.runway)
    for back in (pickle.loads(pickle.dumps(s)), ray.cloudpickle.loads(ray.cloudpickle.dumps(s))):
        assert back == s  # a Ray worker gets the real values...
        assert back.runway.api_secret.get_secret_value() == RUNWAY_KEY
        assert RUNWAY_KEY not in repr(back)  # ...and still prints them masked


@pytest.mark.parametrize("variable, value, says", [
    ("LONGVID_RUNWAY_PRICES", "twelve", "JSON object of credits per second"),
    ("LONGVID_RUNWAY_PRICES", '{"gen4.5": -1}', "JSON object"),
    ("LONGVID_VEO_PRICES", "[1]", "JSON object of USD per second"),
    ("LONGVID_VEO_PRICES", '{"veo-3.1-generate-preview": true}', "JSON object"),
    ("LONGVID_TASK_TIMEOUT_S", "half an hour", "number"),
    ("LONGVID_POLL_INTERVAL_S", "-1", "positive"),
    ("LONGVID_BREAKER_OPEN_S", "nan", "positive"),
    ("LONGVID_S3_PART_MB", "big", "number"),
    ("LONGVID_RUN_LOCK_TTL_S", "0", "positive"),
    ("LONGVID_MAX_CONCURRENT_RUNWAY", "two", "whole number"),
    ("LONGVID_MAX_CONCURRENT_VEO", "-3", "0 or more"),
])
def test_a_bad_value_is_one_input_error_naming_its_variable(variable, value, says):
    with pytest.raises(InputError, match=re.escape(variable)) as caught:
        Settings.from_env({variable: value})
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_refuses_a_bad_value_with_exit_2(monkeypatch, capsys):
    """Regression: a non-number LONGVID_TASK_TIMEOUT_S used to pass `longvid plan` unseen and fail
    later inside a Ray worker as a bare ValueError."""
    from longvid.cli import main

    monkeypatch.setenv("LONGVID_TASK_TIMEOUT_S", "soon")
    assert main(["plan", "a fox in the snow", "--planner", "offline"]) == 2
    assert "LONGVID_TASK_TIMEOUT_S" in capsys.readouterr().err


def test_the_batch_job_refuses_a_bad_value_with_exit_2(monkeypatch, tmp_path):
    """Regression: LONGVID_MAX_CONCURRENT_RUNWAY=two used to fail each render with a ValueError."""
    from jobs.batch_render import main

    specs = tmp_path / "specs.jsonl"
    specs.write_text('{"prompt": "a fox in the snow", "duration_s": 4}\n')
    monkeypatch.setenv("LONGVID_MAX_CONCURRENT_RUNWAY", "two")
    assert main([str(specs), "--out-dir", str(tmp_path / "out")]) == 2


def test_capabilities_and_gates_come_from_the_settings():
    s = Settings.from_env(FULL)
    runway = provider_capabilities("runway", s)
    assert (runway.model, runway.price_per_second_usd) == ("gen4_turbo", pytest.approx(0.06))
    assert provider_capabilities("veo", s).price_per_second_usd == pytest.approx(0.5)
    assert GateConfig.from_settings("runway", 4, s.gates).max_concurrent == 2
    assert GateConfig.from_settings("veo", 4, s.gates).max_concurrent is None  # 0: no limit
    assert GateConfig.from_settings("preview", None, s.gates).breaker.open_seconds == 5


def test_gate_identity_is_stable_per_account_and_never_shows_the_key():
    s = Settings.from_env(FULL)
    first = gate_identity("runway", s.account("runway"))
    assert first == gate_identity("runway", Settings.from_env(dict(FULL)).account("runway"))  # same account, same gate
    assert first == gate_identity("runway", Settings.from_env({**FULL, "LONGVID_POLL_INTERVAL_S": "9"}).account("runway"))
    assert RUNWAY_KEY not in first and RUNWAY_KEY[:12] not in first
    other_key = Settings.from_env({**FULL, "RUNWAYML_API_SECRET": "another-key"})
    other_url = Settings.from_env({**FULL, "RUNWAYML_BASE_URL": "http://127.0.0.1:9999"})
    assert len({first, gate_identity("runway", other_key.account("runway")),
                gate_identity("runway", other_url.account("runway"))}) == 3
    veo = gate_identity("veo", s.account("veo"))
    assert veo != gate_identity("veo", Settings.from_env({**FULL, "GOOGLE_CLOUD_PROJECT": "other"}).account("veo"))
    assert GOOGLE_KEY not in veo


def test_the_runway_client_sends_through_a_given_transport():
    """The optional transport carries every request (creates and downloads) to the fake."""
    from longvid.providers import generate
    from longvid.providers._http import RetryPolicy
    from longvid.providers.runway import RunwayProvider
    from longvid.spec import Scene, SegmentJob
    from longvid.testing.fake_runway import DEFAULT_KEY, start_fake_runway

    class Counting(httpx.HTTPTransport):
        def __init__(self):
            super().__init__()
            self.paths: list[str] = []

        def handle_request(self, request):
            self.paths.append(request.url.path)
            return super().handle_request(request)

    server, _fake = start_fake_runway(pending_polls=0, running_polls=0, scale=0.05, fps=8)
    try:
        transport = Counting()
        settings = RunwaySettings(api_secret=SecretStr(DEFAULT_KEY), base_url=server.url, poll_interval_s=0.01)
        with RunwayProvider(settings, transport=transport, retry=RetryPolicy(attempts=2, initial_s=0.01, max_s=0.02)) as provider:
            job = SegmentJob(index=0, scene_index=0, segment_in_scene=0, prompt="a paper boat", scene=Scene(description="a paper boat"),
                             start_frame=0, frames=120, generate_duration_s=5.0, fps=24, width=640, height=360, seed=1)
            _task, mp4 = generate(provider, job, poll_interval_s=0.01, timeout_s=10)
        assert mp4[4:8] == b"ftyp"
        assert transport.paths[0] == "/v1/text_to_video" and any(p.startswith("/v1/tasks/") for p in transport.paths)
        assert len(transport.paths) >= 3  # create, poll, download: all through the transport
    finally:
        server.stop()


def test_the_veo_client_sends_through_a_given_transport():
    from longvid.providers._http import RetryPolicy
    from longvid.providers.veo import VeoProvider
    from longvid.settings import VeoSettings
    from longvid.spec import Scene, SegmentJob
    from longvid.testing.fake_veo import DEFAULT_KEY, start_fake_veo

    class Counting(httpx.HTTPTransport):
        def __init__(self):
            super().__init__()
            self.paths: list[str] = []

        def handle_request(self, request):
            self.paths.append(request.url.path)
            return super().handle_request(request)

    server, fake = start_fake_veo(scale=0.05, fps=8)
    try:
        transport = Counting()
        settings = VeoSettings(api_key=SecretStr(DEFAULT_KEY), base_url=server.url)
        provider = VeoProvider(settings, transport=transport, retry=RetryPolicy(attempts=2, initial_s=0.01, max_s=0.02))
        job = SegmentJob(index=0, scene_index=0, segment_in_scene=0, prompt="a paper boat", scene=Scene(description="a paper boat"),
                         start_frame=0, frames=144, generate_duration_s=6.0, fps=24, width=640, height=360, seed=1)
        task_id = provider.submit(job)
        provider.close()
        assert task_id and len(fake.requests) == 1
        assert [p for p in transport.paths if p.endswith(":predictLongRunning")]  # the SDK's request went through it
    finally:
        server.stop()


# -- no configuration read below the edges ------------------------------------------------------

# The only files that may touch os.environ, and why.
ALLOWED = {
    "longvid/settings.py": "Settings.from_env: the one reader",
    "serve/settings.py": "ApiSettings.from_env: a replica's own environment",
    "serve/app.py": "build_app: the store a deployment is built with",
    "jobs/batch_render.py": "main: is this a Ray job (RAY_JOB_CONFIG_JSON_ENV_VAR)?",
    "longvid/consistency/clip_model.py": "writes HF_HUB_OFFLINE around a load to steer Hugging Face",
}


def test_nothing_below_the_edges_reads_the_environment():
    found = set()
    for folder in ("longvid", "serve", "jobs"):
        for path in (REPO / folder).rglob("*.py"):
            relative = path.relative_to(REPO).as_posix()
            if relative.startswith("longvid/testing/"):  # the fakes stand in for services, not longvid
                continue
            text = path.read_text()
            if re.search(r"os\.environ|os\.getenv|getenv\(|environ\.get", text):
                found.add(relative)
    assert found <= set(ALLOWED), f"os.environ read outside the edges: {sorted(found - set(ALLOWED))}"
    assert "longvid/settings.py" in found  # the check itself looks where it should


def test_a_planner_replica_takes_its_choice_and_key_from_api_settings(monkeypatch):
    from serve.app import Planner
    from serve.settings import ApiSettings, SettingsError

    monkeypatch.setenv("LONGVID_PLANNER", "offline")
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    replica = Planner.func_or_class()
    assert replica.service.planner_mode == "offline"
    assert replica.service.settings.gemini.api_key.get_secret_value() == GEMINI_KEY
    api = ApiSettings.from_env({"LONGVID_PLANNER": "gemini", "GOOGLE_API_KEY": GOOGLE_KEY})
    assert api.planner == "gemini" and api.longvid.gemini.key_source == "GOOGLE_API_KEY"
    assert GOOGLE_KEY not in repr(api) and GOOGLE_KEY not in api.model_dump_json()
    with pytest.raises(SettingsError, match="LONGVID_VEO_PRICES"):
        ApiSettings.from_env({"LONGVID_VEO_PRICES": "cheap"})
