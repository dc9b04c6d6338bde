"""Failures say why: every kind of provider failure leaves a one-line reason (the provider,
its failure code and its words) in the manifest, `longvid status --json` and the CLI's
stderr, with no traceback, terminal colour codes or server paths — through Ray, where the
reason used to arrive as a wrapped remote traceback."""

from __future__ import annotations

import json
import re

import pytest

from longvid.cli import main
from longvid.manifest import load_manifest
from longvid.testing.fake_runway import DEFAULT_KEY, Fault, start_fake_runway

FAULTS = {
    "poll keeps failing": ([Fault("500", on="poll", times=None)], "HTTP.UNAVAILABLE"),
    "refused for safety twice": ([Fault("fail", failure_code="SAFETY.INPUT.TEXT", times=None)], "SAFETY.INPUT.TEXT"),
    "internal failure twice": ([Fault("fail", failure_code="INTERNAL", times=None)], "INTERNAL"),
    "stuck past the task timeout": ([Fault("stuck", times=None)], "TIMEOUT"),
    "download truncated every time": ([Fault("truncate", on="download", times=None)], "DOWNLOAD.CORRUPT"),
}

ANSI = re.compile(r"\x1b\[")


@pytest.fixture
def runway(monkeypatch):
    server, fake = start_fake_runway(pending_polls=1, running_polls=1)
    monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
    monkeypatch.setenv("RUNWAYML_API_SECRET", DEFAULT_KEY)
    monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.02")
    monkeypatch.setenv("LONGVID_TASK_TIMEOUT_S", "1.5")
    yield fake
    server.stop()


def _one_clean_line(text: str) -> None:
    assert "\n" not in text.strip() and "Traceback" not in text and not ANSI.search(text)
    assert ".py" not in text and "File \"" not in text and DEFAULT_KEY not in text


@pytest.mark.ray
@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_every_failure_kind_leaves_a_one_line_reason(kind, runway, ray_session, tmp_path, capsys):
    faults, code = FAULTS[kind]
    runway.faults.extend(faults)
    store = tmp_path / "store"
    status = main(["render", "a lighthouse keeper at night", "-d", "5", "--resolution", "360p", "--provider", "runway",
                   "--judge", "off", "--store", str(store), "--run-id", "r"])
    err = capsys.readouterr().err
    assert status == 1
    failure = [line for line in err.splitlines() if line.startswith("longvid: error:")]
    assert len(failure) == 1 and f"segment 0: runway: " in failure[0] and code in failure[0], err[-2000:]
    assert "Traceback" not in err and not ANSI.search(err)  # no remote tracebacks on stderr
    # Structured log lines may be there (a JSON handler another test's batch job installed in
    # this process); what the CLI itself prints stays short.
    printed = "\n".join(line for line in err.splitlines() if not line.startswith('{"ts"'))
    assert len(printed) < 4000, printed[-2000:]
    _one_clean_line(failure[0])

    manifest = load_manifest((store / "r" / "manifest.json").read_text())
    error = manifest.segments[0].error
    assert error is not None and error.startswith("runway: ") and code in error
    _one_clean_line(error)
    _one_clean_line(manifest.error)

    assert main(["status", "r", "--store", str(store), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["segments"][0]["error"] == error and shown["error"] == manifest.error
