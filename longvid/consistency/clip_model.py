"""Loading CLIP weights without surprises (the way open_clip's factory does, offline first).

`load_clip(config)` looks for weights in this order and never touches the network unless
`config.allow_download` is set:

1. `config.checkpoint_path`, a local file (must exist);
2. `model_name` of the form `local-dir:/path` (open_clip's own local folder schema);
3. the open_clip tag `config.pretrained` resolved in the local caches only: the Hugging
   Face hub cache (HF_HUB_CACHE / HF_HOME, `try_to_load_from_cache`, no request made) and
   open_clip's URL cache (~/.cache/clip);
4. with `allow_download`, open_clip's normal download.

Otherwise it raises `WeightsUnavailable`, which names every place it looked and how to
provide the weights.

`tiny_clip_config()` is a ~1.7 M-parameter CLIP architecture registered with open_clip
under TINY_CLIP_NAME; `write_tiny_clip_checkpoint(path)` writes random weights for it so
tests and benches run the real loading and inference path without downloading anything.
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .config import JudgeConfig

TINY_CLIP_NAME = "longvid-tiny-clip"


class WeightsUnavailable(InputError):
    """CLIP weights were asked for but none are available locally (an InputError: the
    configuration must change; the message says how)."""


def tiny_clip_config() -> dict[str, Any]:
    """A tiny open_clip CLIP architecture (random weights only; for tests and benches)."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }


_BUILTIN_CONFIGS = {TINY_CLIP_NAME: tiny_clip_config}


def register_builtin_configs() -> None:
    """Make longvid's own architectures known to open_clip (idempotent, per process; Ray
    workers call it through load_clip)."""
    from open_clip import factory

    for name, make in _BUILTIN_CONFIGS.items():
        if name not in factory._MODEL_CONFIGS:
            # _rescan_model_configs() keeps existing entries, so this survives add_model_config.
            factory._MODEL_CONFIGS[name] = make()


def write_tiny_clip_checkpoint(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a random-weight checkpoint of the tiny CLIP to `path` (a state dict)."""
    import logging

    import open_clip
    import torch

    register_builtin_configs()
    torch.manual_seed(seed)
    factory_log = logging.getLogger()  # open_clip warns "initialized randomly" on the root logger
    level = factory_log.level
    factory_log.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None, pretrained_text=False)
    finally:
        factory_log.setLevel(level)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return path


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no GPU; use device 'auto' or 'cpu'")
    return device


@dataclass
class LoadedClip:
    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    precision: str
    source: str  # where the weights came from, for the manifest
    preprocess_cfg: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):  # (model, preprocess, tokenizer) = load_clip(...)
        return iter((self.model, self.preprocess, self.tokenizer))


def _cached_weights(model_name: str, tag: str, cache_dir: Path | None = None) -> tuple[str | None, dict[str, Any], list[str]]:
    """(local file or None, the tag's pretrained cfg, the places looked at)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag) or {}
    looked: list[str] = []
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(model_name)
        looked.append(f"open_clip has no tag '{tag}' for '{model_name}' (known: {', '.join(known) or 'none'})")
        return None, cfg, looked
    if cfg.get("file"):
        looked.append(cfg["file"])
        if os.path.isfile(cfg["file"]):
            return cfg["file"], cfg, looked
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import constants as hf_constants
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            looked.append(f"hf-hub:{hub} (huggingface_hub not installed)")
        else:
            from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

            repo_id, filename = os.path.split(hub)  # "org/repo/" -> default file names
            names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
            if filename.endswith((".bin", ".pth")):
                names.insert(0, filename[:-4] + ".safetensors")
            for name in names:
                looked.append(f"{cache_dir or hf_constants.HF_HUB_CACHE} :: {repo_id}/{name}")
                found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)  # reads the cache only
                if isinstance(found, str) and os.path.isfile(found):
                    return found, cfg, looked
    url = cfg.get("url", "")
    if url:
        target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        looked.append(target)
        if os.path.isfile(target):
            return target, cfg, looked
    return None, cfg, looked


def _unavailable(config: JudgeConfig, looked: list[str]) -> WeightsUnavailable:
    # The places go on the first line: a fallback notice (make_scorer) shows only that line.
    places = "; ".join(looked) if looked else "(nowhere)"
    return WeightsUnavailable(
        f"CLIP weights for model '{config.model_name}' (pretrained '{config.pretrained}') are not available "
        f"locally; looked in: {places}\n"
        "Provide them in one of these ways: set checkpoint_path to a local weights file "
        "(e.g. open_clip_model.safetensors for this architecture); pre-fill the Hugging Face cache "
        "(HF_HOME) on a machine with internet, e.g. `python -c \"import open_clip; "
        f"open_clip.create_model('{config.model_name}', pretrained='{config.pretrained}')\"`; "
        "set allow_download=True to let open_clip fetch them; or use backend 'structural' "
        "(or 'auto', which falls back to it) to judge without CLIP."
    )


@contextlib.contextmanager
def _offline():
    """Keep Hugging Face offline while loading (for HF-tokenizer models); restored after.

    A write, not a read of configuration: huggingface_hub's own switch is the module constant
    set below, but libraries loaded under it (transformers' tokenizers) check the variable
    themselves, and huggingface_hub has no per-call offline argument in the installed version."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants as hf_constants
    except ImportError:  # pragma: no cover
        hf_constants = None
    saved = getattr(hf_constants, "HF_HUB_OFFLINE", None)
    if hf_constants is not None:
        hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if hf_constants is not None:
            hf_constants.HF_HUB_OFFLINE = saved
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def load_clip(config: JudgeConfig) -> LoadedClip:
    """Load CLIP for inference: eval mode, fp16 on CUDA, fp32 on CPU.

    Unpacks as `(model, preprocess, tokenizer)`; `.device`, `.source` and `.preprocess_cfg`
    are there too. Raises WeightsUnavailable when no weights are found (see module doc)."""
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise WeightsUnavailable(f"open_clip cannot be imported ({exc}); install open-clip-torch") from exc

    register_builtin_configs()
    device = resolve_device(config.device)
    precision = "fp16" if device == "cuda" else "fp32"
    common: dict[str, Any] = {"precision": precision, "device": device, "pretrained_text": False}
    if config.cache_dir is not None:
        common["cache_dir"] = str(config.cache_dir)

    model_name = config.model_name
    if config.checkpoint_path is not None:
        path = Path(config.checkpoint_path).expanduser()
        if not path.is_file():
            raise _unavailable(config, [f"checkpoint_path {path} (no such file)"])
        if open_clip.get_model_config(model_name) is None:
            raise InputError(f"unknown CLIP architecture '{model_name}'; known: {', '.join(open_clip.list_models()[:20])}, ...")
        weights, source = str(path), str(path)
        # A checkpoint of a tagged model still wants that tag's preprocessing and activation.
        pretrained_cfg = open_clip.get_pretrained_cfg(model_name, config.pretrained) or {}
    elif model_name.startswith("local-dir:"):
        folder = Path(model_name[len("local-dir:"):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise _unavailable(config, [f"{folder}/open_clip_config.json (missing)"])
        weights, pretrained_cfg, source = None, {}, model_name
    else:
        if open_clip.get_model_config(model_name) is None and not model_name.startswith("hf-hub:"):
            raise InputError(f"unknown CLIP architecture '{model_name}'; known: {', '.join(open_clip.list_models()[:20])}, ...")
        found, pretrained_cfg, looked = (None, {}, [f"hf-hub model {model_name}"]) if model_name.startswith("hf-hub:") else _cached_weights(model_name, config.pretrained, config.cache_dir)
        if found is not None:
            weights, source = found, f"cache:{found}"
        elif config.allow_download:
            weights, source = config.pretrained, f"download:{model_name}/{config.pretrained}"
        else:
            raise _unavailable(config, looked)

    kwargs = dict(common)
    offline = _offline() if not config.allow_download else contextlib.nullcontext()
    if pretrained_cfg.get("quick_gelu"):
        kwargs["force_quick_gelu"] = True
    for key, arg in (("mean", "image_mean"), ("std", "image_std"), ("interpolation", "image_interpolation"), ("resize_mode", "image_resize_mode")):
        if pretrained_cfg.get(key) is not None:
            kwargs[arg] = pretrained_cfg[key]
    try:
        with offline:
            if model_name.startswith(("local-dir:", "hf-hub:")):
                model, _, preprocess = open_clip.create_model_and_transforms(model_name, **kwargs)
            else:
                model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=weights, **kwargs)
            tokenizer = open_clip.get_tokenizer(model_name)
    except (RuntimeError, OSError) as exc:  # FileNotFoundError is an OSError
        text = str(exc).lower()
        if isinstance(exc, OSError) or "download" in text or "offline" in text:
            raise _unavailable(config, [f"{source} ({exc.__class__.__name__}: {str(exc)[:300]})"]) from exc
        raise
    model.eval()
    from open_clip.model import get_model_preprocess_cfg

    return LoadedClip(model, preprocess, tokenizer, device, precision, source, copy.deepcopy(get_model_preprocess_cfg(model)))
