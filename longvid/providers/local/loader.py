"""Where a model's weights are, and loading them into a diffusers pipeline.

Weights come from `--model-dir` / LONGVID_LOCAL_MODEL_DIR (a folder laid out like the model's
repository, e.g. written by `save_pretrained` or `hf download`), else the Hugging Face cache
(HF_HOME / HF_HUB_CACHE, read by huggingface_hub itself). They are downloaded only when the
user allows it (--allow-download). A missing model is an InputError that says where it
looked and how to get it, raised before anything is planned or paid.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import InputError
from ...settings import LocalModelSettings
from .profiles import ModelProfile, profile_named

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadSpec:
    """What to load, independent of the machine: two equal specs share one loaded pipeline.
    Where the weights are is resolved on the machine that loads them (`source`), since a
    cluster's GPU nodes cache them in their own Hugging Face cache."""

    profile: ModelProfile
    model_dir: str | None  # --model-dir; None: the profile's repository, from the cache
    allow_download: bool
    precision: str | None  # None: the profile's on a GPU, fp32 on the CPU
    cpu_offload: bool
    vae_tiling: bool

    @property
    def key(self) -> str:
        import hashlib

        text = repr((self.profile.key, self.model_dir, self.precision, self.cpu_offload, self.vae_tiling))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def settings(self) -> LocalModelSettings:
        return LocalModelSettings(model=self.profile.key, model_dir=Path(self.model_dir) if self.model_dir else None,
                                  allow_download=self.allow_download, precision=self.precision, cpu_offload=self.cpu_offload,
                                  vae_tiling=self.vae_tiling)

    def source(self) -> str:
        """The weights' folder on this machine (the repository id when downloading is
        allowed and they are absent), or an InputError naming where it looked."""
        settings = self.settings()
        folder = find_weights(settings)
        if folder is not None:
            return str(folder)
        if self.allow_download and self.model_dir is None:
            return self.profile.repo_id
        raise InputError(missing_model_message(settings))


def profile_for(settings: LocalModelSettings) -> ModelProfile:
    try:
        return profile_named(settings.model)
    except ValueError as exc:
        raise InputError(f"LONGVID_LOCAL_MODEL: {exc}") from None


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str) -> Path | None:
    """The model's folder in the Hugging Face cache, or None; never downloads."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        return None


def is_model_folder(folder: Path) -> bool:
    return (folder / "model_index.json").is_file()


def find_weights(settings: LocalModelSettings) -> Path | None:
    """The folder holding the weights, or None when they are not on this machine."""
    if settings.model_dir is not None:
        return settings.model_dir if is_model_folder(settings.model_dir) else None
    return cached_snapshot(profile_for(settings).repo_id)


def missing_model_message(settings: LocalModelSettings) -> str:
    profile = profile_for(settings)
    if settings.model_dir is not None:
        where = f"{settings.model_dir} (--model-dir / LONGVID_LOCAL_MODEL_DIR)"
        what = "is not a diffusers model folder (no model_index.json)" if settings.model_dir.exists() else "does not exist"
        return (f"local model {profile.key!r}: {where} {what}; download it with "
                f"`hf download {profile.repo_id} --local-dir {settings.model_dir}`")
    return (f"local model {profile.key!r} ({profile.repo_id}) is not in the Hugging Face cache {hub_cache_dir()} "
            f"and no --model-dir was given; get it with `hf download {profile.repo_id}`, pass --model-dir DIR, "
            f"or add --allow-download")


def load_spec(settings: LocalModelSettings, check_here: bool = True) -> LoadSpec:
    """What to load. With `check_here` (the driver, when it runs the model on this machine or
    in its in-process Ray), weights that are not here are an InputError that says where it
    looked, before anything starts; a driver on a cluster leaves that to the GPU nodes."""
    spec = LoadSpec(profile=profile_for(settings), model_dir=str(settings.model_dir) if settings.model_dir else None,
                    allow_download=settings.allow_download, precision=settings.precision,
                    cpu_offload=settings.cpu_offload, vae_tiling=settings.vae_tiling)
    if check_here:
        spec.source()
    return spec


def torch_dtype(precision: str | None, profile: ModelProfile, on_gpu: bool):
    """bf16/fp16 on a GPU; fp32 on the CPU, where half precision is slow or unsupported."""
    import torch

    chosen = (precision or profile.precision) if on_gpu else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[chosen]


def load_pipeline(spec: LoadSpec, device: str):
    """The diffusers pipeline for `spec` on `device` ("cuda" or "cpu"), with the memory
    options applied. Slow for real models (seconds to minutes): callers keep it resident."""
    import diffusers

    started = time.perf_counter()
    source = spec.source()
    cls = getattr(diffusers, spec.profile.pipeline_class)
    pipe = cls.from_pretrained(source, dtype=torch_dtype(spec.precision, spec.profile, device == "cuda"),
                               local_files_only=not spec.allow_download)
    if device == "cuda" and spec.cpu_offload:
        pipe.enable_model_cpu_offload()  # submodules move to the GPU only while they run
    else:
        pipe.to(device)
    if spec.vae_tiling:
        # Decoding 720p video in one piece needs more memory than the denoiser itself.
        for switch in ("enable_tiling", "enable_slicing"):
            if hasattr(pipe.vae, switch):
                getattr(pipe.vae, switch)()
    pipe.set_progress_bar_config(disable=True)
    log.info("loaded %s from %s on %s in %.1f s", spec.profile.key, source, device, time.perf_counter() - started)
    return pipe
