"""Durable run folders (plan.json, manifest.json, segments/*.mp4, final.mp4) on a local disk
or on S3 (store_s3.py), and the content-addressed segment cache beside them. What is where:
layout.py.

No reader ever sees half a file: locally every write goes to a temporary file in the same
folder, is flushed to disk and renamed over the target; on S3 an object appears whole when
its PUT (or its multipart upload) completes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from ..errors import InputError
from ..settings import DEFAULT_S3_PART_MB
# The file helpers, run ids and S3 classes (and FINAL, PLAN, REPORT, segment_path) are also
# imported from here by their callers.
from .atomic_files import atomic_copy, atomic_write_bytes, sha256_file, synced_temp_file  # noqa: F401
from .layout import CACHE, FINAL, MANIFEST, PLAN, REPORT, SEGMENTS, STATE, cache_path, segment_path  # noqa: F401
from .run_ids import RUN_ID, check_run_id, new_run_id  # noqa: F401
from .store_s3 import S3RunFolder, S3RunStore  # noqa: F401


class RunFolder(Protocol):
    """One render's folder. Paths inside it are relative, so a run can move between stores."""

    run_id: str

    def location(self, relative: str = "") -> str: ...

    def write_bytes(self, relative: str, data: bytes) -> None: ...

    def read_bytes(self, relative: str) -> bytes: ...

    def exists(self, relative: str) -> bool: ...

    def local_path(self, relative: str) -> Path:
        """A local file holding the object (S3 objects are downloaded to a scratch folder)."""
        ...

    def scratch_path(self, relative: str) -> Path:
        """Where to build a large local file that `publish` will then store."""
        ...

    def publish(self, relative: str, local: Path) -> None: ...

    def create_exclusive(self, relative: str, data: bytes) -> bool: ...

    def discard_scratch(self) -> None: ...

    def swap(self, relative: str, expected: bytes | None, data: bytes | None) -> bool: ...


def write_model(run: RunFolder, relative: str, model: BaseModel) -> None:
    run.write_bytes(relative, model.model_dump_json(indent=2).encode())


def read_manifest(run: RunFolder):
    """The run's manifest, refused clearly when corrupt or from another version."""
    from ..manifest import load_manifest

    return load_manifest(run.read_bytes(MANIFEST).decode(), run.location(MANIFEST))


def clip_verifies(run: RunFolder, record) -> bool:
    """Whether a segment's file is there and matches the checksum in its manifest record."""
    try:
        return run.exists(record.clip.path) and sha256_file(run.local_path(record.clip.path)) == record.clip.sha256
    except OSError:
        return False


class LocalRunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.run_id = self.path.name

    def location(self, relative: str = "") -> str:
        return str(self.path / relative) if relative else str(self.path)

    def write_bytes(self, relative: str, data: bytes) -> None:
        atomic_write_bytes(self.path / relative, data)

    def read_bytes(self, relative: str) -> bytes:
        return (self.path / relative).read_bytes()

    def exists(self, relative: str) -> bool:
        return (self.path / relative).is_file()

    def local_path(self, relative: str) -> Path:
        return self.path / relative

    def scratch_path(self, relative: str) -> Path:
        return self.path / relative  # merge writes it atomically in place

    def create_exclusive(self, relative: str, data: bytes) -> bool:
        """Write `relative` only if it does not exist yet; False if it did (another won)."""
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = synced_temp_file(target, data)
        try:
            os.link(tmp, target)  # atomic, and fails if the target exists
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def discard_scratch(self) -> None:
        """Nothing to drop: a local run folder is its own working copy."""

    def swap(self, relative: str, expected: bytes | None, data: bytes | None) -> bool:
        """Compare and swap: replace `relative` with `data` (None: delete it) only if it now
        holds exactly `expected` (None: absent). Atomic among processes on this filesystem."""
        import fcntl

        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.guard", "a+b") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            current = target.read_bytes() if target.is_file() else None
            if current != expected:
                return False
            if data is None:
                target.unlink(missing_ok=True)
            else:
                atomic_write_bytes(target, data)
            return True

    def publish(self, relative: str, local: Path) -> None:
        atomic_copy(local, self.path / relative)


class LocalRunStore:
    """Run folders under a local root (default ./runs); the cache in root/cache."""

    def __init__(self, root: Path | str = "runs"):
        self.root = Path(root)

    @property
    def url(self) -> str:
        return str(self.root)

    def create(self, run_id: str) -> LocalRunFolder:
        path = self.root / check_run_id(run_id)
        if (path / MANIFEST).exists():
            raise FileExistsError(f"run {run_id} already exists in {self.root}")
        # A folder without a manifest is a render that died while starting: start it again.
        (path / SEGMENTS).mkdir(parents=True, exist_ok=True)
        return LocalRunFolder(path)

    def open(self, run_id: str) -> LocalRunFolder:
        path = self.root / check_run_id(run_id)
        if not (path / MANIFEST).is_file():
            raise InputError(f"no run {run_id!r} under {self.root}")
        return LocalRunFolder(path)

    def has_run(self, run_id: str) -> bool:
        return (self.root / check_run_id(run_id) / MANIFEST).is_file()

    def list_runs(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).is_file())

    def cache_get(self, key: str) -> bytes | None:
        path = self.root / cache_path(key)
        return path.read_bytes() if path.is_file() else None

    def cache_put(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self.root / cache_path(key), data)

    # Store-wide state beside the runs (provider health): small files under root/state.
    def put_state(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self.root / STATE / name, data)

    def get_state(self, name: str) -> bytes | None:
        path = self.root / STATE / name
        return path.read_bytes() if path.is_file() else None


RunStore = LocalRunStore | S3RunStore


def open_store(location: str | Path, s3_part_mb: float = DEFAULT_S3_PART_MB) -> RunStore:
    """`s3://bucket/prefix` -> S3, anything else -> a local folder."""
    text = str(location)
    return S3RunStore(text, part_mb=s3_part_mb) if text.startswith("s3://") else LocalRunStore(text)
