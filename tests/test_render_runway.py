"""`longvid render --provider runway` end to end on Ray against the fake Runway server:
the real client on the wire, only the base URL and key differ from production."""

import json
from pathlib import Path

import pytest

from longvid.cli import main
from longvid.manifest import load_manifest
from longvid.media import probe
from longvid.testing.fake_runway import DEFAULT_KEY, Fault, start_fake_runway

pytestmark = pytest.mark.ray


@pytest.fixture
def runway(monkeypatch):
    server, fake = start_fake_runway(pending_polls=1, running_polls=1)
    monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
    monkeypatch.setenv("RUNWAYML_API_SECRET", DEFAULT_KEY)
    monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.05")
    # Ray workers inherit the driver's environment only at start-up: pass these explicitly.
    yield server, fake
    server.stop()


def test_render_with_runway_through_faults(ray_session, runway, tmp_path, capsys):
    server, fake = runway
    fake.faults.append(Fault("429", on="create", times=1, retry_after=0.1))
    fake.faults.append(Fault("throttle", polls=2))
    out = tmp_path / "runway.mp4"
    code = main(["render", "a lighthouse at night", "-d", "10", "--resolution", "360p", "--provider", "runway",
                 "--judge", "off", "--budget", "50", "--store", str(tmp_path / "store"), "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert probe(out).frames == 240 and (probe(out).width, probe(out).height) == (640, 360)
    manifest_text = (Path(result["run_dir"]) / "manifest.json").read_text()
    manifest = load_manifest(manifest_text)
    creates = fake.counts["create"]
    assert creates == result["segments"] + 1  # one 429, retried after its Retry-After
    assert len(manifest.ledger) == result["segments"]  # every task that exists is on the books
    assert 0 < manifest.cost_usd <= 50 and result["cost_usd"] == manifest.cost_usd
    assert DEFAULT_KEY not in manifest_text and DEFAULT_KEY not in captured.err


def test_missing_key_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RUNWAYML_API_SECRET", raising=False)
    assert main(["render", "a fox", "--provider", "runway", "--store", str(tmp_path / "store")]) == 2
    assert "RUNWAYML_API_SECRET" in capsys.readouterr().err


def test_render_with_veo_through_the_sdk(ray_session, tmp_path, capsys, monkeypatch):
    from longvid.testing.fake_veo import DEFAULT_KEY as VEO_KEY
    from longvid.testing.fake_veo import start_fake_veo

    for name in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(name, raising=False)
    server, fake = start_fake_veo(scale=0.1)
    try:
        monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", server.url)
        monkeypatch.setenv("GOOGLE_API_KEY", VEO_KEY)
        monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.05")
        out = tmp_path / "veo.mp4"
        code = main(["render", "a lighthouse at night", "-d", "8", "--resolution", "360p", "--provider", "veo",
                     "--planner", "offline", "--judge", "off", "--store", str(tmp_path / "store"), "-o", str(out), "--json"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        result = json.loads(captured.out)
        assert probe(out).frames == 8 * 24
        manifest_text = (Path(result["run_dir"]) / "manifest.json").read_text()
        manifest = load_manifest(manifest_text)
        assert len(manifest.ledger) == result["segments"] and result["cost_usd"] > 0
        assert all(e.state == "charged" for e in manifest.ledger)
        assert VEO_KEY not in manifest_text and VEO_KEY not in captured.err
    finally:
        server.stop()
