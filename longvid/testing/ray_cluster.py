"""A multi-node Ray cluster on this machine, for tests and benchmarks of the cluster paths.

Each node is a `ray start --block` process in its own session: stopping a node (or the
whole cluster) kills exactly that session's processes (raylet, workers, and for the head
the GCS, dashboard and autoscaler), never another Ray on the machine. That is why this
exists beside `ray.cluster_utils`: `AutoscalingCluster.start()` runs `ray stop --force`,
which stops every Ray this user runs (other test sessions included), and in Ray 2.60 it
reads an example config the wheel does not ship.

With `autoscaling=` the head runs Ray's fake multi-node autoscaler (the `fake_multinode`
node provider, `RAY_FAKE_CLUSTER=1`): it launches and terminates local nodes of the given
types on demand, the way the cloud launcher does with `cluster.yaml`'s node types.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HEAD_TYPE = "ray.head.default"
FAKE_HEAD_NODE_ID = "f" * 51 + "00000"  # the fake provider's head node id (autoscaler v2 needs it)  # the fake provider's name for the head's node type


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `ray start`: this interpreter's `ray` and `python` first on PATH,
    no RAY_ADDRESS (never join another cluster), no token auth, no usage stats."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    bin_dir = str(Path(sys.executable).parent)
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    env.update(extra or {})
    return env


def session_processes(leader: int) -> list[int]:
    """Pids in the session `leader` leads (a node's raylet, workers; the head's GCS too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == leader:
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    return found


def kill_session(process: subprocess.Popen, graceful_s: float = 0.0) -> None:
    """Stop one node: SIGTERM its `ray start --block` (which stops its processes) when
    `graceful_s` > 0, then SIGKILL whatever of its session is left."""
    if graceful_s > 0 and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=graceful_s)
        except subprocess.TimeoutExpired:
            pass
    for pid in session_processes(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        process.kill()
        process.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pass


def run_stoppable(argv: list[str], env: dict[str, str], timeout_s: float, grace_s: float = 20.0) -> subprocess.CompletedProcess:
    """Run a process that owns a cluster (tests/cluster_child.py) for at most `timeout_s`: past
    it, SIGTERM first, so its `finally` stops its cluster, and SIGKILL only after `grace_s`.
    (subprocess.run's timeout SIGKILLs at once and would leak the child's whole cluster.)"""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            out, err = process.communicate(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        err = f"{err}\n(stopped after {timeout_s:g} s)"
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def autoscaling_config(head_resources: dict, worker_types: dict, gcs_address: str, idle_timeout_minutes: float,
                       max_workers: int = 8) -> dict:
    """A cluster config for Ray's fake multi-node provider. `worker_types`: node type name ->
    {"resources": {...}, "min_workers": n, "max_workers": n} (as in cluster.yaml)."""
    types = {name: {"node_config": {}, "min_workers": 0, **spec} for name, spec in worker_types.items()}
    types[HEAD_TYPE] = {"resources": dict(head_resources), "node_config": {}, "max_workers": 0}
    return {
        "cluster_name": "longvid-fake",
        "max_workers": max_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {"type": "external", "module": f"{__name__}.FakeNodesWithMemory", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True, "gcs_address": gcs_address},
        "available_node_types": types,
        "head_node_type": HEAD_TYPE,
        "auth": {}, "docker": {}, "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {},
        "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
    }


def _fake_provider_class():
    from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider

    class FakeNodesWithMemory(FakeMultiNodeProvider):
        """Ray's fake multi-node provider, for node types that declare `memory` (as the cloud
        providers fill it in from the instance type): the autoscaler bin-packs tasks that ask
        for memory against it, and the local node starts with the memory it detects (Ray
        refuses `memory` among a node's custom resources)."""

        def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
            resources = {k: v for k, v in resources.items() if k != "memory"}
            super()._create_node_with_resources_and_labels(node_config, tags, count, resources, labels)

    return FakeNodesWithMemory


def __getattr__(name: str):
    # The autoscaler loads the provider class by its dotted path; built on first use so that
    # importing this module does not import Ray's autoscaler.
    if name == "FakeNodesWithMemory":
        return _fake_provider_class()
    raise AttributeError(name)


@dataclass
class Node:
    process: subprocess.Popen
    resources: dict
    log: Path


@dataclass
class LocalRayCluster:
    """Start with `start_head()`, add nodes with `add_worker()`, end with `stop()`."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lv-cl-", dir="/tmp")))
    head: Node | None = None
    workers: list[Node] = field(default_factory=list)
    port: int = 0
    dashboard_port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, args: list[str], log_name: str, env: dict[str, str] | None) -> subprocess.Popen:
        log = open(self.root / log_name, "w")
        try:
            return subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--block", *args], env=ray_env(env),
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def start_head(self, num_cpus: float = 0, resources: dict | None = None, *, autoscaling: dict | None = None,
                   dashboard: bool = False, object_store_mb: int = 128, env: dict[str, str] | None = None,
                   timeout_s: float = 180) -> LocalRayCluster:
        """The head node. `autoscaling`: {"worker_types": ..., "idle_timeout_minutes": ...}
        turns on the fake autoscaler with those node types (the head's type is this node)."""
        self.port, self.dashboard_port = free_port(), free_port()
        args = ["--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port), "--num-cpus", str(num_cpus),
                "--num-gpus", "0", "--object-store-memory", str(object_store_mb * 1024**2), "--temp-dir", str(self.root / "ray"),
                "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                "--dashboard-port", str(self.dashboard_port), "--disable-usage-stats"]
        args += ["--include-dashboard=true", "--dashboard-host", "127.0.0.1"] if dashboard else ["--include-dashboard=false"]
        if resources:
            args += ["--resources", json.dumps(resources)]
        extra = dict(env or {})
        if autoscaling is not None:
            config = autoscaling_config({"CPU": num_cpus, **(resources or {})}, autoscaling["worker_types"], self.address,
                                        autoscaling.get("idle_timeout_minutes", 0.1), autoscaling.get("max_workers", 8))
            if autoscaling.get("v2"):
                config["provider"].update(launch_multiple=True, head_node_id=FAKE_HEAD_NODE_ID)
                extra.update(RAY_enable_autoscaler_v2="1", RAY_CLOUD_INSTANCE_ID=FAKE_HEAD_NODE_ID,
                             RAY_OVERRIDE_NODE_ID_FOR_TESTING=FAKE_HEAD_NODE_ID)
            path = self.root / "autoscaling.json"
            path.write_text(json.dumps(config))
            args += [f"--autoscaling-config={path}"]
            extra.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
        self.head = Node(self._start(args, "head.log", extra), {"CPU": num_cpus, **(resources or {})}, self.root / "head.log")
        self._wait(lambda: self._alive_nodes() >= 1, timeout_s, "the head")
        return self

    def add_worker(self, num_cpus: float = 1, num_gpus: float = 0, resources: dict | None = None,
                   object_store_mb: int = 96, wait: bool = True, timeout_s: float = 180) -> Node:
        """A worker node joining the head (its own raylet and worker processes)."""
        before = self._alive_nodes()
        args = ["--address", self.address, "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus),
                "--num-gpus", str(num_gpus), "--object-store-memory", str(object_store_mb * 1024**2),
                "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats"]
        if resources:
            args += ["--resources", json.dumps(resources)]
        name = f"worker-{len(self.workers)}.log"
        node = Node(self._start(args, name, None), {"CPU": num_cpus, "GPU": num_gpus, **(resources or {})}, self.root / name)
        self.workers.append(node)
        if wait:
            def joined() -> bool:
                if node.process.poll() is not None:
                    raise RuntimeError(f"a worker node's `ray start` exited: {node.log.read_text()[-2000:]}")
                return self._alive_nodes() > before

            self._wait(joined, timeout_s, "a worker node")
        return node

    def kill_worker(self, node: Node) -> None:
        """The node dies at once (SIGKILL: no drain), as a lost machine or reclaimed spot node."""
        kill_session(node.process)

    def stop(self) -> None:
        for node in [*self.workers, *([self.head] if self.head else [])]:
            kill_session(node.process, graceful_s=5 if node is self.head else 0)
        for _ in range(3):  # a process that was still dying may have written one more file
            shutil.rmtree(self.root, ignore_errors=True)
            if not self.root.exists():
                break
            time.sleep(0.5)

    def _alive_nodes(self) -> int:
        """Alive nodes, asked of the GCS by a short `ray` CLI-free probe (no driver here)."""
        from ray._raylet import GcsClient

        try:
            client = GcsClient(address=self.address)
            return sum(1 for info in client.get_all_node_info(timeout=2).values() if info.state == 0)
        except Exception:  # not up yet
            return 0

    def _wait(self, done, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if self.head is not None and self.head.process.poll() is not None:
                raise RuntimeError(f"the Ray head exited: {self.head.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not come up within {timeout_s:g} s")
            time.sleep(0.3)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
