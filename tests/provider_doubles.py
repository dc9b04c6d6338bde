"""Test doubles shared by several test modules: providers, and a renderer for the API."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
from longvid.spec import Character


def drifting_provider(name: str) -> type[PreviewProvider]:
    """A provider class registered as `name`: the preview renderer, except that the attempts
    listed in its `drift_at` (segment index -> seed) come out with the wrong palette and
    subject, so the judge must send them back (as a model sometimes does)."""

    class DriftingProvider(PreviewProvider):
        capabilities = replace(PREVIEW_CAPABILITIES, name=name)
        drift_at: ClassVar[dict[int, int]] = {}

        def submit(self, job, conditioning_png=None):
            if type(self).drift_at.get(job.index) == job.seed:
                scene = job.scene.model_copy(update={"color_palette": ["#ff0000", "#aa0000", "#220000", "#550000"],
                                                     "characters": [Character(name="blue whale")]})
                job = job.model_copy(update={"scene": scene})
            return super().submit(job, conditioning_png)

    DriftingProvider.__name__ = DriftingProvider.__qualname__ = f"DriftingProvider[{name}]"
    return DriftingProvider


class RecordingRenderer:
    """Stands in for the Serve app's Renderer: records which attempts the API asked to start
    (renders are not executed)."""

    def __init__(self):
        self.started = []

    def start(self, run_id, attempt):
        self.started.append((run_id, attempt))
        return True


def offline_api(tmp_path, longvid, token: str):
    """The API in process (no Ray): a real store under `tmp_path`, the offline planner with the
    `longvid` settings, a RecordingRenderer, and `token` as its one bearer token."""
    from fastapi.testclient import TestClient

    from longvid.runtime import LocalRunStore
    from serve.api import create_api
    from serve.planning import PlanService
    from serve.settings import ApiSettings

    settings = ApiSettings.from_env({"LONGVID_API_TOKENS": token, "LONGVID_STORE": str(tmp_path / "runs"),
                                     "LONGVID_PLANNER": "offline"})
    store = LocalRunStore(settings.store)
    return TestClient(create_api(PlanService("offline", longvid, store), RecordingRenderer(), settings),
                      base_url="http://127.0.0.1"), store
