"""A Serve Renderer replica killed mid-render: how long until a live replica has taken the
render over and finished it.

Each run is tests/cluster_child.py's `replica-kill` scenario on a fresh single-node Ray: the
Serve app with two Renderer replicas, a 5 s 360p Runway render (the fake Runway on loopback)
submitted over HTTP, SIGKILL to the replica holding the run's lease while both segments wait
on Runway. Prints, per run: Serve start-up, seconds from the kill until the render was done,
whether the survivor or a restarted replica took it, Runway creates per segment, event-stream
connections. `--control` runs once more with adoption off (LONGVID_ADOPT_AFTER_S past the
120 s after which a render is shown interrupted), as the product was before serve/adoption.py.

    python bench/bench_replica_kill.py [--repeat 2] [--adopt-after 6] [--control]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(adopt_after_s: float, wait_s: float) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("RAY_ADDRESS", None)
    with tempfile.TemporaryDirectory(prefix="lv-replica-kill-") as work:
        done = subprocess.run([sys.executable, str(REPO / "tests" / "cluster_child.py"), "replica-kill", work,
                               str(adopt_after_s), str(wait_s)], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--adopt-after", type=float, default=6.0, help="LONGVID_ADOPT_AFTER_S for the replicas")
    parser.add_argument("--control", action="store_true", help="also one run with adoption off (waits 45 s after the kill)")
    args = parser.parse_args()
    runs = [("adoption", args.adopt_after, 120.0)] * args.repeat + ([("control", 1000.0, 45.0)] if args.control else [])
    for label, adopt_after_s, wait_s in runs:
        seen = run(adopt_after_s, wait_s)
        print(json.dumps({"run": label, **{k: v for k, v in seen.items() if k != "events"}}), flush=True)
        connects = sum(1 for e in seen["events"] if e[0] == "connect")
        print(f"{label}: serve up {seen['serve_up_s']} s; killed at {seen['killed_at_tasks']} tasks; status "
              f"{seen['status']} {seen['recovered_s']} s after the kill (taken by "
              f"{'the survivor' if seen['new_holder_survivor'] else 'a restarted replica' if seen['new_holder_is_replica'] else 'nobody'}); "
              f"creates {seen['creates']} for {seen['segments']} segments; event stream connections {connects}; "
              f"total {seen['total_s']} s", flush=True)


if __name__ == "__main__":
    main()
