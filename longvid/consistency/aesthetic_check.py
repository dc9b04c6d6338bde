"""Whether an aesthetic head suits the judge's CLIP, decided before anything starts.

LAION's aesthetic predictors (LAION-AI/aesthetic-predictor's `sa_0_4_vit_b_32_linear.pth` and
`sa_0_4_vit_l_14_linear.pth`, christophschuhmann/improved-aesthetic-predictor's MLP) were
trained on OpenAI's CLIP image embeddings. Another CLIP of the same size (the judge's default,
open_clip ViT-B-32 `laion2b_s34b_b79k`) embeds into another space of the same dimension, where
the head's ratings mean nothing. So a head is taken only with the judge's CLIP pretrained
"openai" (`--clip-pretrained openai`; with `--clip-checkpoint FILE` that says the file holds
OpenAI's weights) and an embedding size equal to the head's.

`check_aesthetic_head(config)` loads the head (numpy; torch only for a .pth) and refuses a
mismatch with one line (InputError), at the edge, before Ray starts; the judge actor runs the
same `head_mismatch` on the CLIP it loaded. Nothing here imports torch or open_clip at import.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ..errors import InputError
from .config import JudgeConfig

AESTHETIC_CLIP_PRETRAINED = "openai"
HEAD_FOR_CLIP = {"ViT-B-32": "sa_0_4_vit_b_32_linear.pth", "ViT-L-14": "sa_0_4_vit_l_14_linear.pth"}


def clip_embed_dim(model_name: str) -> int | None:
    """The embedding size of an open_clip architecture from its config file (without importing
    open_clip, which imports torch), or None when it is not a named architecture."""
    from .clip_model import TINY_CLIP_NAME, tiny_clip_config

    if model_name == TINY_CLIP_NAME:
        return int(tiny_clip_config()["embed_dim"])
    spec = importlib.util.find_spec("open_clip")  # finds the package without running it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "model_configs" / f"{model_name}.json"
        if path.is_file():
            return int(json.loads(path.read_text())["embed_dim"])
    return None


def _how_to(model_name: str) -> str:
    head = HEAD_FOR_CLIP.get(model_name)
    return (f"pass --clip-pretrained {AESTHETIC_CLIP_PRETRAINED}" + (f" (its head: {head})" if head else "")
            + ", or leave out --aesthetic-head")


def head_mismatch(model_name: str, pretrained: str, head_dim: int, clip_dim: int | None) -> str | None:
    """Why a head of `head_dim` inputs cannot rate this CLIP's embeddings, or None (pure)."""
    if pretrained != AESTHETIC_CLIP_PRETRAINED:
        return (f"the aesthetic head was trained on OpenAI's CLIP embeddings, but the judge's CLIP is {model_name} "
                f"pretrained '{pretrained}': {_how_to(model_name)}")
    if clip_dim is None:
        return (f"the aesthetic head needs an open_clip architecture of known size with OpenAI's weights, not "
                f"'{model_name}' (e.g. --clip-model ViT-B-32 --clip-pretrained {AESTHETIC_CLIP_PRETRAINED})")
    if clip_dim != head_dim:
        return (f"takes {head_dim}-d CLIP embeddings, but the judge's CLIP ({model_name}) gives {clip_dim}-d ones: "
                f"use the head made for that CLIP" + (f" ({HEAD_FOR_CLIP[model_name]})" if model_name in HEAD_FOR_CLIP else ""))
    return None


def check_aesthetic_head(config: JudgeConfig):
    """The judge's aesthetic head (weighted_models.AestheticHead), loaded and checked against its
    CLIP; None when it has none or never runs CLIP. InputError (one line) when it cannot be used."""
    if config.aesthetic_head is None or config.backend == "structural" or not config.weighted:
        return None
    from .weighted_models import load_aesthetic_head

    try:
        head = load_aesthetic_head(config.aesthetic_head)
    except InputError:
        raise
    except Exception as exc:  # a corrupt or truncated file: safetensors / torch say why
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InputError(f"aesthetic head {config.aesthetic_head}: cannot be read ({exc.__class__.__name__}: {first})") from None
    problem = head_mismatch(config.model_name, config.pretrained, head.dim, clip_embed_dim(config.model_name))
    if problem is not None:
        raise InputError(f"aesthetic head {head.source}: {problem}")
    return head
