"""The Grafana dashboard and the Prometheus scrape settings: the dashboard loads, and every
query names a metric that exists (longvid's from the code's catalogue, Ray's from the
installed Ray's own dashboards); every Ray node of the cluster launcher and of the KubeRay
manifests exports metrics on a known port that Prometheus is told to scrape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ray
import yaml

from longvid.observability.metrics import CATALOGUE, exported_series

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "longvid-dashboard.json"
METRIC = re.compile(r"\b(ray_[A-Za-z0-9_]+)\b")
METRICS_PORT = 8080


def ray_dashboard_series() -> str:
    """The text of the installed Ray's own Grafana panels: the metric names Ray exports."""
    folder = Path(ray.__file__).parent / "dashboard" / "modules" / "metrics" / "dashboards"
    return "\n".join(p.read_text() for p in folder.glob("*_panels.py"))


def test_dashboard_loads_and_queries_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert dashboard["title"] and dashboard["uid"] and len({p["id"] for p in panels}) == len(panels)
    assert any(v["type"] == "datasource" for v in dashboard["templating"]["list"])
    ours, rays = exported_series(), ray_dashboard_series()
    used = set()
    for panel in panels:
        assert panel["title"] and panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = METRIC.findall(target["expr"])
            assert names, (panel["title"], target["expr"])
            for name in names:
                if name.startswith("ray_longvid_"):
                    assert name in ours, f"{panel['title']}: {name} is not a metric longvid exports"
                else:
                    assert re.search(rf"\b{name}\b", rays), f"{panel['title']}: {name} is not one of Ray's metrics"
                used.add(name)
    # Every application metric is on the dashboard.
    for spec in CATALOGUE.values():
        assert used & set(spec.prometheus_names()), f"{spec.name} is on no panel"
    assert {"ray_node_gpus_utilization", "ray_tasks"} <= used  # how busy the GPUs are, Ray's task states


def _ray_clusters():
    for path in sorted((REPO / "deploy" / "kuberay").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "RayService":
                yield doc["spec"]["rayClusterConfig"]
            elif doc and doc["kind"] == "RayJob":
                yield doc["spec"]["rayClusterSpec"]


def test_kuberay_pods_export_metrics_where_prometheus_scrapes():
    groups = [group for spec in _ray_clusters() for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]]
    assert len(groups) >= 4
    for group in groups:
        assert group["rayStartParams"]["metrics-export-port"] == str(METRICS_PORT)
        template = group["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(METRICS_PORT)
        for container in template["spec"]["containers"]:
            assert {"containerPort": METRICS_PORT, "name": "metrics"} in container["ports"]
    (monitor,) = [d for d in yaml.safe_load_all((REPO / "deploy" / "kuberay" / "podmonitor.yaml").read_text()) if d]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "PodMonitor"
    assert monitor["spec"]["selector"]["matchLabels"] == {"ray.io/is-ray-node": "yes"}  # KubeRay labels every Ray pod so
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]


def test_cluster_launcher_nodes_export_metrics_and_prometheus_finds_them():
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    for command in cluster["head_start_ray_commands"][1:] + cluster["worker_start_ray_commands"][1:]:
        assert f"--metrics-export-port={METRICS_PORT}" in command
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    # The file Ray's head writes with every node's metrics address.
    from ray._private.ray_constants import PROMETHEUS_SERVICE_DISCOVERY_FILE

    assert job["file_sd_configs"][0]["files"] == [f"/tmp/ray/{PROMETHEUS_SERVICE_DISCOVERY_FILE}"]
