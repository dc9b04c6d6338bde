"""Application metrics reach Prometheus through Ray's metrics agent: a render in its own Ray
(a subprocess, so the suite's shared Ray session is left alone) with an injected provider
failure, a THROTTLED task and a judge rejection; the test scrapes the node's metrics port and
finds every series with its tags and counts."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from longvid.manifest import load_manifest
from longvid.observability.metrics import CATALOGUE, exported_series

pytestmark = pytest.mark.ray

CHILD = Path(__file__).with_name("metrics_render_child.py")
ROOT = Path(__file__).resolve().parent.parent
RUN_ID = "metrics-run-7f3a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples, name: str, **labels: str) -> float:
    """Summed over the processes (driver, tasks, actors) that reported the series."""
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == want for k, want in labels.items()))


def by_label(samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for n, labels, value in samples:
        if n == name:
            out[labels.get(label)] = out.get(labels.get(label), 0.0) + value
    return out


def check(samples, manifest) -> None:
    segments = len(manifest.segments)
    model = manifest.segments[0].clip.model
    assert total(samples, "ray_longvid_renders_started_total", provider="runway") == 1
    assert total(samples, "ray_longvid_renders_finished_total", provider="runway") == 1
    assert total(samples, "ray_longvid_renders_failed_total") == 0
    outcomes = by_label(samples, "ray_longvid_segments_total", "outcome")
    assert sum(outcomes.values()) == segments and outcomes == {"accepted": segments}
    assert total(samples, "ray_longvid_segments_total", provider="runway", model=model) == segments
    assert by_label(samples, "ray_longvid_provider_errors_total", "code") == {"INTERNAL": 1}
    # The counter holds what the ledger charged, the INTERNAL task's estimate included.
    assert total(samples, "ray_longvid_cost_usd_total", provider="runway") == pytest.approx(manifest.cost_usd, abs=1e-6)
    assert manifest.cost_usd > 0
    assert by_label(samples, "ray_longvid_judge_verdicts_total", "verdict") == {"fail": 1, "pass": segments}
    assert total(samples, "ray_longvid_judge_score_count", backend="scripted", check="quality") == segments + 1
    assert total(samples, "ray_longvid_judge_score_count", backend="scripted", check="anchor") == segments + 1
    assert total(samples, "ray_longvid_regenerations_total", provider="runway") == 1
    created = segments + 2  # one task per segment, the INTERNAL one's retry, the regeneration
    assert total(samples, "ray_longvid_provider_task_seconds_count", provider="runway", model=model) == segments + 1  # the collected ones
    assert total(samples, "ray_longvid_queue_wait_seconds_count", provider="runway", stage="gate") == created
    assert total(samples, "ray_longvid_queue_wait_seconds_count", provider="runway", stage="throttled") == created
    assert total(samples, "ray_longvid_queue_wait_seconds_sum", stage="throttled") > 0  # one task was THROTTLED for 2 polls
    assert total(samples, "ray_longvid_merge_seconds_count") == 1
    breaker = [(l, v) for n, l, v in samples if n == "ray_longvid_breaker_state"]
    assert breaker and all(l["provider"] == "runway" and l["account"] and v == 0 for l, v in breaker)  # closed
    assert total(samples, "ray_longvid_segments_in_flight", provider="runway") == 0  # every slot released


def test_render_metrics_reach_prometheus(tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path), str(port), RUN_ID], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = child.stdout.readline()
        assert line, child.stderr.read()[-3000:]
        outcome = json.loads(line)
        assert outcome["error"] is None, outcome
        manifest = load_manifest((tmp_path / RUN_ID / "manifest.json").read_text())
        deadline, failure = time.monotonic() + 30, None
        while time.monotonic() < deadline:  # each process's agent reports every 0.5 s
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            samples = _samples(text)
            try:
                check(samples, manifest)
                break
            except AssertionError as exc:
                failure = exc
                time.sleep(0.5)
        else:
            raise AssertionError(f"metrics never matched the render: {failure}")
        ours = [(n, l) for n, l, _ in samples if n.startswith("ray_longvid_")]
        assert {n for n, _ in ours} <= exported_series()
        for name, labels in ours:  # bounded tags only: never a run id
            assert "run_id" not in labels and RUN_ID not in labels.values()
        assert RUN_ID not in "".join(line for line in text.splitlines() if "longvid" in line)
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()


def test_every_metric_is_declared_with_bounded_tags():
    for spec in CATALOGUE.values():
        assert spec.name.startswith("longvid_") and spec.kind in ("counter", "gauge", "histogram")
        assert "run_id" not in spec.tags and "task_id" not in spec.tags
        assert (spec.kind == "histogram") == bool(spec.boundaries)


def test_cost_is_counted_once_per_charge_and_never_again_on_resume():
    from longvid.observability.render_events import charged_keys, new_charges
    from longvid.providers.ledger import CostLedger

    ledger = CostLedger(None)
    ledger.reserve("seg0/call1", 0, "runway", 0.5)
    ledger.charge("seg0/call1", 0.4)  # paid in an earlier invocation
    ledger.reserve("seg1/call1", 1, "veo", 0.8)  # still running when that one stopped
    counted = charged_keys(ledger.entries)  # where the resumed loop starts
    assert counted == {"seg0/call1"} and new_charges(ledger.entries, counted) == []
    ledger.charge("seg1/call1", None)  # collected on resume: charged at its estimate
    ledger.reserve("seg2/call1", 2, "veo", 0.8)
    ledger.release("seg2/call1")  # a refused create: nothing owed
    assert new_charges(ledger.entries, counted) == [("seg1/call1", "veo", 0.8)]
