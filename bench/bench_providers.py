"""A 45 s render through a fake Runway with a fixed per-task latency, on Ray, next to the
ideal (one task's latency plus planning and merge) and a strictly sequential run of the
same segments, in one run.

    python bench/bench_providers.py [--latency-polls 7] [--poll-interval 0.25] [--duration 45]
    python bench/bench_providers.py --latency 20 --poll-interval 1 --provider-style --scale 0.5 --only-parallel

The fake is longvid's own (longvid.testing.fake_runway) on 127.0.0.1; the real Runway
client does the HTTP. With --latency L each task takes L seconds of wall time at the fake
from its creation, as at the real service, whose servers make the clip meanwhile: here an
untimed warm-up render first fills the fake with every clip (kept by prompt, seed, size and
image), Ray is restarted, and the timed runs get finished files at L without the fake
encoding on the two cores the render runs on. Without --latency each task takes
(polls + 1) polls and the clip is made when it is downloaded (the client's time then
includes the fake's encoding).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def normalising_cpu_s(root: Path, jobs) -> float:
    """CPU seconds (this process's, x264's threads included) to normalise each provider clip
    the render kept (segments/seg_NNNN.original.mp4), as its normalisation task does."""
    from longvid.runtime.layout import original_path
    from longvid.runtime.normalisation import normalise_segment

    total = 0.0
    for job in jobs:
        (original,) = root.glob(f"*/{original_path(job.index)}")
        started = time.process_time()
        normalise_segment(job, original.read_bytes(), want_seam=False)
        total += time.process_time() - started
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-polls", type=int, default=7)
    parser.add_argument("--poll-interval", type=float, default=0.25)
    parser.add_argument("--latency", type=float, default=None,
                        help="each task takes this many seconds from its creation (wall time); its clip is made by an untimed warm-up render")
    parser.add_argument("--duration", type=float, default=45)
    parser.add_argument("--resolution", default="360p")
    parser.add_argument("--scale", type=float, default=0.25, help="the fake's clip size as a fraction of 1280x720 (default %(default)s)")
    parser.add_argument("--provider-style", action="store_true",
                        help="clips from another encoder with AAC, as Runway's are: each is normalised as it arrives")
    parser.add_argument("--only-parallel", action="store_true", help="only the unlimited parallel run")
    args = parser.parse_args()

    from longvid.testing.fake_runway import DEFAULT_KEY, start_fake_runway

    server, fake = start_fake_runway(pending_polls=1, running_polls=args.latency_polls - 1, scale=args.scale,
                                      provider_style=args.provider_style, task_latency_s=args.latency,
                                      keep_clips=args.latency is not None)
    os.environ.update(RAY_AUTH_MODE="disabled")
    provider_env = {"RUNWAYML_BASE_URL": server.url, "RUNWAYML_API_SECRET": DEFAULT_KEY,
                    "LONGVID_POLL_INTERVAL_S": str(args.poll_interval)}
    import ray

    from longvid.providers import create_provider, generate
    from longvid.runtime import ClusterCapacity, LocalRunStore, RaySegmentRunner, RenderPipeline, ensure_ray
    from longvid.settings import Settings
    from longvid.spec import RenderSpec

    ray_started = time.perf_counter()
    ensure_ray(num_cpus=2)  # what `longvid render` pays first, unless RAY_ADDRESS names a running cluster
    ray_start_s = time.perf_counter() - ray_started
    spec = RenderSpec(prompt="a lighthouse on a cliff at night", duration_s=args.duration, resolution=args.resolution,
                      provider="runway", judge="off", continuity="anchor")
    started = time.perf_counter()
    settings = Settings.from_env(provider_env)
    planned = RenderPipeline(settings=settings).plan(spec)
    jobs = planned.jobs
    planning_s = time.perf_counter() - started

    rows = []
    folder = Path(tempfile.mkdtemp(prefix="longvid-bench-providers-"))
    if args.latency is not None:
        started = time.perf_counter()
        RenderPipeline(LocalRunStore(folder / "warm-up"), RaySegmentRunner(), settings=settings).render(spec, planned=planned)
        print(f"warm-up render (untimed; {fake.kept_clips()} clips kept by the fake): {time.perf_counter() - started:.2f} s")
        ray.shutdown()  # the timed runs start their Ray workers afresh, as a `longvid render` does
        ensure_ray(num_cpus=2)

    provider = create_provider("runway", settings)
    started = time.perf_counter()
    generate(provider, jobs[0], poll_interval_s=args.poll_interval)
    latency_s = time.perf_counter() - started

    class OneAtATime(RaySegmentRunner):
        def capacity(self, autoscaling=None) -> ClusterCapacity:
            return ClusterCapacity(cpus=0.25, gpus=0, memory_bytes=super().capacity(False).memory_bytes)

    # The provider gate (a named Ray actor) caps tasks in flight per provider account across
    # the cluster: unlimited, then a limit of 2, show what the cap costs.
    runs = (("parallel (Ray, admission)", RaySegmentRunner(), "0"), ("parallel, gate limit 2", RaySegmentRunner(), "2"),
            ("sequential (one at a time)", OneAtATime(), "0"))[: 1 if args.only_parallel else 3]
    for number, (label, runner, limit) in enumerate(runs):
        fake.reset()
        limited = Settings.from_env({**provider_env, "LONGVID_MAX_CONCURRENT_RUNWAY": limit})
        started = time.perf_counter()
        result = RenderPipeline(LocalRunStore(folder / str(number)), runner, settings=limited).render(spec, planned=planned)
        rows.append((label, time.perf_counter() - started, result, fake.counts["create"], fake.most_in_flight()))
        if args.latency is not None and fake.counts["render"]:  # a key the warm-up did not make: its encoding was timed
            print(f"WARNING: the fake encoded {fake.counts['render']} clip(s) during the timed run '{label}' "
                  "(on these cores): its wall counts them")
    merge = rows[0][2].merge
    ideal = latency_s + planning_s + (merge.seconds - merge.ahead_s)  # the merge's part after the last segment
    task = f"{args.latency:g} s per task" if args.latency is not None else f"{args.latency_polls} polls x {args.poll_interval:g} s"
    print(f"fake Runway: {task}, polled every {args.poll_interval:g} s; one task end to end: {latency_s:.2f} s; "
          f"{len(jobs)} segments; planning {planning_s * 1000:.0f} ms")
    print(f"{'run':30s} {'wall s':>8s} {'x ideal':>8s} {'merge s':>8s} {'creates':>8s} {'most at once':>12s}")
    print(f"{'ideal (1 latency + plan + merge)':30s} {ideal:8.2f} {1.0:8.2f}")  # merge: its part after the last segment
    for label, wall, result, creates, most in rows:
        print(f"{label:30s} {wall:8.2f} {wall / ideal:8.2f} {result.merge.seconds:8.2f} {creates:8d} {most:12d}")
    print(f"one task's latency L = {latency_s:.2f} s; parallel wall - L = {rows[0][1] - latency_s:.2f} s; "
          f"merge {merge.seconds:.2f} s of which {merge.ahead_s:.2f} s ahead (while segments generated)")
    sound = rows[0][2].sound or {}
    if sound.get("step_s"):  # the steps overlap ("verify" runs beside "encode_mux"): the wall is add_sound's own
        print(f"soundtrack after the merge: {sound['wall_s']:.2f} s "
              f"({', '.join(f'{k} {v:.2f}' for k, v in sound['step_s'].items())})")
    if args.provider_style:
        cpu_s = normalising_cpu_s(folder / "0", jobs)
        cores = int(ray.cluster_resources().get("CPU", 1))
        print(f"normalising the {len(jobs)} clips (run again here, one at a time): {cpu_s:.2f} CPU s; with every clip "
              f"arriving at L, no render on {cores} cores ends sooner than {cpu_s / cores:.2f} s after L from them alone")
    print(f"Ray start-up in-process (before the walls above; not paid with RAY_ADDRESS): {ray_start_s:.2f} s")
    if len(rows) == 3:
        print(f"sequential / parallel: {rows[2][1] / rows[0][1]:.2f}x; limit 2 / unlimited: {rows[1][1] / rows[0][1]:.2f}x")
    shutil.rmtree(folder, ignore_errors=True)
    server.stop()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
