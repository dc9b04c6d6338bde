"""Where things live in a run store: the one list of file names in a run folder, and of the
store-wide files beside the runs. Every reader and writer takes its names from here.

A run folder (paths relative to it, so a run can move between stores):

    plan.json                       the storyboard and the exact segment jobs
    manifest.json                   each segment's state, the ledger, the run's status
    segments/seg_0003.mp4           segment 3 as accepted (or being judged)
    segments/seg_0003.attempt1.mp4  a rejected attempt, kept in case none does better
    segments/seg_0003.original.mp4  the provider's own file, before normalisation (provenance)
    final.mp4, report.json          the merged video and the run's summary
    contact_sheet.png, report.html  the review for people to look at
    characters.npz, context.npz     the judge's character memory and FramePack context
    lock.json                       the lease of the driver rendering the run
    request.json, worker.json,      written by the HTTP API (serve/runs.py): who asked, the
    cancel.requested                replica running it and its heartbeat, a stop request
    history.json                    the versions of the video after edits (runtime/versions.py)
    versions/v2/{final.mp4,manifest.json,plan.json,report.json}   each version as it finished
    versions/v2/edit.json           the edit that makes v2 (its stage while it runs), with
    versions/v2/next_plan.json      its plan, and versions/v2/uploads/ (replacement clips)
    versions/v1/segments/...        earlier versions' segment files that a later edit replaced

Beside the runs, under the store's root: cache/ab/<key>.mp4 (segments by content key) and
state/health/<provider>.json (each provider's breaker as the last render left it).
"""

from __future__ import annotations

PLAN = "plan.json"
MANIFEST = "manifest.json"
FINAL = "final.mp4"
REPORT = "report.json"
SEGMENTS = "segments"
CONTACT_SHEET = "contact_sheet.png"
REPORT_HTML = "report.html"
CHARACTERS = "characters.npz"
CONTEXT = "context.npz"
LOCK = "lock.json"

# Versions after edits (runtime/versions.py).
HISTORY = "history.json"
VERSIONS = "versions"


def version_path(version: int, name: str = "") -> str:
    """A file of version `version` (1: the first render), relative to the run folder."""
    return f"{VERSIONS}/v{version}/{name}" if name else f"{VERSIONS}/v{version}"


# The HTTP API's side files.
REQUEST = "request.json"
WORKER = "worker.json"
CANCEL = "cancel.requested"

# Store-wide folders beside the run folders (a run id can never be one of them).
CACHE = "cache"
STATE = "state"


def segment_path(index: int) -> str:
    return f"{SEGMENTS}/seg_{index:04d}.mp4"


def original_path(index: int) -> str:
    """The provider's clip of segment `index` as it arrived, before it was normalised into
    the house format (the normalised one is `segment_path`)."""
    return f"{SEGMENTS}/seg_{index:04d}.original.mp4"


def attempt_path(index: int, regeneration: int) -> str:
    """A judged attempt of segment `index` (0 for the first), kept beside its segment."""
    return f"{SEGMENTS}/seg_{index:04d}.attempt{regeneration}.mp4"


def cache_path(key: str) -> str:
    """A cached segment, relative to the store's root: fanned out by the key's first two
    characters so no folder holds every segment ever made."""
    return f"{CACHE}/{key[:2]}/{key}.mp4"


def health_state(provider: str) -> str:
    """A provider's breaker and concurrency snapshot, relative to the store's state folder."""
    return f"health/{provider}.json"
