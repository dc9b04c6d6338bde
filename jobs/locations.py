"""Read and write small text files on a local disk or on S3 (`s3://bucket/key`).

The batch job's spec list and summary may live beside the run store in S3, so that a job
on a cluster whose head node is replaced still finds them. Credentials, region and
endpoint come from the usual AWS settings (AWS_ENDPOINT_URL for S3-compatible stores).
"""

from __future__ import annotations

from pathlib import Path

from longvid.errors import InputError


def is_s3(location: str | Path) -> bool:
    return str(location).startswith("s3://")


def split_s3(location: str) -> tuple[str, str]:
    bucket, _, key = location[5:].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise InputError(f"{location!r} is not an S3 object; use s3://bucket/path/file")
    return bucket, key


def base_name(location: str | Path) -> str:
    """The file name without folders or extension: `s3://b/jobs/may.jsonl` -> `may`."""
    return Path(str(location).rstrip("/").rsplit("/", 1)[-1]).stem


def read_text(location: str | Path) -> str:
    text = str(location)
    if is_s3(text):
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split_s3(text)
        try:
            body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise InputError(f"cannot read {text} ({code}); check the bucket, the key and your AWS credentials") from None
        except BotoCoreError as exc:
            raise InputError(f"cannot read {text} ({exc.__class__.__name__}); check AWS_ENDPOINT_URL and your network") from None
    else:
        try:
            body = Path(text).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {text}: {exc.strerror or exc.__class__.__name__}") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{text} is not UTF-8 text; save the spec list as UTF-8 JSONL") from None


def write_text(location: str | Path, text: str) -> None:
    """Whole-file writes only: a reader never sees half a file (atomic rename locally; an
    S3 object appears when its PUT completes)."""
    data = text.encode("utf-8")
    if is_s3(location):
        import boto3

        bucket, key = split_s3(str(location))
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json")
    else:
        from longvid.runtime.store import atomic_write_bytes

        atomic_write_bytes(Path(location), data)
