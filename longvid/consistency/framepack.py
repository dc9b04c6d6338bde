"""FramePack-style context compression: the newer a frame, the more pixels it keeps.

Level 0 holds the newest frame at full size (H, W). Level k holds the k-th older frame at
(floor(H / λ^k), floor(W / λ^k)). A level is kept only while both of its sides are at
least `min_side`; so there are K + 1 levels with K = the largest k whose smaller side
floor(min(H, W) / λ^k) >= min_side (K = 5 for 720p, λ = 2, min_side = 16).

The bound. For λ >= √2 the packed context has fewer than 2·H·W pixels at ANY history
length:

    Σ_{k=0..K} floor(H/λ^k)·floor(W/λ^k)  <=  H·W · Σ_{k=0..K} λ^{-2k}
                                           <   H·W · λ² / (λ² − 1)   <=  2·H·W.

(4/3·H·W for λ = 2.) The floor on size cannot break it: frames that would fall below
`min_side` get no level of their own. They are either dropped (overflow="drop": the
context covers the last K + 1 frames) or merged (overflow="merge", the default) into
the last level, which then holds a running blend of everything older: on each push,
last = (1 − w)·(the frame aging into it) + w·(the old blend), so a frame's weight halves
(w = 0.5) with each later one. Merging keeps a trace of the whole history inside the same
level, so it adds no pixels. As a last guard the constructor refuses λ < √2 and `_sizes`
stops adding levels before the running total would reach 2·H·W, whatever floating point
does.

Memory. Older levels are made by shrinking the level above by λ (a pyramid), never from
full-size copies, so the compressor holds exactly the packed levels: K + 1 arrays, fewer
than 2·H·W·3 bytes, however many frames were pushed.

Resizing uses torch (area interpolation, which averages λ×λ blocks: anti-aliased), on
CUDA when torch sees a GPU; with no torch it falls back to Pillow's box filter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

SQRT2 = math.sqrt(2.0)


def pack_sizes(height: int, width: int, lambda_: float = 2.0, min_side: int = 16) -> list[tuple[int, int]]:
    """(h, w) of every level for a newest frame of height x width; level 0 is full size."""
    if lambda_ < SQRT2:
        raise ValueError(f"lambda_ must be >= sqrt(2) ~ 1.4142 for the 2x pixel bound to hold (got {lambda_})")
    sizes = [(height, width)]
    total, budget = height * width, 2 * height * width
    k = 1
    while True:
        scale = lambda_**k
        h, w = math.floor(height / scale), math.floor(width / scale)
        if min(h, w) < max(1, min_side) or total + h * w >= budget:
            return sizes
        sizes.append((h, w))
        total += h * w
        k += 1


class FramePackCompressor:
    """Keeps a bounded, geometrically shrinking context of the frames pushed so far.

    push(frame)  adds the newest frame (RGB uint8 (H, W, 3)); older ones move down a level.
    packed()     [newest full size, older ones smaller ...] as RGB uint8 numpy arrays.
    """

    def __init__(
        self,
        lambda_: float = 2.0,
        min_side: int = 16,
        device: str = "auto",
        overflow: Literal["merge", "drop"] = "merge",
        merge_weight: float = 0.5,
    ) -> None:
        if lambda_ < SQRT2:
            raise ValueError(
                f"lambda_ must be >= sqrt(2) ~ 1.4142 (got {lambda_}): with per-side scale 1/lambda^k the "
                "areas sum to lambda^2/(lambda^2-1) times the newest frame, which is <= 2 only from sqrt(2) on"
            )
        if min_side < 1:
            raise ValueError("min_side must be at least 1")
        if overflow not in ("merge", "drop"):
            raise ValueError("overflow must be 'merge' or 'drop'")
        if not 0.0 <= merge_weight < 1.0:
            raise ValueError("merge_weight must be in [0, 1)")
        self.lambda_ = float(lambda_)
        self.min_side = int(min_side)
        self.overflow = overflow
        self.merge_weight = float(merge_weight)
        self.pushed = 0
        self._levels: list[Any] = []  # torch uint8 (3, h, w) tensors, or numpy (h, w, 3) without torch
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency; kept for slim installs
            self._torch = None
            self.device = "cpu"
        else:
            self._torch = torch
            self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device

    # -- resizing -----------------------------------------------------------------------
    def _to_level(self, frame: np.ndarray):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB frame (H, W, 3), got shape {frame.shape}")
        if frame.dtype != np.uint8:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        if self._torch is None:
            return frame.copy()
        return self._torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1).contiguous()

    def _shape(self, level) -> tuple[int, int]:
        return (level.shape[1], level.shape[2]) if self._torch is not None else level.shape[:2]

    def _resize(self, level, size: tuple[int, int]):
        if self._shape(level) == tuple(size):
            return level
        if self._torch is None:
            from PIL import Image

            return np.asarray(Image.fromarray(level).resize((size[1], size[0]), Image.Resampling.BOX))
        import torch.nn.functional as F

        x = F.interpolate(level.unsqueeze(0).float(), size=size, mode="area")
        return x.squeeze(0).round_().clamp_(0, 255).to(self._torch.uint8)

    def _blend(self, newer, older):
        w = self.merge_weight
        if self._torch is None:
            return (newer.astype(np.float32) * (1 - w) + older.astype(np.float32) * w + 0.5).astype(np.uint8)
        return (newer.float() * (1 - w) + older.float() * w).round_().clamp_(0, 255).to(self._torch.uint8)

    # -- the API ------------------------------------------------------------------------
    def push(self, frame: np.ndarray) -> None:
        newest = self._to_level(frame)
        sizes = pack_sizes(*self._shape(newest), self.lambda_, self.min_side)
        old = self._levels
        levels = [newest]
        for k in range(1, len(sizes)):
            if k - 1 < len(old):
                levels.append(self._resize(old[k - 1], sizes[k]))
        last = len(sizes) - 1
        if self.overflow == "merge" and last >= 1 and len(old) > last:
            # old[last] is the blend of everything older; it has no level below to go to.
            levels[last] = self._blend(levels[last], self._resize(old[last], sizes[last]))
        self._levels = levels
        self.pushed += 1

    def packed(self) -> list[np.ndarray]:
        """Newest first: [full-size newest, ..., smallest]; RGB uint8 numpy arrays."""
        if self._torch is None:
            return [level.copy() for level in self._levels]
        return [level.permute(1, 2, 0).cpu().numpy() for level in self._levels]

    def packed_tensors(self) -> list[Any]:
        """The levels as they are held: torch uint8 (3, h, w) on self.device (no copy)."""
        return list(self._levels)

    def reset(self) -> None:
        self._levels = []
        self.pushed = 0

    @property
    def levels(self) -> int:
        return len(self._levels)

    @property
    def stored_pixels(self) -> int:
        return sum(h * w for h, w in (self._shape(level) for level in self._levels))

    @property
    def nbytes(self) -> int:
        if self._torch is None:
            return sum(level.nbytes for level in self._levels)
        return sum(level.numel() * level.element_size() for level in self._levels)

    def stats(self) -> dict[str, Any]:
        newest = self._shape(self._levels[0]) if self._levels else (0, 0)
        full = newest[0] * newest[1]
        return {
            "pushed": self.pushed,
            "levels": self.levels,
            "sizes": [list(self._shape(level)) for level in self._levels],
            "stored_pixels": self.stored_pixels,
            "ratio_to_newest": self.stored_pixels / full if full else 0.0,
            "nbytes": self.nbytes,
            "device": self.device,
        }


DEFAULT_COMPRESSOR_GPU_FRACTION = 0.05  # a few small interpolations per push


def compressor_actor_options(cluster_resources: Mapping[str, float], device: str = "auto", gpu_fraction: float = DEFAULT_COMPRESSOR_GPU_FRACTION) -> dict[str, float]:
    """Ray options for a compressor actor: a reserved core only on a cluster large enough to
    spare one (helper_actor_cpus); a sliver of a GPU when there is one."""
    gpus = float(cluster_resources.get("GPU", 0.0) or 0.0)
    if device == "cuda" and gpus <= 0:
        raise ValueError("compressor device 'cuda' was asked for but the Ray cluster has no GPU")
    num_gpus = min(gpu_fraction, gpus) if device != "cpu" and gpus > 0 else 0
    from ..runtime.resources import helper_actor_cpus

    return {"num_cpus": helper_actor_cpus(cluster_resources), "num_gpus": num_gpus}


def create_compressor_actor(
    lambda_: float = 2.0,
    min_side: int = 16,
    device: str = "auto",
    overflow: Literal["merge", "drop"] = "merge",
    cluster_resources: Mapping[str, float] | None = None,
    **options: Any,
):
    """Start a FramePackCompressor as a Ray actor (push.remote(frame), packed.remote())."""
    import ray

    resources = cluster_resources if cluster_resources is not None else ray.cluster_resources()
    merged = {**compressor_actor_options(resources, device), **options}
    return ray.remote(FramePackCompressor).options(**merged).remote(lambda_, min_side, device, overflow)
