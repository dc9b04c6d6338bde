"""Runs renders in background threads of a Renderer replica.

A render is always started from its run folder (the API wrote plan.json and a 'planned'
manifest before asking), with `RenderPipeline.resume`, so a new render and a resumed one
take the same path, and nothing the worker needs lives only in memory. Beside each render
a watcher thread beats the run's heartbeat and polls for the cancel marker of its attempt;
on a marker it sets the pipeline's stop event: cancel works whichever replica took the
DELETE.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from longvid.errors import LongvidError
from longvid.manifest import RunStatus
from longvid.runtime.pipeline import Cancelled
from longvid.runtime.runlock import RunLocked
from longvid.runtime.layout import MANIFEST, WORKER
from longvid.runtime.store import write_model
from longvid.settings import Settings
from longvid.wiring import RenderOptions, render_pipeline

from .runs import RenderStore

log = logging.getLogger("longvid.serve")

STOPPED_BY_SHUTDOWN = "stopped: the server shut down; resume it to continue (finished segments are kept)"


@dataclass
class _Job:
    run_id: str
    attempt: str
    stop: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    shutdown: bool = False
    thread: threading.Thread | None = None


class RenderWorker:
    def __init__(self, store, runner_factory: Callable[[], object], options: RenderOptions = RenderOptions(),
                 judge_factory: Callable | None = None, heartbeat_s: float = 5.0, poll_s: float = 0.5,
                 settings: Settings | None = None):
        """`options`: the replica's planner choice and CLIP settings (a server never downloads
        weights); `settings`: the replica's provider settings (the replica passes
        Settings.from_env(); None: no provider keys); `judge_factory(spec)` replaces the judge
        the options would build."""
        self.records = RenderStore(store)
        self.settings = settings if settings is not None else Settings()
        self.runner_factory, self.options, self.judge_factory = runner_factory, options, judge_factory
        self.heartbeat_s, self.poll_s = heartbeat_s, poll_s
        self._jobs: dict[str, _Job] = {}  # attempt -> job
        self._lock = threading.Lock()

    def start(self, run_id: str, attempt: str) -> bool:
        """Run attempt `attempt` of `run_id` in a new thread; False if it already runs here."""
        with self._lock:
            if attempt in self._jobs:
                return False
            job = _Job(run_id, attempt)
            job.thread = threading.Thread(target=self._run, args=(job,), name=f"render-{run_id}", daemon=True)
            self._jobs[attempt] = job
        job.thread.start()
        return True

    def running(self) -> list[str]:
        with self._lock:
            return sorted(job.run_id for job in self._jobs.values())

    def stop_all(self, timeout_s: float = 30.0) -> None:
        """Stop every render cleanly (resumable), e.g. when the replica shuts down."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.shutdown = True
            job.stop.set()
        deadline = time.monotonic() + timeout_s
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))

    def healthy(self) -> bool:
        """False if a render thread died without finishing its bookkeeping."""
        with self._lock:
            return all(job.thread is None or job.thread.is_alive() or job.finished.is_set() for job in self._jobs.values())

    # -- one render -------------------------------------------------------------------------

    def _run(self, job: _Job) -> None:
        watcher = None
        try:
            run = self.records.store.open(job.run_id)
            watcher = threading.Thread(target=self._watch, args=(run, job), name=f"watch-{job.run_id}", daemon=True)
            watcher.start()
            spec = self.records.read_manifest(run).spec
            with render_pipeline(spec, self.records.store, self.runner_factory(), self.options, self.settings, stop=job.stop,
                                 judge_factory=self.judge_factory) as pipeline:
                pipeline.resume(job.run_id)
        except Cancelled:
            if job.shutdown:
                self._mark(job, RunStatus.CANCELLED, STOPPED_BY_SHUTDOWN)
        except RunLocked as exc:  # another driver holds the run: it, not this replica, records the outcome
            log.info("render %s: %s", job.run_id, exc)
        except Exception as exc:  # the manifest says why; the log keeps the details
            log.warning("render %s failed: %s", job.run_id, exc.__class__.__name__, exc_info=not isinstance(exc, LongvidError))
            reason = str(exc) if isinstance(exc, LongvidError) else f"{exc.__class__.__name__}: {exc}"
            self._mark(job, RunStatus.FAILED, reason, only_if_active=True)
        finally:
            job.finished.set()
            if watcher is not None:
                watcher.join()
            with self._lock:
                self._jobs.pop(job.attempt, None)

    def _mark(self, job: _Job, status: RunStatus, error: str, only_if_active: bool = False) -> None:
        """Record how a render ended when the pipeline could not (it failed before starting)."""
        try:
            run = self.records.store.open(job.run_id)
            manifest = self.records.read_manifest(run)
            if only_if_active and manifest.status.finished:
                return  # the pipeline already wrote the outcome
            write_model(run, MANIFEST, manifest.model_copy(update={"status": status, "error": error[:1000]}))
        except Exception:  # never hide the original failure behind this one
            log.warning("could not record the end of render %s", job.run_id, exc_info=True)

    def _watch(self, run, job: _Job) -> None:
        last_beat = time.monotonic()
        while not job.finished.wait(self.poll_s):
            try:
                if not job.stop.is_set() and self.records.cancel_requested(run, job.attempt):
                    log.info("render %s: cancel requested", job.run_id)
                    job.stop.set()
                if time.monotonic() - last_beat >= self.heartbeat_s:
                    last_beat = time.monotonic()
                    current = self.records.read_json(run, WORKER)
                    if current is None or current.get("attempt") == job.attempt:  # a resume may have taken over
                        self.records.heartbeat(run, job.attempt)
            except Exception:  # a store hiccup must not kill the watcher; try again next round
                log.warning("render %s: watcher could not reach the store", job.run_id, exc_info=True)
