"""The application's metrics, declared once, emitted through `ray.util.metrics`.

Ray's metrics agent on each node exports them to Prometheus (as `ray_<name>`, counters with
`_total`, histograms with `_bucket`/`_sum`/`_count`); longvid runs no metrics server of its
own. Tags are bounded (provider, model, state, outcome, code), never a run id, so the number
of series does not grow with the number of renders.

Metrics are created lazily in each process that records one (the driver, a segment task,
a gate actor) and are a no-op outside Ray (unit tests with the inline runner, `longvid plan`).
Recording never fails a render: an error here is dropped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

PREFIX = "ray_"  # what Ray's exporter puts before every application metric's name


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # "counter", "gauge" or "histogram"
    description: str
    tags: tuple[str, ...]
    boundaries: tuple[float, ...] = ()

    def prometheus_names(self) -> tuple[str, ...]:
        """The series names Prometheus shows for this metric."""
        base = PREFIX + self.name
        if self.kind == "counter":
            return (base + "_total",)
        if self.kind == "histogram":
            return (base + "_bucket", base + "_sum", base + "_count")
        return (base,)


_SECONDS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
_WAIT_SECONDS = (0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
_UNIT = tuple(round(0.1 * i, 1) for i in range(1, 11))

CATALOGUE: dict[str, MetricSpec] = {spec.name: spec for spec in (
    MetricSpec("longvid_renders_started", "counter", "Renders (and resumes) started", ("provider",)),
    MetricSpec("longvid_renders_finished", "counter", "Renders finished with a merged video", ("provider",)),
    MetricSpec("longvid_renders_failed", "counter", "Renders that ended without a video, by reason", ("provider", "reason")),
    MetricSpec("longvid_segments", "counter", "Segments by final outcome in a render invocation", ("provider", "model", "outcome")),
    MetricSpec("longvid_provider_task_seconds", "histogram", "Provider task latency, create call to bytes downloaded",
               ("provider", "model"), _SECONDS),
    MetricSpec("longvid_queue_wait_seconds", "histogram",
               "Waiting before work: for a provider gate slot or breaker probe (stage=gate), THROTTLED at the provider (stage=throttled)",
               ("provider", "stage"), _WAIT_SECONDS),
    MetricSpec("longvid_provider_errors", "counter", "Failed provider calls and tasks by failure code", ("provider", "code")),
    MetricSpec("longvid_cost_usd", "counter", "Money committed at paid providers (the ledger's charges), USD", ("provider",)),
    MetricSpec("longvid_judge_verdicts", "counter", "Judge verdicts on generated segments", ("backend", "verdict")),
    MetricSpec("longvid_judge_score", "histogram", "Judge scores per check (quality is the overall one)", ("backend", "check"), _UNIT),
    MetricSpec("longvid_regenerations", "counter", "Segments the judge sent back for a new seed", ("provider",)),
    MetricSpec("longvid_merge_seconds", "histogram", "Time to merge a render's segments into its video", (), _SECONDS),
    MetricSpec("longvid_normalise_seconds", "histogram", "Time to normalise a segment before the merge", (), _SECONDS),
    MetricSpec("longvid_gpu_seconds", "counter", "GPU-seconds granted to segment tasks (local models)", ("provider", "model")),
    MetricSpec("longvid_breaker_state", "gauge", "Circuit breaker per provider account: 0 closed, 1 half open, 2 open",
               ("provider", "account")),
    MetricSpec("longvid_segments_in_flight", "gauge", "Provider slots held per provider account (what the concurrency gate enforces)",
               ("provider", "account")),
)}

BREAKER_LEVEL = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_MAX_TAG = 64

_created: dict[str, object] = {}
_lock = threading.Lock()


def exported_series() -> set[str]:
    """Every Prometheus series name the code exports (the dashboard's queries may use these)."""
    return {name for spec in CATALOGUE.values() for name in spec.prometheus_names()}


def _ray_metric(spec: MetricSpec):
    """This process's Ray metric for `spec`, created on first use; None outside Ray."""
    import ray

    if not ray.is_initialized():
        return None
    with _lock:
        if spec.name not in _created:
            from ray.util import metrics

            if spec.kind == "counter":
                made = metrics.Counter(spec.name, description=spec.description, tag_keys=spec.tags)
            elif spec.kind == "gauge":
                made = metrics.Gauge(spec.name, description=spec.description, tag_keys=spec.tags)
            else:
                made = metrics.Histogram(spec.name, description=spec.description, boundaries=list(spec.boundaries),
                                         tag_keys=spec.tags)
            _created[spec.name] = made
        return _created[spec.name]


def _record(name: str, method: str, value: float, tags: dict[str, object]) -> None:
    spec = CATALOGUE[name]
    try:
        metric = _ray_metric(spec)
        if metric is None:
            return
        values = {key: str(tags.get(key) if tags.get(key) is not None else "none")[:_MAX_TAG] for key in spec.tags}
        getattr(metric, method)(value, tags=values)
    except Exception:  # a metric is never worth a failed render
        pass


def inc(name: str, value: float = 1.0, **tags: object) -> None:
    if value > 0:
        _record(name, "inc", float(value), tags)


def observe(name: str, value: float, **tags: object) -> None:
    _record(name, "observe", max(0.0, float(value)), tags)


def set_gauge(name: str, value: float, **tags: object) -> None:
    _record(name, "set", float(value), tags)
