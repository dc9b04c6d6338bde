"""Reference images from the API's point of view over time: kept only for renders that exist.

- A request's images are first staged in a folder of their own on this replica
  (`state/pending/<request>/`, local disk), where the planner reads them when it runs on the
  same node (a Planner replica on another node cannot yet: a known limit); the stage is removed
  when the request ends, whatever its answer. A plan (POST /v1/plans) or a refused render
  never reaches the shared store.
- Only a render that is being created copies its images into the store's content-addressed
  inputs (`state/inputs/<sha256>.<ext>`, serve/images.py), just before its run folder is made.
- Orphans (inputs no run refers to, stages left by a replica that died) are swept once
  they are older than a grace period: when the API starts, then at most every so often.
- What one token keeps is bounded: the distinct images its renders refer to, in bytes.

The decisions (what is an orphan, what passes the quota) are pure functions here; the
reads, writes and deletions are in `InputImages` (serve/images.py) and `RenderStore`.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .errors import ApiError

log = logging.getLogger("longvid.serve")

PENDING = "pending"  # beside INPUTS under the store's state; local disk only

MB = 1024 * 1024


# -- pure decisions -----------------------------------------------------------------------------


def orphaned(entries: Iterable[tuple[str, float]], referenced: set[str], now: float, grace_s: float) -> list[str]:
    """Names of stored inputs (name, last written at) that no run refers to and that were
    written more than `grace_s` ago (a render being created has written its images but not
    yet its manifest)."""
    return sorted(name for name, written_at in entries if name not in referenced and now - written_at > grace_s)


def quota_refusal(kept: Mapping[str, int], new: Mapping[str, int], quota_bytes: int) -> ApiError | None:
    """The 413 for a render whose images (name -> bytes) would take the bytes a token keeps
    (the distinct images of its renders) past `quota_bytes`, or None. An image the token
    keeps already costs nothing more."""
    added = sum(size for name, size in new.items() if name not in kept)
    total = sum(kept.values())
    if added == 0 or total + added <= quota_bytes:
        return None
    return ApiError(413, "input_quota_exceeded",
                    f"your renders keep {total / MB:.1f} MB of reference images and these would add {added / MB:.1f} MB, "
                    f"over your {quota_bytes / MB:.0f} MB limit; reuse images sent before (each is kept once) "
                    "or send smaller ones")


# -- a request's stage --------------------------------------------------------------------------


class StagedImages:
    """One request's checked images, as files the planner can read, in a folder of their
    own under `pending_root`. `discard()` removes them (call it when the request ends)."""

    def __init__(self, pending_root: Path):
        self.folder = Path(pending_root) / secrets.token_hex(8)
        self.images: list = []  # CheckedImage, in order

    def add(self, image) -> Path:
        from longvid.runtime.store import atomic_write_bytes

        path = self.folder / image.filename
        if not path.is_file():
            atomic_write_bytes(path, image.data)
        self.images.append(image)
        return path

    def sizes(self) -> dict[str, int]:
        return {image.filename: len(image.data) for image in self.images}

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# -- sweeping -----------------------------------------------------------------------------------


class InputSweeper:
    """Runs `sweep()` (which removes orphans) in a background thread: at once when started,
    then when `due()` is asked at least `every_s` after the last one. One at a time."""

    def __init__(self, sweep: Callable[[], object], every_s: float, clock: Callable[[], float]):
        self.sweep, self.every_s, self.clock = sweep, every_s, clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._running: threading.Thread | None = None

    def due(self) -> threading.Thread | None:
        """Start a sweep if none ran for `every_s` (and none is running); the thread, or None."""
        with self._lock:
            now = self.clock()
            if (self._running is not None and self._running.is_alive()) or (
                    self._last is not None and now - self._last < self.every_s):
                return None
            self._last = now
            self._running = threading.Thread(target=self._run, name="longvid-input-sweep", daemon=True)
            self._running.start()
            return self._running

    def _run(self) -> None:
        try:
            self.sweep()
        except Exception:  # a store hiccup: the next sweep tries again
            log.warning("sweeping unused reference images failed", exc_info=True)
