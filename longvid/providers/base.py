"""The one small protocol every video provider speaks: submit, poll, fetch, price.

Remote providers (Runway, Veo) are asynchronous task APIs, so the protocol is too; the
offline preview renderer fits the same shape, which keeps one generation path for all.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..planning.segmentation import DurationRule
from ..spec import AspectRatio, SegmentJob


class TaskState(str, enum.Enum):
    PENDING = "PENDING"
    THROTTLED = "THROTTLED"  # accepted, waiting for the provider's concurrency slot: not a failure
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


@dataclass(frozen=True)
class TaskStatus:
    state: TaskState
    progress: float | None = None
    error: str | None = None
    failure_code: str | None = None


class Trait(str, enum.Enum):
    """What a provider is chosen for. Routing prefers providers by these, never by name,
    so a plugin with the same trait is ranked the same way."""

    PREMIUM = "premium"  # the highest fidelity: first choice for a premium render that can afford it
    CREATIVE = "creative"  # suited to experimental, surreal, abstract styles: first choice for those


@dataclass(frozen=True)
class ProviderCapabilities:
    name: str
    model: str
    durations: DurationRule
    aspect_ratios: tuple[AspectRatio, ...] = tuple(AspectRatio)
    image_conditioning: bool = False
    audio: bool = False
    runs_remotely: bool = False  # remote providers need no local GPU
    uses_gpu: bool = False
    price_per_second_usd: float = 0.0
    # True when submitting the same job again is free and yields the same task (a local
    # deterministic renderer); resume may then re-submit instead of polling.
    idempotent_submit: bool = False
    # Tasks this provider account runs at once across the cluster (None: no limit beyond
    # Ray's resource requests); LONGVID_MAX_CONCURRENT_<NAME> overrides it.
    max_concurrent_tasks: int | None = None
    traits: frozenset[Trait] = frozenset()
    notes: tuple[str, ...] = field(default_factory=tuple)
    # The model lives in a resident worker (a Ray actor holding the GPU) across segments; the
    # segment task only waits on it, so it asks for no GPU itself.
    resident_model: bool = False
    # How many of the previous segment's last frames it continues from (1: one image).
    conditioning_frames: int = 1
    # What else decides its output beyond `model` (a local model's weights, steps, height,
    # precision): part of a segment's cache key, so a clip is reused only when made the same way.
    generation_identity: str = ""

    @property
    def cache_model(self) -> str:
        """`model` as the segment cache keys it (unchanged where nothing else decides the output,
        so runs made before keep their keys)."""
        return f"{self.model}|{self.generation_identity}" if self.generation_identity else self.model


class Conditioning(bytes):
    """What a segment starts from. The bytes are the PNG of the frame it starts on, what
    every provider's `conditioning_png` takes, so providers that use one image are unchanged;
    `frames` carries the frames before it too (PNGs, oldest first, ending with that frame)
    for models that continue from several."""

    frames: tuple[bytes, ...]

    def __new__(cls, frames: tuple[bytes, ...] | list[bytes]):
        if not frames:
            raise ValueError("conditioning needs at least one frame")
        made = super().__new__(cls, frames[-1])
        made.frames = tuple(frames)
        return made

    def __reduce__(self):  # pickled to Ray workers with its frames
        return (Conditioning, (self.frames,))


@dataclass(frozen=True)
class ConditioningOnTheWire:
    """A Conditioning as a Ray task or actor argument: Ray sends any `bytes` value, subclass
    or not, as raw bytes, which would drop the frames before the seam frame."""

    frames: tuple[bytes, ...]


def to_wire(conditioning: bytes | None):
    return ConditioningOnTheWire(conditioning.frames) if isinstance(conditioning, Conditioning) else conditioning


def from_wire(conditioning) -> bytes | None:
    return Conditioning(conditioning.frames) if isinstance(conditioning, ConditioningOnTheWire) else conditioning


def conditioning_pngs(conditioning: bytes | None) -> tuple[bytes, ...]:
    """The PNG frames a segment continues from: several for a Conditioning, one for plain bytes."""
    if conditioning is None:
        return ()
    return getattr(conditioning, "frames", None) or (bytes(conditioning),)


@runtime_checkable
class VideoProvider(Protocol):
    capabilities: ProviderCapabilities

    def submit(self, job: SegmentJob, conditioning_png: bytes | None = None) -> str: ...

    def poll(self, task_id: str) -> TaskStatus: ...

    def fetch(self, task_id: str) -> bytes: ...

    def price(self, duration_s: float) -> float: ...


class GenerationFailed(RuntimeError):
    def __init__(self, message: str, failure_code: str | None = None):
        super().__init__(message)
        self.failure_code = failure_code


def wait_for_output(
    provider: VideoProvider,
    task_id: str,
    poll_interval_s: float = 5.0,
    timeout_s: float = 1800.0,
    on_status: Callable[[str, TaskStatus], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """Poll a submitted task until it ends; its MP4 bytes, or GenerationFailed.
    THROTTLED and RUNNING are waiting, not failure."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = provider.poll(task_id)
        if on_status is not None:
            on_status(task_id, status)
        if status.state is TaskState.SUCCEEDED:
            return provider.fetch(task_id)
        if status.state.terminal:
            raise GenerationFailed(status.error or f"task ended {status.state.value}", status.failure_code)
        if time.monotonic() > deadline:
            raise GenerationFailed(f"task still {status.state.value} after {timeout_s:g} s", "TIMEOUT")
        sleep(poll_interval_s)


def generate(
    provider: VideoProvider,
    job: SegmentJob,
    conditioning_png: bytes | None = None,
    **wait_options,
) -> tuple[str, bytes]:
    """Submit one segment and wait for its bytes. Returns (task id, mp4 bytes)."""
    task_id = provider.submit(job, conditioning_png)
    return task_id, wait_for_output(provider, task_id, **wait_options)
