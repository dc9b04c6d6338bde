"""Durable run folders (plan.json, manifest.json, segments/*.mp4, final.mp4) on a local disk
or on S3, and the content-addressed segment cache beside them. What is where: layout.py.

No reader ever sees half a file: locally every write goes to a temporary file in the same
folder, is flushed to disk and renamed over the target; on S3 an object appears whole when
its PUT (or its multipart upload) completes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from ..errors import InputError
# FINAL, PLAN, REPORT and segment_path are also imported from here by older callers.
from .layout import CACHE, FINAL, MANIFEST, PLAN, REPORT, SEGMENTS, STATE, cache_path, segment_path  # noqa: F401
from ..settings import DEFAULT_S3_PART_MB

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def synced_temp_file(path: Path, data: bytes) -> Path:
    """`data` in a new temporary file beside `path`, on disk (fsynced): ready to be renamed
    or linked into place, so no reader ever sees a half-written `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = synced_temp_file(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_copy(source: Path, target: Path) -> None:
    if Path(source).resolve() == Path(target).resolve():
        return
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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_run_id(seed_text: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(f"{seed_text}{os.getpid()}{_dt.datetime.now().timestamp()}".encode()).hexdigest()[:8]
    return f"{stamp}-{digest}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id) or run_id in (".", ".."):
        raise InputError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only")
    return run_id


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


class S3RunFolder:
    def __init__(self, store: S3RunStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.scratch = store.scratch_root / run_id

    def _key(self, relative: str) -> str:
        return f"{self.store.prefix}{self.run_id}/{relative}"

    def location(self, relative: str = "") -> str:
        return f"s3://{self.store.bucket}/{self._key(relative).rstrip('/')}"

    def write_bytes(self, relative: str, data: bytes) -> None:
        self.store.client.put_object(Bucket=self.store.bucket, Key=self._key(relative), Body=data)
        local = self.scratch / relative
        if local.exists():  # keep the local copy in step, or a later read would see old bytes
            atomic_write_bytes(local, data)

    def read_bytes(self, relative: str) -> bytes:
        return self.store.client.get_object(Bucket=self.store.bucket, Key=self._key(relative))["Body"].read()

    def exists(self, relative: str) -> bool:
        return self.store.exists(self._key(relative))

    def local_path(self, relative: str) -> Path:
        local = self.scratch / relative
        if not local.is_file():
            local.parent.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(prefix=f".{local.name}.", suffix=".partial", dir=local.parent)
            os.close(fd)
            try:
                self.store.client.download_file(self.store.bucket, self._key(relative), partial)
                os.replace(partial, local)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        return local

    def scratch_path(self, relative: str) -> Path:
        path = self.scratch / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def discard_scratch(self) -> None:
        """Drop this run's local copies (merged video, downloaded segments): everything is
        on S3, and a long-lived driver rendering thousands of runs must not fill its disk."""
        import shutil

        shutil.rmtree(self.scratch, ignore_errors=True)

    def create_exclusive(self, relative: str, data: bytes) -> bool:
        """Write `relative` only if no object has its key yet (an S3 conditional write)."""
        from botocore.exceptions import ClientError

        try:
            self.store.client.put_object(Bucket=self.store.bucket, Key=self._key(relative), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise

    def swap(self, relative: str, expected: bytes | None, data: bytes | None) -> bool:
        """Compare and swap with S3 conditional requests (If-Match on the ETag read, or
        If-None-Match when `expected` is None): a concurrent writer makes it return False."""
        from botocore.exceptions import ClientError

        key, client, bucket = self._key(relative), self.store.client, self.store.bucket
        try:
            current = client.get_object(Bucket=bucket, Key=key)
            body, etag = current["Body"].read(), current["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            body, etag = None, None
        if body != expected:
            return False
        try:
            if data is None:
                client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
            elif etag is None:
                client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            else:
                client.put_object(Bucket=bucket, Key=key, Body=data, IfMatch=etag)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
                return False
            raise
        return True

    def publish(self, relative: str, local: Path) -> None:
        # upload_file switches to a multipart upload for large files; the object only
        # becomes visible when the upload completes.
        self.store.client.upload_file(str(local), self.store.bucket, self._key(relative), Config=self.store.transfer)


class S3RunStore:
    """Run folders under s3://bucket/prefix/. Credentials, region and endpoint come from
    the usual AWS settings (AWS_ENDPOINT_URL for S3-compatible stores)."""

    def __init__(self, url: str, scratch_root: Path | None = None, client=None, part_mb: float = DEFAULT_S3_PART_MB):
        if not url.startswith("s3://"):
            raise InputError(f"not an S3 URL: {url!r}")
        bucket, _, prefix = url[5:].partition("/")
        if not bucket:
            raise InputError(f"S3 URL {url!r} has no bucket; use s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.client = client or boto3.client("s3")
        part = int(part_mb * 1024 * 1024)  # LONGVID_S3_PART_MB: tune for slow links
        self.transfer = TransferConfig(multipart_threshold=part, multipart_chunksize=max(part, 5 * 1024 * 1024))
        # Per user, so another account on the host cannot plant files in it.
        self.scratch_root = scratch_root or Path(tempfile.gettempdir()) / f"longvid-s3-{os.getuid()}" / bucket / self.prefix.strip("/")

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def create(self, run_id: str) -> S3RunFolder:
        check_run_id(run_id)
        if self.has_run(run_id):
            raise FileExistsError(f"run {run_id} already exists in {self.url}")
        return S3RunFolder(self, run_id)

    def open(self, run_id: str) -> S3RunFolder:
        if not self.has_run(run_id):
            raise InputError(f"no run {run_id!r} under {self.url}")
        return S3RunFolder(self, run_id)

    def has_run(self, run_id: str) -> bool:
        return self.exists(f"{self.prefix}{check_run_id(run_id)}/{MANIFEST}")

    def list_runs(self) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        runs = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix) :].rstrip("/")
                if name not in (CACHE, STATE) and self.has_run(name):
                    runs.append(name)
        return sorted(runs)

    def cache_get(self, key: str) -> bytes | None:
        object_key = f"{self.prefix}{cache_path(key)}"
        if not self.exists(object_key):
            return None
        return self.client.get_object(Bucket=self.bucket, Key=object_key)["Body"].read()

    def cache_put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}{cache_path(key)}", Body=data)

    def put_state(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}{STATE}/{name}", Body=data)

    def get_state(self, name: str) -> bytes | None:
        key = f"{self.prefix}{STATE}/{name}"
        if not self.exists(key):
            return None
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()


RunStore = LocalRunStore | S3RunStore


def open_store(location: str | Path, s3_part_mb: float = DEFAULT_S3_PART_MB) -> RunStore:
    """`s3://bucket/prefix` -> S3, anything else -> a local folder."""
    text = str(location)
    return S3RunStore(text, part_mb=s3_part_mb) if text.startswith("s3://") else LocalRunStore(text)
