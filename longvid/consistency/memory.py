"""Character memory: what each character looked like, as embeddings from the judge's scorer.

Per character it keeps the reference embeddings (from reference images; never evicted)
and the most recent accepted appearances (a bounded FIFO, `max_appearances` each), so its
size does not grow with the video. It remembers which backend and embedding size made
its vectors and refuses to mix them (a CLIP vector and a structural one are not
comparable). `save`/`load` use one .npz file written atomically (temp file in the same
folder, fsync, os.replace), so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .scorers import best_match

_FORMAT = 1


class CharacterMemory:
    def __init__(self, backend: str = "", dim: int | None = None, max_appearances: int = 16) -> None:
        if max_appearances < 0:
            raise ValueError("max_appearances must be >= 0")
        self.backend = backend
        self.dim = dim
        self.max_appearances = max_appearances
        self._names: dict[str, str] = {}  # casefolded -> display name
        self._refs: dict[str, np.ndarray] = {}
        self._seen: dict[str, np.ndarray] = {}

    # -- content --------------------------------------------------------------------------
    def _check(self, embeddings: np.ndarray, backend: str | None) -> np.ndarray:
        emb = np.atleast_2d(np.asarray(embeddings, np.float32))
        if emb.ndim != 2:
            raise ValueError(f"embeddings must be (K, D), got shape {emb.shape}")
        if backend and self.backend and backend != self.backend:
            raise ValueError(f"this memory holds '{self.backend}' embeddings; got '{backend}' ones (not comparable)")
        if self.dim is not None and emb.shape[1] != self.dim:
            raise ValueError(f"this memory holds {self.dim}-d embeddings; got {emb.shape[1]}-d ones (another scorer?)")
        if backend and not self.backend:
            self.backend = backend
        if self.dim is None:
            self.dim = int(emb.shape[1])
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.maximum(norms, 1e-12)

    def _key(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise ValueError("a character needs a name")
        key = name.casefold()
        self._names.setdefault(key, name)
        return key

    def add_reference(self, name: str, embeddings: np.ndarray, backend: str | None = None) -> None:
        """Reference appearances (from reference images); kept for good."""
        emb = self._check(embeddings, backend)
        key = self._key(name)
        self._refs[key] = np.concatenate([self._refs[key], emb]) if key in self._refs else emb

    def add_appearance(self, name: str, embeddings: np.ndarray, backend: str | None = None) -> None:
        """Appearances in accepted segments; only the newest `max_appearances` are kept."""
        emb = self._check(embeddings, backend)
        key = self._key(name)
        seen = np.concatenate([self._seen[key], emb]) if key in self._seen else emb
        self._seen[key] = seen[-self.max_appearances :] if self.max_appearances else seen[:0]

    def names(self) -> list[str]:
        return [self._names[k] for k in sorted(set(self._refs) | set(self._seen))]

    def embeddings(self, name: str) -> np.ndarray:
        key = name.strip().casefold()
        parts = [p for p in (self._refs.get(key), self._seen.get(key)) if p is not None and len(p)]
        if not parts:
            return np.zeros((0, self.dim or 0), np.float32)
        return np.concatenate(parts)

    def __contains__(self, name: str) -> bool:
        return len(self.embeddings(name)) > 0

    def __len__(self) -> int:
        return len(self.names())

    def score(self, name: str, embedding: np.ndarray) -> float | None:
        """Mean over the given rows of the best match among the character's embeddings;
        None for a character it has never seen."""
        memory = self.embeddings(name)
        if len(memory) == 0:
            return None
        return float(best_match(self._check(embedding, None), memory).mean())

    def as_refs(self) -> dict[str, np.ndarray]:
        """{display name: (K, D)} for ConsistencyJudge.score_segment(character_refs=...)."""
        return {name: self.embeddings(name) for name in self.names()}

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(set(self._refs) | set(self._seen))
        meta = {
            "format": _FORMAT,
            "backend": self.backend,
            "dim": self.dim,
            "max_appearances": self.max_appearances,
            "characters": [self._names[k] for k in keys],
        }
        arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
        for i, key in enumerate(keys):
            if key in self._refs:
                arrays[f"ref_{i}"] = self._refs[key]
            if key in self._seen:
                arrays[f"seen_{i}"] = self._seen[key]
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharacterMemory:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path}: unknown character memory format {meta.get('format')}")
            memory = cls(meta.get("backend", ""), meta.get("dim"), meta.get("max_appearances", 16))
            for i, name in enumerate(meta["characters"]):
                key = memory._key(name)
                if f"ref_{i}" in data:
                    memory._refs[key] = data[f"ref_{i}"].astype(np.float32)
                if f"seen_{i}" in data:
                    memory._seen[key] = data[f"seen_{i}"].astype(np.float32)
        return memory
