"""longvid over HTTP on Ray Serve: a FastAPI ingress.

So far it serves planning (synchronous, no Ray tasks needed) and a health check; render
endpoints join it once renders are durable and resumable, since a render outlives any
single request. Run locally with `serve run serve.app:app`.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import ValidationError
from ray import serve

from longvid.errors import InputError, describe_validation_error
from longvid.runtime.pipeline import RenderPipeline
from longvid.runtime.store import LocalRunStore
from longvid.spec import RenderSpec

api = FastAPI(title="longvid", version="0.1.0")


@api.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@api.post("/v1/plans")
def create_plan(body: dict) -> dict:
    """Storyboard and segments for a RenderSpec body, e.g. {"prompt": "…", "duration_s": 30}."""
    try:
        spec = RenderSpec.model_validate(body)
        storyboard, jobs = RenderPipeline(LocalRunStore()).plan(spec)
    except ValidationError as exc:
        raise HTTPException(status_code=422, detail=describe_validation_error(exc)) from None
    except InputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return {
        "storyboard": storyboard.model_dump(mode="json"),
        "segments": [j.model_dump(mode="json", exclude={"scene"}) for j in jobs],
    }


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class LongvidAPI:
    pass


app = LongvidAPI.bind()
