"""Run folders on S3 (or an S3-compatible store): an object appears whole when its PUT (or
its multipart upload) completes; large files are built in a local scratch folder first."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import InputError
from ..settings import DEFAULT_S3_PART_MB
from .atomic_files import atomic_write_bytes
from .layout import CACHE, MANIFEST, STATE, cache_path
from .run_ids import check_run_id


class S3RunFolder:
    def __init__(self, store: S3RunStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.scratch = store.scratch_root / run_id

    def _key(self, relative: str) -> str:
        return f"{self.store.prefix}{self.run_id}/{relative}"

    def location(self, relative: str = "") -> str:
        return f"s3://{self.store.bucket}/{self._key(relative).rstrip('/')}"

    def write_bytes(self, relative: str, data: bytes) -> None:
        answer = self.store.client.put_object(Bucket=self.store.bucket, Key=self._key(relative), Body=data)
        local = self.scratch / relative
        if local.exists():  # keep the local copy in step, or a later read would see old bytes
            atomic_write_bytes(local, data)
            _remember_etag(local, answer.get("ETag"))

    def read_bytes(self, relative: str) -> bytes:
        return self.store.client.get_object(Bucket=self.store.bucket, Key=self._key(relative))["Body"].read()

    def exists(self, relative: str) -> bool:
        return self.store.exists(self._key(relative))

    def local_path(self, relative: str) -> Path:
        """A local copy of `relative`, fetched again when the object's ETag is not the one
        the copy was made from: another host (an API replica, a renderer with its own
        scratch folder) may have replaced the object since, and stale bytes would be served
        or uploaded as another version's file."""
        local = self.scratch / relative
        if local.is_file():
            current = self._etag(relative)
            if current is None or current == _known_etag(local):  # not on S3 (yet): the local file is all there is
                return local
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{local.name}.", suffix=".partial", dir=local.parent)
        os.close(fd)
        try:
            etag = self._etag(relative)
            self.store.client.download_file(self.store.bucket, self._key(relative), partial)
            os.replace(partial, local)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        # The ETag read before the download: if the object changed during it, the next
        # call sees a different ETag and fetches again (never the other way round).
        _remember_etag(local, etag)
        return local

    def _etag(self, relative: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return self.store.client.head_object(Bucket=self.store.bucket, Key=self._key(relative))["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

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
        if Path(local) == self.scratch / relative:  # the scratch copy is what was uploaded
            _remember_etag(Path(local), self._etag(relative))


def _etag_file(local: Path) -> Path:
    return local.parent / f".{local.name}.etag"


def _known_etag(local: Path) -> str | None:
    """The ETag of the object `local` was fetched from or uploaded as (None: unknown)."""
    try:
        return _etag_file(local).read_text()
    except FileNotFoundError:
        return None


def _remember_etag(local: Path, etag: str | None) -> None:
    if etag is None:
        _etag_file(local).unlink(missing_ok=True)
    else:
        atomic_write_bytes(_etag_file(local), etag.encode())


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
