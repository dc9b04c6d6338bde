"""The pieces the cluster tests and benchmarks stand on, without Ray: the fake autoscaler's
config and the fake Runway's fixed task latency (over real HTTP on 127.0.0.1)."""

import sys
import time

import httpx

from longvid.testing.fake_runway import API_VERSION, DEFAULT_KEY, fake_runway
from longvid.testing.ray_cluster import HEAD_TYPE, autoscaling_config, run_stoppable


def test_the_fake_autoscaler_config_has_the_given_node_types_and_a_task_free_head():
    types = {"gpu_worker": {"resources": {"CPU": 2, "GPU": 1, "memory": 2**30}, "max_workers": 1}}
    config = autoscaling_config({"CPU": 0}, types, "127.0.0.1:6379", idle_timeout_minutes=0.1)
    assert config["available_node_types"][HEAD_TYPE]["resources"] == {"CPU": 0}
    assert config["available_node_types"]["gpu_worker"] == {"node_config": {}, "min_workers": 0, **types["gpu_worker"]}
    assert config["provider"]["gcs_address"] == "127.0.0.1:6379"  # our head, not the default port of another Ray
    assert config["provider"]["module"].endswith("ray_cluster.FakeNodesWithMemory")
    assert config["idle_timeout_minutes"] == 0.1


def test_a_fixed_task_latency_holds_whatever_the_poll_rate():
    with fake_runway(task_latency_s=1.0) as (server, fake):
        headers = {"Authorization": f"Bearer {DEFAULT_KEY}", "X-Runway-Version": API_VERSION}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            created = client.post("/v1/text_to_video", json={"model": "gen4.5", "promptText": "a kite", "ratio": "1280:720",
                                                             "duration": 5})
            task = created.json()["id"]
            states = [client.get(f"/v1/tasks/{task}").json()["status"] for _ in range(3)]  # many polls, at once
            time.sleep(1.1)
            assert client.get(f"/v1/tasks/{task}").json()["status"] == "SUCCEEDED"
    assert states[0] in ("PENDING", "RUNNING") and "SUCCEEDED" not in states



def test_kept_clips_are_served_again_without_encoding_and_survive_a_reset():
    """What bench_providers.py stands on: a warm-up render fills the fake, the timed one is served."""
    with fake_runway(pending_polls=0, running_polls=0, scale=0.05, keep_clips=True) as (server, fake):
        headers = {"Authorization": f"Bearer {DEFAULT_KEY}", "X-Runway-Version": API_VERSION}

        def clip(prompt: str) -> bytes:
            body = {"model": "gen4.5", "promptText": prompt, "ratio": "1280:720", "duration": 5, "seed": 7}
            task = client.post("/v1/text_to_video", json=body).json()["id"]
            output = client.get(f"/v1/tasks/{task}").json()["output"][0]
            return client.get(output).content

        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            first = clip("a kite")
            assert fake.counts["render"] == 1
            fake.reset()
            again = clip("a kite")
            assert fake.counts["render"] == 0  # served as kept, nothing encoded
            other = clip("a boat")
    assert again == first and first[4:8] == b"ftyp" and other != first
    assert fake.kept_clips() == 2 and fake.counts["render"] == 1

# A stand-in for tests/cluster_child.py: SIGTERM becomes SystemExit, so `finally` (there:
# stopping its cluster) runs; it then ignores the exit and hangs, to show SIGKILL follows.
STUBBORN_CHILD = """
import signal, sys, time
def stop(signum, frame):
    raise SystemExit(1)
signal.signal(signal.SIGTERM, stop)
print("started", flush=True)
try:
    time.sleep(60)
finally:
    print("cleaned up", flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
"""


def test_a_timed_out_child_gets_sigterm_first_then_sigkill():
    started = time.monotonic()
    done = run_stoppable([sys.executable, "-c", STUBBORN_CHILD], {}, timeout_s=1.5, grace_s=1.0)
    assert done.stdout.split() == ["started", "cleaned", "up"]  # its finally ran before the SIGKILL
    assert done.returncode == -9 and "stopped after 1.5 s" in done.stderr
    assert time.monotonic() - started < 10
