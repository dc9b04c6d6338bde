"""The durable run folder: plan.json, manifest.json, segments/*.mp4, final.mp4.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed
over the target, so a reader (or a resumed render) sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from pydantic import BaseModel

from ..errors import InputError

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_run_id(seed_text: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(f"{seed_text}{os.getpid()}{_dt.datetime.now().timestamp()}".encode()).hexdigest()[:8]
    return f"{stamp}-{digest}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id) or run_id in (".", ".."):
        raise InputError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only")
    return run_id


class RunFolder:
    """One render's folder. Paths inside it are relative, so a run can move between stores."""

    PLAN = "plan.json"
    MANIFEST = "manifest.json"
    FINAL = "final.mp4"

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    def resolve(self, relative: str) -> Path:
        return self.path / relative

    def segment_path(self, index: int) -> str:
        return f"segments/seg_{index:04d}.mp4"

    def write_bytes(self, relative: str, data: bytes) -> Path:
        target = self.resolve(relative)
        atomic_write_bytes(target, data)
        return target

    def write_model(self, relative: str, model: BaseModel) -> None:
        self.write_bytes(relative, model.model_dump_json(indent=2).encode())

    def read_text(self, relative: str) -> str:
        return self.resolve(relative).read_text(encoding="utf-8")


class LocalRunStore:
    """Run folders under a local root (default ./runs)."""

    def __init__(self, root: Path | str = "runs"):
        self.root = Path(root)

    def create(self, run_id: str) -> RunFolder:
        check_run_id(run_id)
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=False)
        (path / "segments").mkdir()
        return RunFolder(path)

    def open(self, run_id: str) -> RunFolder:
        check_run_id(run_id)
        path = self.root / run_id
        if not (path / RunFolder.MANIFEST).is_file():
            raise InputError(f"no run {run_id!r} under {self.root}")
        return RunFolder(path)
