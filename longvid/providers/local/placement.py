"""Where a resident model worker may go, and why it has not gone anywhere: pure decisions
(no Ray), so they are tested without a cluster.

A model worker shares its GPU with the helpers a render starts first, the CLIP judge and
the FramePack context compressor, which ask for fractions of a GPU. A worker asking for a
whole GPU could then never be placed on a one-GPU machine (or any node whose GPU a helper
holds a slice of), and the segment would wait forever: so the worker asks for what the
helpers leave, and the driver waits for its placement only so long.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ...consistency.framepack import DEFAULT_COMPRESSOR_GPU_FRACTION
from ...consistency.judge import DEFAULT_JUDGE_GPU_FRACTION

# What one model worker asks of a GPU: the rest once a judge and a compressor took theirs.
# Ray's fractions are bookkeeping (the worker still sees the whole device), and anything
# above one half keeps two model workers off the same GPU.
MODEL_WORKER_GPU_SHARE = round(1.0 - DEFAULT_JUDGE_GPU_FRACTION - DEFAULT_COMPRESSOR_GPU_FRACTION, 4)


def wants_gpu(device: str, cluster_resources: Mapping[str, float]) -> bool:
    """Whether the model worker asks Ray for a GPU: always for 'cuda', never for 'cpu'; for
    'auto', when the cluster has one now. An autoscaling cluster whose GPU nodes are not up
    yet has none now, so its driver runs with LONGVID_LOCAL_DEVICE=cuda (the deploy files
    set it) and the pending request brings a GPU node up."""
    if device == "cpu":
        return False
    return device == "cuda" or float(cluster_resources.get("GPU", 0.0)) > 0


def _amounts(resources: Mapping[str, float]) -> str:
    parts = []
    for key in ("CPU", "GPU", "memory"):
        value = float(resources.get(key, 0.0) or 0.0)
        parts.append(f"memory {value / 1024 ** 3:.1f} GB" if key == "memory" else f"{key} {value:g}")
    parts += [f"{key} {float(value):g}" for key, value in sorted(resources.items())
              if key.startswith("longvid_") and float(value) > 0]
    return ", ".join(parts)


def unplaced_reason(name: str, options: Mapping[str, object], waited_s: float,
                    cluster_total: Mapping[str, float], cluster_free: Mapping[str, float]) -> str:
    """One line for a model worker Ray did not place within `waited_s`: what it asked for
    against what the cluster has in all and has free."""
    wanted = {"CPU": options.get("num_cpus", 0), "GPU": options.get("num_gpus", 0), "memory": options.get("memory", 0),
              **dict(options.get("resources") or {})}
    return (f"local model worker {name} was not placed within {waited_s:g} s: it asks for {_amounts(wanted)}; "
            f"the cluster has {_amounts(cluster_total)} in all, {_amounts(cluster_free)} free "
            f"(add a node that fits, lower LONGVID_LOCAL_WORKERS or LONGVID_LOCAL_HEIGHT, "
            f"or raise LONGVID_LOCAL_PLACEMENT_TIMEOUT_S for a cluster still scaling up)")


def clip_vram_gb(profile, width: int, height: int, frames: int, precision: str | None, offload: bool,
                 generate_height: int | None = None) -> float:
    """The model's GPU memory need for a clip of `frames` frames for a `width`×`height` video,
    at the size it is really generated (LONGVID_LOCAL_HEIGHT, the model's size multiple) and
    with the leading frames a chained LTX segment makes for its conditioning."""
    lead = profile.lead_frames
    made_height = min(generate_height or height, height)
    made_width, made_height = profile.size_for(math.ceil(width * made_height / height), made_height)
    return profile.vram_gb(made_width, made_height, profile.frames_for(frames + lead), precision or profile.precision, offload)


def oversized_reason(profile, width: int, height: int, fps: int, precision: str | None, offload: bool,
                     generate_height: int | None, max_vram_gb: float | None) -> str | None:
    """Why the longest segment of a `width`×`height` render at `fps` would need more GPU
    memory than any node has (LONGVID_LOCAL_MAX_VRAM_GB), or None: such a worker would wait forever."""
    if max_vram_gb is None:
        return None
    longest = profile.durations().fit(profile.durations().max_s, fps)
    frames = int(round(longest * fps))
    need = clip_vram_gb(profile, width, height, frames, precision, offload, generate_height)
    if need <= max_vram_gb:
        return None
    return (f"local model {profile.key!r} needs ~{need:g} GB of GPU memory for {width}x{height} segments of "
            f"{frames} frames at {fps} fps ({precision or profile.precision}{', offload' if offload else ''}), more than "
            f"LONGVID_LOCAL_MAX_VRAM_GB={max_vram_gb:g}; lower --resolution, --fps or LONGVID_LOCAL_HEIGHT")
