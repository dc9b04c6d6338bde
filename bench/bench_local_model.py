"""Segments per minute with the local model resident vs loaded again for every segment.

    python bench/bench_local_model.py                 # 4 chained segments, each way, one run
    python bench/bench_local_model.py --segments 6 --steps 4

On the CPU with a tiny random LTX-Video model (built into a temp folder, nothing downloaded),
the same segments (128x72, 12 fps, ~1.4 s each, each chained on the previous one's last 9
frames) are made three ways:

  resident   one ModelWorker (what the Ray actor holds): the pipeline loads once;
  reload     a new ModelWorker per segment in the same process: from_pretrained every time;
  process    a fresh Python process per segment (imports + load + generate): what a Ray GPU
             task pays with Ray's default for GPU tasks (max_calls=1: a new worker each time).

The tiny model loads in a fraction of a second, so `reload` shows little here; a real model's
load (multi-GB weights to the GPU) is tens of seconds, which is what `process` hints at with
its import cost alone. The ratios are the point, from one run; the seconds are noisy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def jobs(count: int):
    from longvid.providers.local.profiles import LTX_VIDEO
    from longvid.spec import Scene, SegmentJob

    fps, frames, tail = 12, 16, 2
    rule = LTX_VIDEO.durations()
    return [SegmentJob(index=i, scene_index=0, segment_in_scene=i, prompt="a red fox in the snow", scene=Scene(description="a fox"),
                       start_frame=i * frames, frames=frames, head_frames=0 if i == 0 else 2, tail_frames=tail, scene_offset_s=0.0,
                       generate_duration_s=rule.fit((frames + tail) / fps, fps), fps=fps, width=128, height=72, seed=i,
                       keyframe_density=0.5, conditioned_on=i - 1 if i else None) for i in range(count)]


def make_segments(model: Path, count: int, steps: int, fresh_worker: bool) -> float:
    """Make `count` chained segments; returns the seconds it took."""
    from longvid.providers.local.loader import load_spec
    from longvid.providers.local.worker import ModelWorker
    from longvid.runtime.conditioning import chain_conditioning
    from longvid.settings import LocalModelSettings

    spec = load_spec(LocalModelSettings(model_dir=model))
    worker = None
    conditioning = None
    started = time.perf_counter()
    for job in jobs(count):
        if worker is None or fresh_worker:
            worker = ModelWorker(spec, steps)
        clip = worker.generate(job, conditioning)
        conditioning = chain_conditioning(clip.mp4, job.frames, spec.profile.conditioning_frames)
    return time.perf_counter() - started


def one_segment_in_a_new_process(model: Path, index: int, steps: int) -> None:
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path; "
            f"from bench.bench_local_model import make_segments; make_segments(Path({str(model)!r}), 1, {steps}, False)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    from longvid.testing.tiny_models import build_tiny_ltx

    model = build_tiny_ltx(Path(tempfile.mkdtemp(prefix="longvid-bench-local-")) / "tiny-ltx")
    make_segments(model, 1, args.steps, False)  # warm-up: first-call costs (kernels, caches) out of the figures
    n = args.segments
    resident = make_segments(model, n, args.steps, fresh_worker=False)
    reload = make_segments(model, n, args.steps, fresh_worker=True)
    started = time.perf_counter()
    for i in range(n):
        one_segment_in_a_new_process(model, i, args.steps)
    process = time.perf_counter() - started

    print(f"{n} chained segments of 128x72, 12 fps, tiny random LTX-Video, {args.steps} steps, CPU")
    print(f"  {'way':10s} {'seconds':>8s} {'segments/min':>13s} {'vs resident':>12s}")
    for name, seconds in (("resident", resident), ("reload", reload), ("process", process)):
        print(f"  {name:10s} {seconds:8.1f} {60 * n / seconds:13.1f} {seconds / resident:11.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
