"""A bounded load on the HTTP API over loopback: N plan requests and M renders from 4 tokens,
at most C requests in flight, against `serve.run` on an in-process Ray (2 CPUs) with the
offline planner and the preview renderer. Prints latency percentiles (p50/p95/p99) for plans
and for render submissions, the status codes seen, and how long the renders took to finish;
any 5xx is an error (exit 1).

    python bench/bench_serve_load.py                     # 200 plans + 20 renders, 16 in flight
    python bench/bench_serve_load.py --plans 50 --renders 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

TOKENS = [f"load-bench-token-{i}-7d1e0c2f9a8b4c3d5e6f" for i in range(4)]
PLAN = {"prompt": "a red fox explores a snowy forest at dawn", "duration_s": 10, "resolution": "360p"}
RENDER = {"prompt": "a kite over a beach", "duration_s": 5, "resolution": "360p", "judge": "off", "narration": "off"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]  # noqa: E731
    return {"n": len(values), "p50_ms": round(pick(0.50) * 1000, 1), "p95_ms": round(pick(0.95) * 1000, 1),
            "p99_ms": round(pick(0.99) * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1),
            "mean_ms": round(statistics.fmean(values) * 1000, 1)}


async def load(url: str, plans: int, renders: int, concurrency: int) -> dict:
    import httpx

    gate = asyncio.Semaphore(concurrency)
    timings: dict[str, list[float]] = {"plan": [], "render": []}
    codes: dict[str, Counter] = {"plan": Counter(), "render": Counter()}
    render_ids: list[tuple[str, str]] = []

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        async def call(kind: str, i: int) -> None:
            token = TOKENS[i % len(TOKENS)]
            headers = {"Authorization": f"Bearer {token}"}
            body = PLAN if kind == "plan" else {**RENDER, "seed": i}
            if kind == "render":
                headers["Idempotency-Key"] = f"load-{i}"
            async with gate:
                started = time.perf_counter()
                response = await client.post(f"/v1/{kind}s", json=body, headers=headers)
                timings[kind].append(time.perf_counter() - started)
            codes[kind][response.status_code] += 1
            if kind == "render" and response.status_code in (200, 201, 202):
                render_ids.append((token, response.json()["id"]))

        started = time.perf_counter()
        # Renders interleaved with the plans, so submissions meet a busy API.
        jobs = [call("plan", i) for i in range(plans)]
        step = max(1, plans // max(1, renders))
        for r in range(renders):
            jobs.insert(min(len(jobs), r * (step + 1)), call("render", r))
        await asyncio.gather(*jobs)
        submitted_s = time.perf_counter() - started

        finished, status_codes = {}, Counter()
        deadline = time.monotonic() + 900
        while len(finished) < len(render_ids) and time.monotonic() < deadline:
            for token, run_id in render_ids:
                if run_id in finished:
                    continue
                response = await client.get(f"/v1/renders/{run_id}", headers={"Authorization": f"Bearer {token}"})
                status_codes[response.status_code] += 1
                status = response.json().get("status") if response.status_code == 200 else None
                if status in ("done", "failed", "cancelled"):
                    finished[run_id] = (status, time.perf_counter() - started)
            await asyncio.sleep(1.0)
    return {
        "plans": percentiles(timings["plan"]), "render_posts": percentiles(timings["render"]),
        "codes": {k: dict(v) for k, v in codes.items()}, "status_poll_codes": dict(status_codes),
        "requests_s": round(submitted_s, 1), "requests_per_s": round((plans + renders) / submitted_s, 1),
        "renders_finished": dict(Counter(s for s, _ in finished.values())),
        "all_renders_done_s": round(max((t for _, t in finished.values()), default=0.0), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=200)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    import ray
    from ray import serve

    from longvid.runtime import ensure_ray
    from serve.app import build_app

    ensure_ray(num_cpus=2)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="lv-serve-load-") as folder:
        serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 120})
        per_token = -(-args.renders // len(TOKENS))
        env = {"LONGVID_API_TOKENS": ",".join(TOKENS), "LONGVID_PLANNER": "offline",
               # Limits above the load, so what is measured is latency, not refusals.
               "LONGVID_RATE_LIMIT_PER_MIN": str(10 * (args.plans + args.renders)),
               "LONGVID_MAX_CONCURRENT_RENDERS": str(per_token)}
        serve.run(build_app({"store": str(Path(folder) / "runs")}, runtime_env={"env_vars": env}, num_cpus=0),
                  name="longvid", route_prefix="/")
        try:
            result = asyncio.run(load(f"http://127.0.0.1:{port}", args.plans, args.renders, args.concurrency))
        finally:
            serve.delete("longvid")
            serve.shutdown()
            ray.shutdown()
    print(json.dumps(result, indent=1))
    server_errors = sum(n for kind in result["codes"].values() for code, n in kind.items() if int(code) >= 500)
    server_errors += sum(n for code, n in result["status_poll_codes"].items() if int(code) >= 500)
    print(f"plans p50/p95/p99: {result['plans'].get('p50_ms')}/{result['plans'].get('p95_ms')}/{result['plans'].get('p99_ms')} ms; "
          f"render posts p50/p95/p99: {result['render_posts'].get('p50_ms')}/{result['render_posts'].get('p95_ms')}/"
          f"{result['render_posts'].get('p99_ms')} ms; 5xx: {server_errors}; renders {result['renders_finished']} "
          f"all done after {result['all_renders_done_s']} s")
    sys.exit(1 if server_errors else 0)


if __name__ == "__main__":
    main()
