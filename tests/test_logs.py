"""Structured logs: one JSON object per line, carrying the run (and segment, provider, task)
it concerns, across the driver and its Ray tasks, and never a secret."""

import glob
import io
import json
import logging
import os
import time

import pytest

from longvid.cli import _LinesToLog, main
from longvid.observability import logs
from longvid.settings import Settings
from longvid.testing.fake_runway import DEFAULT_KEY, Fault, start_fake_runway

RUN_ID = "logged-run-42"


@pytest.fixture
def clean_logging():
    yield
    logs.remove_logging()


def test_json_lines_carry_the_context_and_no_secret(clean_logging):
    out = io.StringIO()
    settings = Settings.from_env({"RUNWAYML_API_SECRET": "rk-this-is-secret-123"})
    logs.configure_logging("json", secrets=logs.secret_values(settings), stream=out)
    log = logging.getLogger("longvid.test")
    with logs.log_context(run_id="r1"):
        log.info("task created with rk-this-is-secret-123", extra={"segment": 2, "provider": "runway", "task_id": "t9"})
        with logs.log_context(segment=3):
            try:
                raise RuntimeError("Authorization: Bearer abc.def")
            except RuntimeError:
                log.exception("failed")
    log.info("outside any run")
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["run_id"] == "r1" and first["segment"] == 2 and first["provider"] == "runway" and first["task_id"] == "t9"
    assert first["level"] == "info" and first["logger"] == "longvid.test" and "[redacted]" in first["message"]
    assert second["run_id"] == "r1" and second["segment"] == 3 and "abc.def" not in second["error"]
    assert "run_id" not in third  # the context ended with the block
    assert "rk-this-is-secret-123" not in out.getvalue()


def test_secret_values_finds_nested_and_repeated_secrets():
    from pydantic import SecretStr

    from serve.settings import ApiSettings

    api = ApiSettings(tokens=(SecretStr("tok-a"), SecretStr("tok-b")), longvid=Settings.from_env({"GOOGLE_API_KEY": "AIza-k"}))
    found = logs.secret_values(api)
    assert {"tok-a", "tok-b", "AIza-k"} <= set(found)
    with pytest.raises(ValueError, match="log format"):
        logs.configure_logging("xml")


@pytest.mark.ray
def test_a_render_logs_json_lines_with_its_run_id_and_no_secret(ray_session, tmp_path, monkeypatch, capsys, clean_logging):
    server, fake = start_fake_runway(pending_polls=1, running_polls=1)
    monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
    monkeypatch.setenv("RUNWAYML_API_SECRET", DEFAULT_KEY)
    monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.05")
    # The provider's words carry the key: the failure is logged, the key never is.
    fake.faults.append(Fault("fail", failure_code="INTERNAL", message=f"internal error for key {DEFAULT_KEY}"))
    try:
        code = main(["render", "a lighthouse at night", "-d", "6", "--resolution", "360p", "--provider", "runway",
                     "--judge", "off", "--budget", "50", "--store", str(tmp_path), "--run-id", RUN_ID,
                     "--log-format", "json", "--json"])
    finally:
        server.stop()
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [json.loads(line) for line in captured.err.splitlines()]  # every stderr line is one JSON object
    assert lines and all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    render_lines = [line for line in lines if line["logger"].startswith(("longvid.render", "longvid.runtime", "longvid.providers"))]
    assert {line["message"] for line in render_lines} >= {"render started", "task created", "task downloaded"}
    assert all(line.get("run_id") == RUN_ID for line in render_lines)  # every line about the render names it
    error = next(line for line in render_lines if line["message"].startswith("provider error INTERNAL"))
    assert error["segment"] == 0 and error["provider"] == "runway"
    created = [line for line in render_lines if line["message"] == "task created"]
    assert all(line["task_id"] in fake.tasks for line in created) and len(created) == len(fake.tasks)
    assert DEFAULT_KEY not in captured.err and DEFAULT_KEY not in captured.out

    # The segment tasks logged in their Ray workers' files, in the same format, with the run id.
    logs_dir = ray_session._private.worker._global_node.get_logs_dir_path()
    deadline, worker_lines = time.monotonic() + 10, []
    while time.monotonic() < deadline and len(worker_lines) < 2 * len(fake.tasks):
        worker_lines = []
        for path in glob.glob(os.path.join(logs_dir, "worker-*")):
            with open(path, errors="replace") as handle:
                text = handle.read()
            assert DEFAULT_KEY not in text
            worker_lines += [json.loads(line) for line in text.splitlines() if RUN_ID in line and line.startswith("{")]
        time.sleep(0.2)
    assert {line["message"].split(" ")[0] for line in worker_lines} >= {"waiting", "downloaded"}
    assert all(line["run_id"] == RUN_ID and line["task_id"] in fake.tasks and line["provider"] == "runway"
               for line in worker_lines)


def test_what_ray_prints_on_the_driver_becomes_json_log_lines(clean_logging, capsys):
    # During a render the CLI points stdout here: with --log-format json stderr stays JSON lines only.
    logs.configure_logging("json")
    stream = _LinesToLog(logging.getLogger("longvid.ray"))
    stream.write("\x1b[33m(raylet)\x1b[0m WARNING: 10 PYTHON worker processes have been started\n(task pid=1) hel")
    stream.write("lo\n\n")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["(raylet) WARNING: 10 PYTHON worker processes have been started",
                                                   "(task pid=1) hello"]
    assert {line["logger"] for line in lines} == {"longvid.ray"}
