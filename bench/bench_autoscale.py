"""Scale-up and scale-down times with Ray's fake multi-node autoscaler and cluster.yaml's node
types (a head that runs no tasks, CPU workers, GPU workers from zero).

Two renders (5 s, 360p, 12 fps), each on a fresh cluster whose only node is the head:
- `local`: the local provider with a tiny random LTX-Video model (built here, no download),
  LONGVID_LOCAL_DEVICE=cuda as cluster.yaml sets it: the resident model worker asks for a GPU,
  the autoscaler launches a GPU node, the worker loads the model there (on its CPU: the fake
  node's GPU is a number) and makes every segment;
- `gpu-preview`: a test provider whose segment tasks themselves ask for half a GPU.

Prints, per render: head start, seconds from the render's start until the GPU node was up
(scale-up), render wall time, where the model worker / segments ran, and seconds from the
driver's exit until the idle GPU node was terminated (scale-down; idle timeout 0.1 min).

    python bench/bench_autoscale.py [--only local|gpu-preview]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from longvid.testing.ray_cluster import run_stoppable  # noqa: E402  (after the checkout is on the path)


def run(kind: str, model_dir: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("RAY_ADDRESS", None)
    with tempfile.TemporaryDirectory(prefix="lv-autoscale-") as work:
        # SIGTERM past 280 s (the child stops its cluster; its own alarm is at 240 s), SIGKILL after 20 s more.
        done = run_stoppable([sys.executable, str(REPO / "tests" / "cluster_child.py"), "autoscale",
                              model_dir if kind == "local" else "-", work], env, timeout_s=280)
    if done.returncode != 0:
        raise SystemExit(f"{kind}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["local", "gpu-preview"], default=None)
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["local", "gpu-preview"]
    with tempfile.TemporaryDirectory(prefix="lv-tiny-") as folder:
        model_dir = ""
        if "local" in kinds:
            from longvid.testing.tiny_models import build_tiny_ltx

            model_dir = str(build_tiny_ltx(Path(folder) / "tiny-ltx"))
        for kind in kinds:
            seen = run(kind, model_dir)
            print(json.dumps({"provider": kind, **seen}), flush=True)
            where = seen.get("worker") or {"segments": seen["segment_resources"]}
            print(f"{kind}: head {seen['head_s']} s, scale-up {seen['scale_up_s']} s, render {seen['render_s']} s, "
                  f"scale-down {seen['scale_down_s']} s after the driver left; GPU node(s) {len(seen['gpu_nodes'])}; "
                  f"ran with {where}", flush=True)


if __name__ == "__main__":
    main()
