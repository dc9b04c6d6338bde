"""Loading the weighted metrics' models by clip_model.py's rules: local first, the network only
when allowed, and an error that names where it looked.

DINOv2 (`load_dinov2`), through transformers' AutoModel and AutoImageProcessor:

1. `config.dinov2_path`, a local folder in save_pretrained layout (must exist: a path given
   and missing is an error, not a silent skip);
2. `config.dinov2_model` (a Hugging Face repo id) in the local Hugging Face cache only
   (`local_files_only`, Hugging Face kept offline while loading);
3. with `config.allow_download`, transformers' normal download into that cache.

Otherwise WeightsUnavailable, naming every place it looked and how to provide the model.

The aesthetic head (`load_aesthetic_head`): the LAION aesthetic predictor, a stack of linear
layers on L2-normalised CLIP image embeddings, from a local file only (there is no cache to
look in). File format: a safetensors (or PyTorch .pth/.pt) state dict holding either

- `weight` (1, D) and `bias` (1,): one linear layer, the layout of LAION-AI/aesthetic-predictor's
  `sa_0_4_vit_b_32_linear.pth` (D = 512, CLIP ViT-B-32, the judge's default) and
  `sa_0_4_vit_l_14_linear.pth` (D = 768, ViT-L-14); or
- `layers.{i}.weight` / `layers.{i}.bias`, applied in the order of i: the layout of
  christophschuhmann/improved-aesthetic-predictor's MLP (`sac+logos+ava1-l14-linearMSE.pth`,
  ViT-L-14), whose layers have no activation between them (its ReLUs are commented out and
  dropout is the identity at inference).

Either way the head is an affine map, so it is folded into one (D,) vector and a bias at load
and applied with numpy. Its output is LAION's 1-10 rating.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .clip_model import WeightsUnavailable, _offline, resolve_device
from .config import JudgeConfig


@dataclass
class LoadedDinov2:
    model: Any
    processor: Any
    device: str
    dtype: Any
    source: str  # where the weights came from, for the notes


def _dinov2_unavailable(config: JudgeConfig, looked: list[str]) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"DINOv2 weights ('{config.dinov2_model}') are not available locally; looked in: {'; '.join(looked)}\n"
        "Provide them in one of these ways: pass a local folder (--dinov2 DIR, save_pretrained layout); pre-fill "
        "the Hugging Face cache on a machine with internet, e.g. `python -c \"from transformers import AutoModel, "
        f"AutoImageProcessor; AutoModel.from_pretrained('{config.dinov2_model}'); "
        f"AutoImageProcessor.from_pretrained('{config.dinov2_model}')\"`; or pass --allow-download."
    )


def _dinov2_cached(config: JudgeConfig) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(config.dinov2_model, "config.json", cache_dir=config.cache_dir)  # reads the cache only
    return isinstance(found, str) and Path(found).is_file()


def _in_cache_or_raise(config: JudgeConfig) -> None:
    from huggingface_hub import constants as hf_constants

    if not _dinov2_cached(config):
        raise _dinov2_unavailable(config, [f"{config.cache_dir or hf_constants.HF_HUB_CACHE} :: {config.dinov2_model}/config.json"])


def dinov2_expected(config: JudgeConfig) -> bool:
    """Whether the judge will load DINOv2: a folder given, a download allowed, or the model in
    the Hugging Face cache (looked up without importing torch). For the actor's GPU request."""
    return config.weighted and (config.dinov2_path is not None or config.allow_download or _dinov2_cached(config))


def load_dinov2(config: JudgeConfig) -> LoadedDinov2:
    """DINOv2 for inference (eval mode; fp16 on CUDA, fp32 on CPU). Raises WeightsUnavailable
    (see the module doc)."""
    if config.dinov2_path is None and not config.allow_download:
        _in_cache_or_raise(config)  # before importing torch and transformers: most judges have no DINOv2
    import torch
    from transformers import AutoImageProcessor, AutoModel

    device = resolve_device(config.device)
    dtype = torch.float16 if device == "cuda" else torch.float32
    cache_dir = str(config.cache_dir) if config.cache_dir is not None else None
    if config.dinov2_path is not None:
        folder = Path(config.dinov2_path).expanduser()
        if not (folder / "config.json").is_file():
            raise _dinov2_unavailable(config, [f"dinov2_path {folder}/config.json (missing)"])
        name, source, kwargs = str(folder), str(folder), {"local_files_only": True}
    else:
        from huggingface_hub import constants as hf_constants

        name, kwargs = config.dinov2_model, {"cache_dir": cache_dir, "local_files_only": not config.allow_download}
        source = f"{'download' if config.allow_download else 'cache'}:{name}"
        where = f"{cache_dir or hf_constants.HF_HUB_CACHE} :: {name}"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would land in the render's stderr
    offline = _offline() if not config.allow_download else contextlib.nullcontext()
    try:
        with offline:
            model = AutoModel.from_pretrained(name, dtype=dtype, **kwargs)
            processor = AutoImageProcessor.from_pretrained(name, **kwargs)
    except OSError as exc:  # transformers: "... not the path to a directory containing ..." / offline
        looked = [f"{source} ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})"] if config.dinov2_path else [where]
        raise _dinov2_unavailable(config, looked) from exc
    model.eval().to(device)
    return LoadedDinov2(model, processor, device, dtype, source)


def pixel_values(loaded: LoadedDinov2, frames: list[np.ndarray]):
    """The image processor's steps (shortest side resized with antialiased bicubic, centre crop,
    rescale, normalise) on tensors on the model's device: the processor's PIL path cost ~20-50 ms
    a frame on the CPU, more than the model on a GPU. Sizes and statistics are the processor's own."""
    import torch
    import torch.nn.functional as F

    proc = loaded.processor
    size = getattr(proc, "size", None) or {}
    short = size.get("shortest_edge")
    crop = getattr(proc, "crop_size", None) or {}
    mean = torch.tensor(getattr(proc, "image_mean", None) or (0.485, 0.456, 0.406), device=loaded.device).view(1, 3, 1, 1)
    std = torch.tensor(getattr(proc, "image_std", None) or (0.229, 0.224, 0.225), device=loaded.device).view(1, 3, 1, 1)
    batch = []
    for frame in frames:
        x = torch.from_numpy(np.ascontiguousarray(frame[..., :3])).to(loaded.device).permute(2, 0, 1).unsqueeze(0).float()
        h, w = x.shape[-2:]
        if getattr(proc, "do_resize", True) and short:
            scale = short / min(h, w)
            new_h, new_w = (short, max(1, int(short * w / h))) if h <= w else (max(1, int(short * h / w)), short)
            if (new_h, new_w) != (h, w):
                x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", antialias=scale < 1, align_corners=False)
            x = x.clamp_(0.0, 255.0).round_()  # the processor resizes uint8 pictures
        if getattr(proc, "do_center_crop", True) and crop:
            ch, cw = crop["height"], crop["width"]
            top, left = max(0, (x.shape[-2] - ch) // 2), max(0, (x.shape[-1] - cw) // 2)
            x = x[..., top : top + ch, left : left + cw]
        batch.append(x)
    x = torch.cat(batch) * float(getattr(proc, "rescale_factor", 1 / 255))
    return ((x - mean) / std).to(loaded.dtype)


def dinov2_features(loaded: LoadedDinov2, frames: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """(N, D) float32 unit rows: each frame's CLS feature (the model's pooled output, the
    layer-normed CLS token for Dinov2Model)."""
    import torch

    chunks = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            out = loaded.model(pixel_values=pixel_values(loaded, list(frames[start : start + batch_size])))
            pooled = getattr(out, "pooler_output", None)
            cls = pooled if pooled is not None else out.last_hidden_state[:, 0]
            chunks.append(cls.float().cpu().numpy())
    features = np.concatenate(chunks).astype(np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class AestheticHead:
    """LAION's aesthetic predictor folded into one affine map: rating = emb @ weight + bias."""

    weight: np.ndarray  # (D,)
    bias: float
    source: str

    @property
    def dim(self) -> int:
        return int(self.weight.shape[0])

    def rate(self, embeddings: np.ndarray) -> np.ndarray:
        """LAION's 1-10 rating of each L2-normalised CLIP image embedding (N, D)."""
        return np.atleast_2d(np.asarray(embeddings, np.float32)) @ self.weight + np.float32(self.bias)


def _read_state_dict(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)  # tensors only, no code
    if not isinstance(state, dict):
        raise InputError(f"aesthetic head {path}: expected a state dict of tensors, found {type(state).__name__}")
    return {k: v.float().numpy() for k, v in state.items() if hasattr(v, "numpy")}


def load_aesthetic_head(path: str | Path) -> AestheticHead:
    """The head in `path` (format: module doc). A missing file is WeightsUnavailable; a file
    that is not a stack of linear layers is an InputError saying what it holds."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(
            f"aesthetic head {path} (no such file). Get LAION's sa_0_4_vit_b_32_linear.pth from "
            "github.com/LAION-AI/aesthetic-predictor (for CLIP ViT-B-32) and pass its path with --aesthetic-head")
    state = _read_state_dict(path)
    if "weight" in state and "bias" in state:
        layers = [(state["weight"], state["bias"])]
    else:
        found = sorted({int(m.group(1)) for key in state if (m := re.fullmatch(r"layers\.(\d+)\.weight", key))})
        layers = [(state[f"layers.{i}.weight"], state.get(f"layers.{i}.bias")) for i in found]
    if not layers:
        raise InputError(f"aesthetic head {path}: no linear layers ('weight'/'bias' or 'layers.N.weight'); "
                         f"it holds {', '.join(sorted(state)[:8]) or 'nothing'}")
    # Compose y = W_k(...(W_1 x + b_1)...) + b_k into one map, carried as a (D, out) matrix.
    matrix = np.eye(layers[0][0].shape[1], dtype=np.float64)
    offset = np.zeros(layers[0][0].shape[1], np.float64)
    for weight, bias in layers:
        weight = np.asarray(weight, np.float64)
        if weight.ndim != 2 or weight.shape[1] != matrix.shape[1]:
            raise InputError(f"aesthetic head {path}: layer shapes do not chain ({weight.shape} after {matrix.shape[1]} outputs)")
        matrix, offset = matrix @ weight.T, offset @ weight.T + (0.0 if bias is None else np.asarray(bias, np.float64))
    if matrix.shape[1] != 1:
        raise InputError(f"aesthetic head {path}: the last layer gives {matrix.shape[1]} outputs, not one rating")
    return AestheticHead(matrix[:, 0].astype(np.float32), float(offset[0]), str(path))
