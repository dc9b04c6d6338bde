"""What the GPU gives: CLIP judge throughput, the local model's segment time, peak VRAM,
and that Ray puts the model worker on the GPU. On a machine without CUDA it says so and
exits 0 (CI never has a GPU).

    python bench/gpu_check.py

  1. CLIP judge: ClipScorer.embed (fp16 on CUDA, preprocessing included) on 256 720p frames
     at batch 32 and 64, images/s, with the ViT-B-32 architecture (random weights written
     to a temp checkpoint: the same compute as the real weights, nothing downloaded).
  2. The tiny random LTX-Video model (built locally) through longvid's loader on CUDA: one
     chained 360p segment (9 conditioning frames), seconds after a warm-up, and the peak
     GPU memory (torch.cuda.max_memory_allocated) over load and generation.
  3. Ray: a local Ray with the GPU; the model worker actor is created as a render creates it
     (providers/local/pool.py, device auto) and makes one segment; checks it asked for the
     GPU (the cluster's free GPU drops to 0 while it lives) and ran on CUDA.
Exits 1 if a check fails.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def clip_throughput(tmp: Path) -> None:
    import numpy as np
    import open_clip
    import torch

    from longvid.consistency.config import JudgeConfig
    from longvid.consistency.scorers import ClipScorer

    checkpoint = tmp / "vit-b-32-random.pt"
    torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), checkpoint)
    scorer = ClipScorer(JudgeConfig(backend="clip", model_name="ViT-B-32", checkpoint_path=checkpoint, device="cuda"))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(256)]
    print(f"CLIP judge (ViT-B-32, {scorer.loaded.precision}, 720p frames in):")
    for batch in (32, 64):
        scorer.embed(frames[:batch])  # warm-up
        torch.cuda.synchronize()
        started = time.perf_counter()
        for i in range(0, len(frames), batch):
            scorer.embed(frames[i:i + batch])
        torch.cuda.synchronize()
        print(f"  batch {batch:3d}: {len(frames) / (time.perf_counter() - started):8.1f} images/s")


def tiny_segment(model: Path) -> bool:
    import torch

    from bench.bench_local_model import jobs
    from longvid.providers.local.loader import load_spec
    from longvid.providers.local.worker import ModelWorker
    from longvid.runtime.conditioning import chain_conditioning
    from longvid.settings import LocalModelSettings

    first, second = (j.model_copy(update={"width": 640, "height": 360}) for j in jobs(2))
    torch.cuda.reset_peak_memory_stats()
    worker = ModelWorker(load_spec(LocalModelSettings(model_dir=model)), steps=8)
    clip = worker.generate(first, None)  # warm-up, and the frames the next one continues from
    conditioning = chain_conditioning(clip.mp4, first.frames, 9)
    torch.cuda.synchronize()
    started = time.perf_counter()
    worker.generate(second, conditioning)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"tiny LTX-Video on {worker.device}: one chained 640x360 segment ({second.generate_duration_s:.2f} s of video, "
          f"8 steps) in {seconds:.2f} s; peak GPU memory {peak:.2f} GiB")
    return worker.device == "cuda"


def ray_placement(model: Path) -> bool:
    import ray

    from bench.bench_local_model import jobs
    from longvid.providers.local import pool
    from longvid.providers.local.loader import load_spec
    from longvid.settings import LocalModelSettings

    ray.init(num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        settings = LocalModelSettings(model_dir=model, steps=2)
        spec = load_spec(settings)
        (job,) = jobs(1)
        pool.generate(spec, settings, job, None)
        stats = ray.get(pool.ray_worker(spec, settings, job).stats.remote())
        free_gpu = ray.available_resources().get("GPU", 0.0)
        ok = stats["device"] == "cuda" and free_gpu == 0.0
        print(f"Ray: model worker actor ran on {stats['device']}, loads={stats['loads']}, free GPUs while it lives: {free_gpu:g} "
              f"-> {'placed on the GPU' if ok else 'NOT on the GPU'}")
        return ok
    finally:
        ray.shutdown()


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU on this machine (torch sees none); nothing to measure")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    from longvid.testing.tiny_models import build_tiny_ltx

    tmp = Path(tempfile.mkdtemp(prefix="longvid-gpu-check-"))
    model = build_tiny_ltx(tmp / "tiny-ltx")
    clip_throughput(tmp)
    ok = tiny_segment(model)
    ok = ray_placement(model) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
