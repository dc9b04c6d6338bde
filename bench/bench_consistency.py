"""Consistency judge throughput and FramePack compressor cost, side by side in one run.

    python bench/bench_consistency.py                # throughput + compressor
    python bench/bench_consistency.py --calibrate    # + judge scores on clean/drifted preview renders
    python bench/bench_consistency.py --frames 128 --resolution 360p

Judge throughput: frames/s of `scorer.embed` (preprocessing included: 720p RGB uint8 in,
unit embeddings out) at batch sizes 1, 8 and 32, for
  - the structural scorer (weight-free; batch size does not apply: frame by frame),
  - CLIP with the tiny random-weight architecture (longvid-tiny-clip, 64 px input), loaded
    through the real load_clip path from a checkpoint written to a temp folder,
  - CLIP ViT-B-32 when its weights are in the local cache (never downloaded),
each on CPU and, when torch sees a GPU, on CUDA (fp16). One warm-up batch is not timed.
Also: one `ConsistencyJudge.score_segment` on a 5 s preview segment (decode included).

Compressor: FramePackCompressor(lambda_=2, min_side=16) fed 10, 100 and 1000 720p frames
(a cycle of 8 distinct frames rendered beforehand). Reported: wall time, time per push,
levels and pixels held (vs the newest frame), bytes held, and the process's peak RSS
growth during the pushes (sampled from /proc after every push), next to what keeping every
frame would hold.

--calibrate renders preview videos for a few prompts and scores every segment clean and
with injected drift (wrong palette + subject, another lighting, subject only) through the
judge as the pipeline would call it (anchors: the scene's first frame + the video's first
frame; seam: previous tail inside a scene). The thresholds in config.py come from these.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from longvid.consistency import (  # noqa: E402
    TINY_CLIP_NAME,
    ClipScorer,
    ConsistencyJudge,
    FramePackCompressor,
    JudgeConfig,
    StructuralScorer,
    WeightsUnavailable,
    write_tiny_clip_checkpoint,
)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def preview_frames(count: int, width: int, height: int) -> list[np.ndarray]:
    from longvid.planning import OfflinePlanner, segment_storyboard
    from longvid.providers.preview import PREVIEW_CAPABILITIES, render_frames
    from longvid.spec import RenderSpec

    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=10, resolution="360p")
    job = segment_storyboard(OfflinePlanner().plan(spec, 2), spec, PREVIEW_CAPABILITIES.durations)[0]
    job = job.model_copy(update={"width": width, "height": height})
    frames = list(render_frames(job, frame_count=min(count, 8) * 6))[::6]
    return [frames[i % len(frames)] for i in range(count)]


def time_embed(scorer, frames, batch: int) -> float:
    scorer.batch_size = batch
    scorer.embed(frames[:batch])  # warm-up
    started = time.perf_counter()
    if isinstance(scorer, StructuralScorer):
        scorer.embed(frames)
    else:
        for i in range(0, len(frames), batch):
            scorer.embed(frames[i : i + batch])
    return len(frames) / (time.perf_counter() - started)


def judge_section(args, frames) -> None:
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    tmp = Path(tempfile.mkdtemp(prefix="longvid-bench-consistency-"))
    ckpt = write_tiny_clip_checkpoint(tmp / "tiny.pt")
    scorers = [("structural", "cpu", StructuralScorer())]
    for device in devices:
        scorers.append((f"CLIP {TINY_CLIP_NAME}", device, ClipScorer(JudgeConfig(backend="clip", model_name=TINY_CLIP_NAME, checkpoint_path=ckpt, device=device))))
        try:
            scorers.append(("CLIP ViT-B-32 (cache)", device, ClipScorer(JudgeConfig(backend="clip", device=device))))
        except WeightsUnavailable:
            if device == "cpu":
                print("  (CLIP ViT-B-32 weights not in the local cache: skipped, nothing downloaded)")
    h, w = frames[0].shape[:2]
    print(f"\njudge throughput: scorer.embed on {len(frames)} frames of {w}x{h}, frames/s "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    batches = (1, 8, 32)
    print(f"  {'scorer':28s} {'device':6s} " + " ".join(f"{'batch ' + str(b):>10s}" for b in batches))
    for name, device, scorer in scorers:
        if isinstance(scorer, StructuralScorer):
            rate = time_embed(scorer, frames, 1)
            row = [rate] * len(batches)
        else:
            row = [time_embed(scorer, frames, b) for b in batches]
        print(f"  {name:28s} {device:6s} " + " ".join(f"{r:10.1f}" for r in row))
    print("  (structural embeds frame by frame: one figure for every batch size)")

    # A whole judge call: decode keyframes + seam frames of a 5 s 360p segment, embed, score.
    from longvid.consistency import head_frames, tail_frames

    jobs, data = render_jobs("a red fox explores a snowy forest at dawn", 20, 2)
    anchors = head_frames(data[0], 1)
    prev_tail = tail_frames(data[0], jobs[0].frames, 3)
    print(f"\nscore_segment on one {jobs[1].frames / jobs[1].fps:g} s {jobs[1].width}x{jobs[1].height} segment "
          "(decode + embed + score; median of 5):")
    for name, device, scorer in scorers:
        judge = ConsistencyJudge(JudgeConfig(), scorer=scorer)
        judge.score_segment(data[1], jobs[1], anchors, prev_tail, jobs[1].prompt)  # warm-up
        times = []
        for _ in range(5):
            started = time.perf_counter()
            scores = judge.score_segment(data[1], jobs[1], anchors, prev_tail, jobs[1].prompt)
            times.append(time.perf_counter() - started)
        print(f"  {name:28s} {device:6s} {1000 * sorted(times)[2]:8.1f} ms  ({len(scores.keyframes)} keyframes + 3 seam frames)")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


def render_jobs(prompt: str, duration: float, scenes: int, resolution: str = "360p"):
    from longvid.planning import OfflinePlanner, segment_storyboard
    from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
    from longvid.spec import RenderSpec

    spec = RenderSpec(prompt=prompt, duration_s=duration, resolution=resolution)
    jobs = segment_storyboard(OfflinePlanner().plan(spec, scenes), spec, PREVIEW_CAPABILITIES.durations)
    provider = PreviewProvider()
    return jobs, [provider.fetch(provider.submit(j)) for j in jobs]


def compressor_section(frames_720p: list[np.ndarray], counts=(10, 100, 1000)) -> None:
    import torch

    h, w = frames_720p[0].shape[:2]
    frame_bytes = h * w * 3
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"\nFramePack compressor (lambda 2, min_side 16, overflow merge), {w}x{h} frames:")
    print(f"  {'device':6s} {'pushed':>6s} {'total s':>8s} {'ms/push':>8s} {'levels':>6s} {'pixels/newest':>13s} "
          f"{'held MB':>8s} {'peak RSS +MB':>12s} {'all frames MB':>13s}")
    for device in devices:
        for count in counts:
            packer = FramePackCompressor(lambda_=2.0, min_side=16, device=device)
            packer.push(frames_720p[0])  # warm-up (first allocation, kernels)
            packer.reset()
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            base = peak = rss_bytes()
            started = time.perf_counter()
            for i in range(count):
                packer.push(frames_720p[i % len(frames_720p)])
                peak = max(peak, rss_bytes())
            if device == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
            stats = packer.stats()
            extra = f"  (cuda peak {torch.cuda.max_memory_allocated() / 2**20:.1f} MB)" if device == "cuda" else ""
            print(f"  {device:6s} {count:6d} {elapsed:8.3f} {1000 * elapsed / count:8.2f} {stats['levels']:6d} "
                  f"{stats['ratio_to_newest']:13.3f} {stats['nbytes'] / 2**20:8.2f} {(peak - base) / 2**20:12.1f} "
                  f"{count * frame_bytes / 2**20:13.1f}{extra}")


CALIBRATION_PROMPTS = (
    ("a red fox explores a snowy forest at dawn", 20),
    ("a neon city street at night with a purple cat", 45),
    ("a golden desert at sunset, then a storm over the dunes", 30),
    ("a lone astronaut walks across a red planet", 60),
)


def calibrate_section() -> None:
    from longvid.consistency import decode_frames, tail_frames
    from longvid.providers.preview import PreviewProvider
    from longvid.spec import Character, Lighting

    judges = [ConsistencyJudge(JudgeConfig(backend="structural"))]
    try:
        judges.append(ConsistencyJudge(JudgeConfig(backend="clip")))  # real weights from the local cache only
    except WeightsUnavailable:
        print("\n(calibration: no CLIP ViT-B-32 weights in the local cache; structural only)")
    drifts = {
        "palette+subject": {"color_palette": ["#e63946", "#f4a261", "#2a9d8f", "#264653"], "characters": [Character(name="blue whale")]},
        "desert palette": {"color_palette": ["#e9c46a", "#f4a261", "#e76f51", "#264653"]},
        "night lighting": {"lighting": Lighting.NIGHT},
        "subject only": {"characters": [Character(name="green dragon")]},
    }
    rows: dict[tuple[str, str], list] = {}
    provider = PreviewProvider()
    for prompt, duration in CALIBRATION_PROMPTS:
        jobs, data = render_jobs(prompt, duration, 2)
        scene_first = {}
        for job, mp4 in zip(jobs, data):
            scene_first.setdefault(job.scene_index, decode_frames(mp4, [0])[0])
        video_first = scene_first[0]

        def judge_all(name, job, mp4):
            prev = jobs[job.index - 1] if job.index else None
            tail = tail_frames(data[prev.index], prev.frames, 3) if prev is not None and prev.scene_index == job.scene_index else None
            for judge in judges:
                s = judge.score_segment(mp4, job, [scene_first[job.scene_index], video_first], tail, job.prompt)
                rows.setdefault((judge.backend, name), []).append(s)

        for job, mp4 in zip(jobs, data):
            judge_all("clean", job, mp4)
        for name, update in drifts.items():
            for job in jobs[1:]:
                if job.segment_in_scene == 0:
                    continue  # its own frame 0 is the scene's anchor
                if name == "night lighting" and job.scene.lighting is Lighting.NIGHT:
                    continue  # not a drift there
                bad = job.model_copy(update={"scene": job.scene.model_copy(update=update)})
                judge_all(name, job, provider.fetch(provider.submit(bad)))  # judged against the job asked for

    def span(values):
        values = [v for v in values if v is not None]
        return f"{min(values):.3f}..{max(values):.3f}" if values else "-"

    for judge in judges:
        th = judge.thresholds
        print(f"\ncalibration, {judge.backend} scorer (thresholds anchor {th.anchor}, seam {th.seam}, prompt {th.prompt}); "
              "anchors: scene's first frame + video's first frame:")
        print(f"  {'segments':16s} {'n':>3s} {'anchor min..max':>16s} {'seam min..max':>16s} {'prompt min..max':>16s} {'passed':>7s}")
        for (backend, name), scores in rows.items():
            if backend != judge.backend:
                continue
            print(f"  {name:16s} {len(scores):3d} {span([s.anchor for s in scores]):>16s} {span([s.seam for s in scores]):>16s} "
                  f"{span([s.prompt for s in scores]):>16s} {sum(s.passed for s in scores):4d}/{len(scores)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=64, help="frames per throughput measurement (default %(default)s)")
    ap.add_argument("--resolution", default="720p", choices=["360p", "720p"], help="judge input frames (default %(default)s)")
    ap.add_argument("--calibrate", action="store_true", help="also score clean and drifted preview renders (~1 min)")
    ap.add_argument("--skip-judge", action="store_true")
    ap.add_argument("--skip-compressor", action="store_true")
    args = ap.parse_args()

    import torch

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"cuda {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
    frames_720p = preview_frames(8, 1280, 720)
    if not args.skip_judge:
        size = (1280, 720) if args.resolution == "720p" else (640, 360)
        frames = [f if f.shape[1] == size[0] else np.ascontiguousarray(f[::2, ::2]) for f in frames_720p]
        judge_section(args, [frames[i % len(frames)] for i in range(args.frames)])
    if not args.skip_compressor:
        compressor_section(frames_720p)
    if args.calibrate:
        calibrate_section()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
