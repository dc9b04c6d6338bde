"""What names a run on the command line: a run id (in --store), or the path of a run folder
(what `longvid render` prints, e.g. runs/20261201-120000-1a2b3c4d), relative or absolute.

A path names its own store (the folder above it), whatever --store says. Local folders only:
an S3 run is named by its id with --store s3://bucket/prefix.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .store import MANIFEST, RUN_ID


def resolve_run_ref(ref: str, store: str) -> tuple[str, str]:
    """(store, run id) for `ref`: a bare run id stays in `store`; anything else must be a
    local run folder (a folder holding manifest.json). Otherwise an InputError saying so."""
    if RUN_ID.match(ref) and ref not in (".", ".."):
        return store, ref
    folder = Path(ref).expanduser()
    if "://" not in ref and (folder / MANIFEST).is_file():
        folder = folder.resolve()
        if RUN_ID.match(folder.name):
            return str(folder.parent), folder.name
    raise InputError(f"{ref!r} is neither a run id nor a run folder (a folder with {MANIFEST}); "
                     "give an id from `longvid runs` or the path `longvid render` printed")
