"""The resident model worker: loads the pipeline once and makes segment after segment with it.

A plain class, so the same code runs in this process (no Ray: tests, a single machine's
inline runner) and as a Ray actor holding the GPU (pool.py). It counts its loads, so a test
can prove the model is loaded once per worker, not once per segment.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass

from ...spec import SegmentJob
from ..base import from_wire
from .generation import run_segment
from .loader import LoadSpec, load_pipeline

KEEP_CONDITIONING_RECORDS = 16  # what the worker remembers of the frames it conditioned on (for checks)


@dataclass(frozen=True)
class GeneratedClip:
    mp4: bytes
    seconds: float  # the pipeline's wall time: what the GPU was busy for
    device: str


class ModelWorker:
    def __init__(self, spec: LoadSpec, steps: int | None = None, generate_height: int | None = None):
        self.spec, self.steps, self.generate_height = spec, steps or spec.profile.default_steps, generate_height
        self.loads = 0
        self.segments = 0
        self._pipe = None
        self._device = None
        self._seen: OrderedDict[int, list] = OrderedDict()

    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def pipeline(self):
        if self._pipe is None:
            self._pipe = load_pipeline(self.spec, self.device)
            self.loads += 1
        return self._pipe

    def generate(self, job: SegmentJob, conditioning: bytes | None) -> GeneratedClip:
        conditioning = from_wire(conditioning)
        pipe = self.pipeline()
        started = time.perf_counter()
        mp4, seen = run_segment(pipe, job, self.spec.profile, conditioning, self.steps, self.generate_height, self.device)
        self.segments += 1
        self._seen[job.index] = seen
        while len(self._seen) > KEEP_CONDITIONING_RECORDS:
            self._seen.popitem(last=False)
        return GeneratedClip(mp4=mp4, seconds=time.perf_counter() - started, device=self.device)

    def placed(self) -> bool:
        """Answers at once (the pool calls it in its own concurrency group, beside a running
        segment): that Ray has placed and started this worker."""
        return True

    def stats(self) -> dict:
        return {"loads": self.loads, "segments": self.segments, "pid": os.getpid(), "device": self.device, **_placement()}

    def conditioning_seen(self, index: int) -> list:
        """The conditioning frames (RGB arrays) the pipeline got for segment `index`'s last attempt."""
        return self._seen.get(index, [])


def _placement() -> dict:
    """Where Ray runs this worker (its node and what it was granted), for cluster checks."""
    try:
        import ray

        if ray.is_initialized():
            context = ray.get_runtime_context()
            return {"node_id": context.get_node_id(), "resources": dict(context.get_assigned_resources())}
    except Exception:  # outside a Ray worker there is no placement to report
        pass
    return {}
