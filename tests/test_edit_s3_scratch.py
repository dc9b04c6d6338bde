"""Edits over S3 when the API replica and the renderer have separate scratch folders (two
hosts on one bucket): the API replica must neither serve nor snapshot stale local copies."""

import hashlib
import json

from longvid.editing import parse_edit_request
from longvid.runtime import InlineSegmentRunner, RenderPipeline
from longvid.runtime.edit_run import begin_edit, prepare_edit
from longvid.runtime.runlock import RunLock
from longvid.runtime.store_s3 import S3RunStore
from longvid.spec import RenderSpec


def test_an_api_replica_with_its_own_scratch_serves_and_snapshots_each_new_version(s3_server, tmp_path):
    api = S3RunStore("s3://renders/scratch-hosts", scratch_root=tmp_path / "api_host")
    worker = S3RunStore("s3://renders/scratch-hosts", scratch_root=tmp_path / "worker_host")
    spec = RenderSpec(prompt="a harbour", duration_s=5, fps=12, resolution="360p", narration="off", continuity="anchor")
    RenderPipeline(worker, InlineSegmentRunner()).render(spec, run_id="r")
    first_served = api.open("r").local_path("final.mp4").read_bytes()  # GET /video on the API replica

    def api_edit(seed):
        prepared = prepare_edit(RenderPipeline(api, None), "r",
                                parse_edit_request([{"kind": "regenerate", "segment": 0, "seed": seed}]))
        run = api.open("r")
        with RunLock(run, 60):
            begin_edit(run, prepared)  # what serve/edit_routes.admit_edit does on the API replica
        RenderPipeline(worker, InlineSegmentRunner()).resume("r")  # the renderer, on another host

    api_edit(3)
    run = api.open("r")
    served = run.local_path("final.mp4").read_bytes()
    assert served == run.read_bytes("versions/v2/final.mp4") != first_served
    api_edit(4)
    run = api.open("r")
    assert run.local_path("final.mp4").read_bytes() == run.read_bytes("versions/v3/final.mp4") != served
    for version in (1, 2, 3):
        clip = json.loads(run.read_bytes(f"versions/v{version}/manifest.json"))["segments"][0]["clip"]
        assert hashlib.sha256(run.read_bytes(clip["path"])).hexdigest() == clip["sha256"], version
        assert hashlib.sha256(run.local_path(clip["path"]).read_bytes()).hexdigest() == clip["sha256"], version
