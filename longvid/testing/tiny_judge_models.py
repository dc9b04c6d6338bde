"""Tiny random weights for the judge's weighted metrics, saved the way the real ones are, so
tests and benches load them through the product's own loaders (consistency/weighted_models.py)
without downloading anything. The weights are random: features are computed, nothing is seen.

- build_tiny_dinov2(folder): a two-layer Dinov2Model (hidden size 32, 28x28 input) and its
  BitImageProcessor, save_pretrained into `folder` (~40 k parameters);
- write_tiny_aesthetic_head(path, dim): an MLP head in the improved-aesthetic-predictor's
  layout (`layers.N.weight/bias`) as safetensors, for `dim`-d CLIP embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_tiny_dinov2(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" on every build
    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=28, patch_size=7)
    model = Dinov2Model(config).eval()
    processor = BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28}, do_center_crop=True,
                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_convert_rgb=True)
    folder = Path(folder)
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    return folder


def write_tiny_aesthetic_head(path: str | Path, dim: int, seed: int = 0) -> Path:
    """Random layers dim -> 16 -> 1 (no activation, like the real head), bias set so that a
    typical embedding rates about 5 of 10."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {
        "layers.0.weight": (rng.standard_normal((16, dim)) / np.sqrt(dim)).astype(np.float32),
        "layers.0.bias": np.zeros(16, np.float32),
        "layers.2.weight": (rng.standard_normal((1, 16)) / 4).astype(np.float32),
        "layers.2.bias": np.array([5.0], np.float32),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
