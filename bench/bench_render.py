"""End-to-end offline render through the real CLI, Ray start-up included.

    python bench/bench_render.py                      # 45 s at 360p, 3 runs
    python bench/bench_render.py -d 60 --resolution 720p --repeat 1

Each run is `python -m longvid.cli render PROMPT -d D --resolution R -o TMP/fox.mp4
--runs-dir TMP/runs --json` in a fresh subprocess (so Ray starts and stops every time, as
for a user). Measured per run: wall time of the subprocess (perf_counter), the pipeline's
own wall_s from the JSON, the memory and CPU of the whole process tree (Ray's GCS, raylet
and workers included; sampled from /proc), and wait4's max RSS of the largest single
process. The output is decoded with longvid.media.probe and checked against the request.

Then, unless --no-baseline, the same spec once through the same RenderPipeline with the
InlineSegmentRunner (no Ray: segments one after another in one process), so Ray's cost
shows as a ratio measured on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proctree import MB, Measured, run_measured, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a red fox explores a snowy forest at dawn"

INLINE_CODE = r"""
import json, sys
from pathlib import Path
from longvid.spec import RenderSpec
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
prompt, duration, resolution, out, runs = sys.argv[1:6]
spec = RenderSpec(prompt=prompt, duration_s=float(duration), resolution=resolution)
result = RenderPipeline(LocalRunStore(Path(runs)), InlineSegmentRunner()).render(spec, output=Path(out))
print(json.dumps(result.to_dict()))
"""


def child_env() -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # always an in-process Ray, as `longvid render` on a laptop
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def parse_json(stdout: str) -> dict:
    # The CLI prints one indented JSON document on stdout; take from the first brace.
    start = stdout.find("{")
    if start < 0:
        raise ValueError("no JSON on stdout")
    return json.loads(stdout[start:])


def expected_geometry(duration: float, resolution: str) -> tuple[int, int, int]:
    from longvid.spec import RenderSpec

    spec = RenderSpec(prompt=PROMPT, duration_s=duration, resolution=resolution)
    width, height = spec.frame_size
    return spec.total_frames, width, height


def one_run(label: str, cmd: list[str], out: Path, timeout: float) -> dict:
    m: Measured = run_measured(cmd, cwd=str(ROOT), env=child_env(), timeout=timeout, interval=0.1)
    row = {"label": label, "m": m, "ok": m.returncode == 0}
    if m.returncode != 0:
        row["error"] = f"exit {m.returncode}: " + (m.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return row
    try:
        row["json"] = parse_json(m.stdout)
    except ValueError as exc:
        row["ok"], row["error"] = False, f"bad JSON: {exc}"
        return row
    from longvid.media import probe

    row["probe"] = probe(out)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", "--duration", type=float, default=45.0, help="video length in seconds (default %(default)g)")
    ap.add_argument("--resolution", default="360p", choices=["360p", "480p", "720p", "1080p"], help="(default %(default)s)")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--target", type=float, default=60.0, help="wall-time target in seconds (default %(default)g)")
    ap.add_argument("--repeat", type=int, default=3, help="Ray CLI runs (default %(default)s)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the in-process, no-Ray comparison run")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-run limit in seconds")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder with the outputs")
    args = ap.parse_args()

    frames_wanted, width, height = expected_geometry(args.duration, args.resolution)
    tmp = Path(tempfile.mkdtemp(prefix="longvid-bench-render-"))
    print(f"render: {args.duration:g} s at {args.resolution} ({width}x{height}), prompt {args.prompt!r}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, temp {tmp}")

    rows = []
    for i in range(args.repeat):
        out = tmp / f"ray{i}" / "fox.mp4"
        cmd = [sys.executable, "-m", "longvid.cli", "render", args.prompt, "-d", f"{args.duration:g}",
               "--resolution", args.resolution, "-o", str(out), "--runs-dir", str(tmp / f"ray{i}" / "runs"), "--json"]
        if i == 0:
            print("command: " + " ".join(cmd[:4] + [repr(args.prompt)] + cmd[5:]))
        row = one_run(f"ray #{i + 1}", cmd, out, args.timeout)
        rows.append(row)
        print(f"  {row['label']}: {row['m'].wall_s:.1f} s" + ("" if row["ok"] else f"  FAILED {row['error']}"), flush=True)
    if not args.no_baseline:
        out = tmp / "inline" / "fox.mp4"
        cmd = [sys.executable, "-c", INLINE_CODE, args.prompt, f"{args.duration:g}", args.resolution, str(out), str(tmp / "inline" / "runs")]
        row = one_run("inline, no Ray", cmd, out, args.timeout)
        rows.append(row)
        print(f"  {row['label']}: {row['m'].wall_s:.1f} s" + ("" if row["ok"] else f"  FAILED {row['error']}"), flush=True)

    def mb(v):
        return "-" if v is None else f"{v / MB:.0f}"

    headers = ["run", "wall s", "pipeline s", "start+stop s", "wall/target", "frames", "probe", "size", "segs",
               "merge s", "copied", "encoded", "tree RSS MB", "tree PSS MB", "max proc MB", "tree CPU s", "procs"]
    body = []
    failures = []
    for row in rows:
        m = row["m"]
        if not row["ok"]:
            body.append([row["label"], f"{m.wall_s:.1f}"] + ["FAILED"] + ["-"] * (len(headers) - 3))
            failures.append(f"{row['label']}: {row['error']}")
            continue
        j, p = row["json"], row["probe"]
        merge = j.get("merge", {})
        body.append([
            row["label"], f"{m.wall_s:.2f}", f"{j['wall_s']:.2f}", f"{m.wall_s - j['wall_s']:.2f}", f"{m.wall_s / args.target:.3f}",
            str(j["frames"]), str(p.frames), f"{p.width}x{p.height}", str(j["segments"]),
            f"{merge.get('seconds', float('nan')):.3f}", str(merge.get("copied_frames", "-")), str(merge.get("encoded_frames", "-")),
            mb(m.tree.peak_rss), mb(m.tree.peak_pss), mb(m.maxrss_bytes), f"{m.tree.cpu_total_s:.1f}", str(m.tree.peak_processes),
        ])
        for what, got, want in (("frames (JSON)", j["frames"], frames_wanted), ("frames (decoded)", p.frames, frames_wanted),
                                ("width", p.width, width), ("height", p.height, height), ("fps", p.fps, float(j["fps"]))):
            if got != want:
                failures.append(f"{row['label']}: {what} {got}, expected {want}")
    print()
    print(table(headers, body))

    ray = [r for r in rows if r["ok"] and r["label"].startswith("ray")]
    inline = next((r for r in rows if r["ok"] and r["label"].startswith("inline")), None)
    print()
    if ray:
        walls = [r["m"].wall_s for r in ray]
        med = statistics.median(walls)
        pipe = statistics.median(r["json"]["wall_s"] for r in ray)
        merge_s = statistics.median(r["json"]["merge"]["seconds"] for r in ray)
        pss = [r["m"].tree.peak_pss for r in ray if r["m"].tree.peak_pss]
        summary = [
            ["wall (median of %d Ray runs)" % len(ray), f"{med:.2f} s"],
            ["wall (min / max)", f"{min(walls):.2f} / {max(walls):.2f} s"],
            ["target", f"{args.target:g} s"],
            ["ratio wall / target", f"{med / args.target:.3f}" + ("  (within target)" if med <= args.target else "  (OVER target)")],
            ["video seconds per wall second", f"{args.duration / med:.2f}"],
            ["Ray start-up + shutdown + imports (wall - pipeline)", f"{med - pipe:.2f} s ({(med - pipe) / med:.0%} of wall)"],
            ["merge (median)", f"{merge_s:.3f} s ({merge_s / med:.1%} of wall)"],
            ["frames", f"{ray[0]['json']['frames']} (expected {frames_wanted}; decoded {ray[0]['probe'].frames})"],
            ["peak tree PSS (median)", f"{statistics.median(pss) / MB:.0f} MB" if pss else "n/a"],
        ]
        if inline is not None:
            iw = inline["m"].wall_s
            summary += [
                ["inline, no Ray: wall", f"{iw:.2f} s"],
                ["ratio Ray wall / inline wall", f"{med / iw:.3f}"],
                ["ratio Ray tree CPU / inline CPU", f"{statistics.median(r['m'].tree.cpu_total_s for r in ray) / max(inline['m'].tree.cpu_total_s, 1e-9):.2f}"],
            ]
        print(table(["figure", "value"], summary, right={1}))
    print()
    print("notes: 'tree' figures sum every process under the CLI (Ray GCS, raylet, workers), sampled every 0.1 s;")
    print("       PSS shares pages between processes fairly, RSS counts shared pages once per process.")
    print("       'max proc MB' is wait4's ru_maxrss: the largest single process the CLI reaped (Ray workers are the")
    print("       raylet's children and may not be included). CPU is summed per process up to its last sample.")
    if failures:
        print("\nFAILED CHECKS:")
        for f in failures:
            print("  " + f)
    if args.keep:
        print(f"\nkept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures or not ray else 0


if __name__ == "__main__":
    sys.exit(main())
