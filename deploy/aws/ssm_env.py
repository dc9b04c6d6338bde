"""Copy the parameters under an SSM Parameter Store path into a private env file.

    python deploy/aws/ssm_env.py --path /longvid/ --out ~/.longvid.env
    . ~/.longvid.env && ray start ...

cluster.yaml runs this on every node at setup, so provider keys and API tokens reach
Ray (and every driver, replica and task it starts) without being written into the
cluster config. A parameter's last path segment is the variable's name
(/longvid/RUNWAYML_API_SECRET -> RUNWAYML_API_SECRET); SecureStrings are decrypted.
The file is mode 600; this script prints names, never values. Without access to the
path it writes an empty file and warns, so a node still starts (the preview renderer
needs no key).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def fetch_parameters(path: str, client=None) -> dict[str, str]:
    """{name: value} for the parameters directly under `path` (one level, decrypted)."""
    import boto3

    client = client or boto3.client("ssm")
    values: dict[str, str] = {}
    for page in client.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=False, WithDecryption=True):
        for parameter in page["Parameters"]:
            values[parameter["Name"].rsplit("/", 1)[-1]] = parameter["Value"]
    return values


def env_file_text(values: dict[str, str]) -> tuple[str, list[str]]:
    """Shell `export` lines (values quoted so any character survives `.`), and the
    parameter names that cannot be environment variables."""
    lines, skipped = [], []
    for name in sorted(values):
        if ENV_NAME.match(name):
            lines.append(f"export {name}={shlex.quote(values[name])}\n")
        else:
            skipped.append(name)
    return "".join(lines), skipped


def write_private(path: Path, text: str) -> None:
    """Created with mode 600 and renamed into place: never readable by others, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None, client=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="/longvid/", help="SSM Parameter Store path (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path.home() / ".longvid.env", help="env file to write (default: %(default)s)")
    args = parser.parse_args(argv)
    path = "/" + args.path.strip("/") + "/"
    try:
        values = fetch_parameters(path, client)
    except Exception as exc:  # no role, no permission, no network: start without keys
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") or exc.__class__.__name__
        print(f"ssm_env: warning: cannot read SSM parameters under {path} ({code}); "
              f"{args.out} is empty, so only keyless providers will work", file=sys.stderr)
        values = {}
    text, skipped = env_file_text(values)
    write_private(args.out.expanduser(), text)
    for name in skipped:
        print(f"ssm_env: warning: skipped {path}{name}: not a valid environment variable name", file=sys.stderr)
    names = sorted(set(values) - set(skipped))
    print(f"ssm_env: wrote {len(names)} settings to {args.out}: {', '.join(names) or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
