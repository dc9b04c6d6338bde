"""Run ids: how a new one is made and which ones are valid (a folder or key name in a store)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re

from ..errors import InputError

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_run_id(seed_text: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(f"{seed_text}{os.getpid()}{_dt.datetime.now().timestamp()}".encode()).hexdigest()[:8]
    return f"{stamp}-{digest}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id) or run_id in (".", ".."):
        raise InputError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only")
    return run_id
