"""The `local` provider: open-weights video models through diffusers, behind the same
submit / poll / fetch / price protocol as Runway and Veo.

Like the preview renderer it is a local, deterministic renderer: submit names the task by
a hash of the request (cheap, in the driver, which also starts the model's resident worker),
and the segment task's fetch runs the model in that worker. Its cost is GPU time: the
seconds the pipeline ran × LONGVID_GPU_HOUR_USD / 3600, booked in the ledger like a paid call.
"""

from __future__ import annotations

import hashlib

from ...settings import LocalModelSettings
from ...spec import SegmentJob
from ..base import ProviderCapabilities, TaskState, TaskStatus
from ...errors import InputError
from . import pool
from .placement import oversized_reason
from .loader import cached_snapshot, find_weights, load_spec, profile_for


def local_capabilities(settings: LocalModelSettings) -> ProviderCapabilities:
    profile = profile_for(settings)
    return ProviderCapabilities(
        name="local",
        model=profile.key,
        durations=profile.durations(),
        image_conditioning=True,
        runs_remotely=False,
        uses_gpu=True,
        price_per_second_usd=profile.gpu_seconds_per_video_second * settings.gpu_hour_usd / 3600,
        idempotent_submit=True,
        resident_model=True,
        conditioning_frames=profile.conditioning_frames,
        generation_identity=generation_identity(settings),
        notes=(f"{profile.repo_id} through diffusers {profile.pipeline_class}",
               f"GPU time at ${settings.gpu_hour_usd:.2f}/GPU-hour; estimate {profile.gpu_seconds_per_video_second:g} GPU-s per video second"),
    )


def generation_identity(settings: LocalModelSettings) -> str:
    """The weights (folder, or Hub repo at its cached revision) and the settings that change
    the pixels: what a cached clip must match to be reused."""
    profile = profile_for(settings)
    if settings.model_dir is not None:
        weights = str(settings.model_dir)
    else:
        snapshot = cached_snapshot(profile.repo_id)  # .../snapshots/<commit>: the revision
        weights = f"{profile.repo_id}@{snapshot.name if snapshot else 'latest'}"
    steps = settings.steps or profile.default_steps
    precision = settings.precision or profile.precision
    return f"{weights};steps={steps};height={settings.generate_height or 0};precision={precision};device={settings.device}"


def weights_present(settings: LocalModelSettings) -> bool:
    try:
        return find_weights(settings) is not None
    except Exception:  # an unknown model name: not usable
        return False


def gpu_present() -> bool:
    """Whether this machine has a CUDA GPU (a cluster's GPU nodes are Ray's business)."""
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def local_model_state(settings: LocalModelSettings) -> dict[str, str]:
    """For `longvid providers`: where the weights are (or "missing") and whether a GPU is here."""
    try:
        weights = find_weights(settings)
    except Exception:  # an unknown model name
        weights = None
    return {"weights": str(weights) if weights else "missing", "gpu": "cuda" if gpu_present() else "none (runs on the CPU)"}


class LocalProvider:
    """A missing model is an InputError here, when the pipeline's input check builds the
    client: before Ray starts, before anything is paid. A driver connected to a cluster
    (`check_weights` False) leaves the check to the GPU nodes, which hold the weights; a
    node without them fails the segment with the same message."""

    poll_interval_s = 0.05  # nothing to wait for: fetch does the work

    def __init__(self, settings: LocalModelSettings, check_weights: bool = True):
        self.settings = settings
        self.spec = load_spec(settings, check_here=check_weights)
        self.capabilities = local_capabilities(settings)
        self._jobs: dict[str, tuple[SegmentJob, bytes | None]] = {}
        self._seconds: dict[str, float] = {}

    def check_render(self, width: int, height: int, fps: int) -> None:
        """Refuse (InputError, before anything runs) a render whose segments no GPU node could hold."""
        s = self.settings
        reason = oversized_reason(self.spec.profile, width, height, fps, s.precision, s.cpu_offload, s.generate_height,
                                  s.max_vram_gb)
        if reason:
            raise InputError(reason)

    def submit(self, job: SegmentJob, conditioning_png: bytes | None = None) -> str:
        frames = getattr(conditioning_png, "frames", None) or ((conditioning_png,) if conditioning_png else ())
        digest = hashlib.sha256(job.model_dump_json().encode() + self.spec.key.encode())
        for frame in frames:
            digest.update(hashlib.sha256(frame).digest())
        task_id = f"local-{digest.hexdigest()[:24]}"
        self._jobs[task_id] = (job, conditioning_png)
        pool.ensure_worker(self.spec, self.settings, job)
        return task_id

    def poll(self, task_id: str) -> TaskStatus:
        if task_id not in self._jobs:
            return TaskStatus(TaskState.FAILED, error=f"unknown task {task_id}", failure_code="ASSET.INVALID")
        return TaskStatus(TaskState.SUCCEEDED, progress=1.0)

    def fetch(self, task_id: str) -> bytes:
        job, conditioning = self._jobs.pop(task_id)
        clip = pool.generate(self.spec, self.settings, job, conditioning)
        self._seconds[task_id] = clip.seconds
        return clip.mp4

    def price(self, duration_s: float) -> float:
        """The estimate, before a segment runs (what the ledger reserves)."""
        return self.capabilities.price_per_second_usd * duration_s

    def worker_seconds(self, task_id: str) -> float | None:
        """The seconds the model worker ran for a fetched task (the GPU-time metric's figure)."""
        return self._seconds.get(task_id)

    def spent_usd(self, task_id: str) -> float | None:
        """What a fetched task cost: the seconds its model worker ran, at the GPU-hour price."""
        seconds = self._seconds.get(task_id)
        return None if seconds is None else seconds * self.settings.gpu_hour_usd / 3600
