"""Frame scorers: images in, L2-normalised embeddings out, one similarity for both backends.

Both backends implement the `Scorer` protocol:

    embed(frames: list[RGB uint8 (H, W, 3)]) -> (N, D) float32, rows of unit length
    similarity(a, b) -> float    # each row of a matched to its closest row of b, averaged
    text_similarity(frames_emb, text) -> float | None   # CLIP only

ClipScorer runs open_clip (batched, fp16 on CUDA). Preprocessing is done on tensors on the
scorer's device (shortest side resized with antialiased bicubic, centre crop, CLIP mean/
std), the same steps as open_clip's PIL transform, without a PIL round trip per frame.

StructuralScorer needs no weights. A frame becomes the concatenation of two unit vectors,
weighted so the whole stays unit length:

    sqrt(w_s) * structure  ++  sqrt(w_c) * colour          (w_s + w_c = 1)

structure: a 32x18 grayscale thumbnail (box-filtered), mean removed, unit length; the dot
    product of two is their normalised cross-correlation, the "structure" term of SSIM
    computed over the whole thumbnail.
colour: the square root of a normalised joint HSV histogram (12 hue x 3 saturation x 4
    value bins, from a 128x72 box-filtered copy; each hue bin spreads a quarter of its
    mass to each circular neighbour, so a small hue shift lowers the overlap a little
    instead of flipping whole bins); the dot product of two is the Bhattacharyya
    coefficient of the histograms (1 = same colour distribution).

So the cosine of two embeddings is exactly w_s * NCC + w_c * BC, and the CLIP code path
(dot products, best match, mean) serves both. w_s = 0.25: colour carries the look of a
scene, which should hold for a whole scene, while a camera move legitimately lowers the
thumbnail correlation against a scene's first frame (measured on preview renders: NCC
falls to ~0.54 over a 20 s pan while the histogram overlap stays at 0.999). Thumbnails are squashed to 32x18 whatever
the aspect ratio, so compare frames with frames of the same aspect (references are
centre-cropped to the frame's aspect by the caller or the judge).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .config import JudgeConfig


@runtime_checkable
class Scorer(Protocol):
    backend: str
    notes: str

    def embed(self, frames: Sequence[np.ndarray]) -> np.ndarray: ...

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float: ...

    def text_similarity(self, frames_emb: np.ndarray, text: str) -> float | None: ...


def _rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x[None, :] if x.ndim == 1 else x


def similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) cosines of unit rows (dot products)."""
    a, b = _rows(a), _rows(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"embeddings of different sizes ({a.shape[1]} vs {b.shape[1]}): they come from different "
            "scorers; re-embed the references with the judge's scorer"
        )
    return a @ b.T


def best_match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of a, its cosine with the closest row of b, clipped to [0, 1]."""
    return np.clip(similarity_matrix(a, b).max(axis=1), 0.0, 1.0)


def best_match_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over a's rows of the best match in b: 1 = every frame has an identical partner."""
    a, b = _rows(a), _rows(b)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("similarity needs at least one embedding on each side")
    return float(best_match(a, b).mean())


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB frame (H, W, 3), got shape {frame.shape}")
    if frame.shape[2] == 4:
        frame = frame[..., :3]
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame)


class StructuralScorer:
    """Weight-free scorer: thumbnail structure (NCC) + HSV colour histogram (Bhattacharyya)."""

    backend = "structural"

    def __init__(
        self,
        notes: str = "",
        structure_weight: float = 0.25,
        thumb_size: tuple[int, int] = (32, 18),
        hist_size: tuple[int, int] = (128, 72),
        bins: tuple[int, int, int] = (12, 3, 4),
        hue_smoothing: float = 0.25,
    ) -> None:
        if not 0.0 <= structure_weight <= 1.0:
            raise ValueError("structure_weight must be in [0, 1]")
        self.notes = notes
        self.structure_weight = structure_weight
        self.thumb_size = thumb_size
        self.hist_size = hist_size
        self.bins = bins
        self.hue_smoothing = hue_smoothing
        self.dim = thumb_size[0] * thumb_size[1] + bins[0] * bins[1] * bins[2]

    def _one(self, frame: np.ndarray) -> np.ndarray:
        from PIL import Image

        image = Image.fromarray(_as_rgb(frame))
        small = image.resize(self.hist_size, Image.Resampling.BOX) if image.size != self.hist_size else image
        thumb = np.asarray(small.resize(self.thumb_size, Image.Resampling.BOX), np.float32)
        gray = thumb @ np.array([0.299, 0.587, 0.114], np.float32)
        structure = (gray - gray.mean()).ravel()
        norm = float(np.linalg.norm(structure))
        structure = structure / norm if norm > 1e-3 * structure.size else np.zeros_like(structure)

        hsv = np.asarray(small.convert("HSV"), np.int32)
        hb, sb, vb = self.bins
        index = ((hsv[..., 0] * hb) >> 8) * (sb * vb) + ((hsv[..., 1] * sb) >> 8) * vb + ((hsv[..., 2] * vb) >> 8)
        hist = np.bincount(index.ravel(), minlength=hb * sb * vb).astype(np.float32)
        if self.hue_smoothing:
            # Spread each hue bin over its neighbours (hue is circular), so that a small hue
            # shift changes the overlap a little instead of flipping whole bins.
            cube = hist.reshape(hb, sb * vb)
            k = self.hue_smoothing
            hist = ((1 - 2 * k) * cube + k * np.roll(cube, 1, axis=0) + k * np.roll(cube, -1, axis=0)).ravel()
        colour = np.sqrt(hist / hist.sum())  # unit length: sum of p is 1

        w = self.structure_weight
        out = np.concatenate([np.sqrt(w) * structure, np.sqrt(1 - w) * colour]).astype(np.float32)
        return out / max(float(np.linalg.norm(out)), 1e-12)

    def embed(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        if len(frames) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._one(f) for f in frames])

    def parts(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(structure, colour) unit parts of embeddings, for diagnostics."""
        emb = _rows(emb)
        n = self.thumb_size[0] * self.thumb_size[1]
        w = self.structure_weight
        return emb[:, :n] / max(np.sqrt(w), 1e-12), emb[:, n:] / max(np.sqrt(1 - w), 1e-12)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return best_match_similarity(a, b)

    def text_similarity(self, frames_emb: np.ndarray, text: str) -> float | None:
        return None


class ClipScorer:
    """open_clip image (and text) embeddings, batched by config.batch_size."""

    backend = "clip"

    def __init__(self, config: JudgeConfig, loaded: Any = None, notes: str = "") -> None:
        from .clip_model import load_clip

        self.config = config
        self.loaded = loaded if loaded is not None else load_clip(config)
        self.notes = notes or f"CLIP {config.model_name} from {self.loaded.source} on {self.loaded.device}"
        self.batch_size = config.batch_size
        self._text_cache: dict[str, np.ndarray] = {}
        import torch

        cfg = self.loaded.preprocess_cfg
        size = cfg.get("size", 224)
        self._size = (size, size) if isinstance(size, int) else tuple(size)
        self._resize_mode = cfg.get("resize_mode", "shortest")
        interpolation = cfg.get("interpolation", "bicubic")
        self._interpolation = interpolation if interpolation in ("bicubic", "bilinear") else "bilinear"
        device = self.loaded.device
        self._mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), device=device).view(1, 3, 1, 1)
        self._dtype = torch.float16 if self.loaded.precision == "fp16" else torch.float32
        self.dim = int(getattr(self.loaded.model, "embed_dim", 0) or self._probe_dim())

    def _probe_dim(self) -> int:
        return int(self.embed([np.zeros((8, 8, 3), np.uint8)]).shape[1])

    def _preprocess(self, frames: Sequence[np.ndarray]):
        import torch
        import torch.nn.functional as F

        out_h, out_w = self._size
        batch = []
        for frame in frames:
            x = torch.from_numpy(_as_rgb(frame)).to(self.loaded.device, non_blocking=True)
            x = x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            h, w = x.shape[-2:]
            if self._resize_mode == "squash":
                x = F.interpolate(x, size=(out_h, out_w), mode=self._interpolation, antialias=True, align_corners=False)
            else:  # "shortest" (CLIP's default): short side to size, then centre crop
                scale = max(out_h / h, out_w / w)
                new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
                if (new_h, new_w) != (h, w):
                    x = F.interpolate(x, size=(new_h, new_w), mode=self._interpolation, antialias=True, align_corners=False)
                top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
                x = x[..., top : top + out_h, left : left + out_w]
            batch.append(x.clamp_(0.0, 1.0))
        x = torch.cat(batch)
        return ((x - self._mean) / self._std).to(self._dtype)

    def embed(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        if len(frames) == 0:
            return np.zeros((0, getattr(self, "dim", 0)), np.float32)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                x = self._preprocess(frames[start : start + self.batch_size])
                emb = self.loaded.model.encode_image(x, normalize=True)
                chunks.append(emb.float().cpu().numpy())
        out = np.concatenate(chunks).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        missing = [t for t in texts if t not in self._text_cache]
        if missing:
            with torch.inference_mode():
                tokens = self.loaded.tokenizer(list(missing)).to(self.loaded.device)
                emb = self.loaded.model.encode_text(tokens, normalize=True).float().cpu().numpy()
            for text, row in zip(missing, emb):
                if len(self._text_cache) > 256:
                    self._text_cache.pop(next(iter(self._text_cache)))
                self._text_cache[text] = row / max(float(np.linalg.norm(row)), 1e-12)
        return np.stack([self._text_cache[t] for t in texts])

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return best_match_similarity(a, b)

    def text_similarity(self, frames_emb: np.ndarray, text: str) -> float | None:
        """Mean cosine of the frames to the text (CLIPScore without its 2.5x scaling)."""
        if not text:
            return None
        frames_emb = _rows(frames_emb)
        if len(frames_emb) == 0:
            return None
        return float(np.clip(similarity_matrix(frames_emb, self.embed_text([text])).mean(), -1.0, 1.0))


def make_scorer(config: JudgeConfig) -> StructuralScorer | ClipScorer:
    """The scorer the config asks for. `auto` falls back to the structural scorer when CLIP
    cannot be loaded, and the scorer's `notes` say why (record them in the manifest)."""
    from .clip_model import WeightsUnavailable

    if config.backend == "structural":
        return StructuralScorer(notes="structural scorer (backend 'structural' requested)")
    if config.backend == "clip":
        return ClipScorer(config)  # WeightsUnavailable propagates with its message
    try:
        return ClipScorer(config)
    except (WeightsUnavailable, ImportError) as exc:
        first_line = str(exc).splitlines()[0]
        return StructuralScorer(notes=f"structural scorer: CLIP unavailable, fell back (backend 'auto'): {first_line}")
