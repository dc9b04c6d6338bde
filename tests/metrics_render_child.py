"""Run by test_metrics_ray in its own process: its own Ray (on loopback, with a metrics
export port) renders through the fake Runway with one injected INTERNAL failure, one
THROTTLED task and one judge rejection, then keeps Ray up until the test closes stdin.

Usage: python metrics_render_child.py STORE PORT RUN_ID. Prints one JSON line when the render ends."""

import json
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
signal.alarm(240)  # never outlive a stuck test


class OneRejectionJudge:
    """A judge that sends segment 0's first attempt back once and passes everything else
    (the regeneration path, without depending on how a real scorer sees fake clips)."""

    max_attempts = 3
    backend = "scripted"
    notes = "test judge"

    def __init__(self):
        self.rejected = False

    def judge(self, job, segment, previous):
        from longvid.runtime.protocols import JudgeVerdict

        reject = job.index == 0 and not self.rejected
        self.rejected |= reject
        score = 0.3 if reject else 0.9
        return JudgeVerdict(passed=not reject, scores={"anchor": score}, reason="anchor drift" if reject else "", quality=score)

    def remember_accepted(self, job, segment):
        pass

    def save_state(self, run):
        pass

    def close(self):
        pass


def main(store: str, port: int, run_id: str) -> None:
    import ray

    from longvid.runtime import LocalRunStore, RenderPipeline, RaySegmentRunner
    from longvid.settings import Settings
    from longvid.spec import RenderSpec
    from longvid.testing.fake_runway import DEFAULT_KEY, Fault, start_fake_runway

    server, runway = start_fake_runway(pending_polls=1, running_polls=1)
    runway.faults.append(Fault("fail", failure_code="INTERNAL", times=1))
    runway.faults.append(Fault("throttle", polls=2, times=1))
    settings = Settings.from_env({"RUNWAYML_BASE_URL": server.url, "RUNWAYML_API_SECRET": DEFAULT_KEY,
                                  "LONGVID_POLL_INTERVAL_S": "0.02", "LONGVID_TASK_TIMEOUT_S": "30"})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             _metrics_export_port=port, _system_config={"metrics_report_interval_ms": 500})
    spec = RenderSpec(prompt="a surreal lighthouse at night", duration_s=8, resolution="360p", provider="runway",
                      continuity="anchor", budget_usd=20)
    error = None
    try:
        RenderPipeline(LocalRunStore(Path(store)), RaySegmentRunner(), judge=OneRejectionJudge(), settings=settings).render(
            spec, run_id=run_id)
    except Exception as exc:  # the test reports it
        error = f"{exc.__class__.__name__}: {exc}"
    print(json.dumps({"error": error, "tasks": len(runway.tasks)}), flush=True)
    sys.stdin.read()  # the test scrapes meanwhile
    ray.shutdown()
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
