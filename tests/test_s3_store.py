"""The S3 run store against moto's server mode: real HTTP on 127.0.0.1, real boto3."""

import json
import os

import pytest

from longvid.cli import main
from longvid.errors import InputError
from longvid.media import probe
from longvid.runtime import InlineSegmentRunner, RenderPipeline
from longvid.runtime.store import S3RunStore, open_store
from longvid.spec import RenderSpec, SegmentState


@pytest.fixture
def store(s3_server, tmp_path, request):
    return S3RunStore(f"s3://renders/{request.node.name}", scratch_root=tmp_path / "scratch")


def test_store_operations(store, tmp_path):
    assert open_store(store.url).__class__ is S3RunStore
    run = store.create("run-1")
    run.write_bytes("manifest.json", b"{}")
    run.write_bytes("segments/seg_0000.mp4", b"\x00" * 1000)
    assert run.exists("manifest.json") and not run.exists("plan.json")
    assert run.read_bytes("segments/seg_0000.mp4") == b"\x00" * 1000
    assert run.local_path("segments/seg_0000.mp4").read_bytes() == b"\x00" * 1000
    assert store.list_runs() == ["run-1"] and store.has_run("run-1")
    with pytest.raises(FileExistsError):
        store.create("run-1")
    with pytest.raises(InputError, match="no run 'nope'"):
        store.open("nope")
    assert store.cache_get("ab" * 32) is None
    store.cache_put("ab" * 32, b"video")
    assert store.cache_get("ab" * 32) == b"video"
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(20 * 1024 * 1024))  # over the multipart threshold
    run.publish("final.mp4", big)
    assert run.read_bytes("final.mp4") == big.read_bytes()
    assert run.location("final.mp4") == f"s3://renders/{store.prefix}run-1/final.mp4"


def test_invalid_urls_and_ids(s3_server):
    with pytest.raises(InputError, match="no bucket"):
        S3RunStore("s3:///prefix")
    store = S3RunStore("s3://renders/ids")
    with pytest.raises(InputError, match="invalid run id"):
        store.create("../escape")


@pytest.mark.ray
def test_render_to_s3_then_resume_from_s3(ray_session, store, tmp_path, capsys):
    url = store.url
    assert main(["render", "a kite over a windy beach", "-d", "6", "--resolution", "360p", "--store", url,
                 "--run-id", "kite", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["run_dir"] == f"{url}kite" and result["output"] == f"{url}kite/final.mp4"
    assert store.has_run("kite") and store.open("kite").exists("final.mp4")
    # The render left no local copies behind (everything is on S3). Lose a segment there:
    # resume downloads what it needs, regenerates nothing (the store's cache holds it).
    scratch = S3RunStore(url).scratch_root  # where the CLI's store keeps local copies
    assert not (scratch / "kite").exists()
    store.client.delete_object(Bucket="renders", Key=f"{store.prefix}kite/segments/seg_0002.mp4")
    assert main(["resume", "kite", "--store", url, "-o", str(tmp_path / "kite.mp4"), "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["generated_segments"] == 0 and resumed["reused_segments"] == resumed["segments"]
    assert probe(tmp_path / "kite.mp4").frames == 6 * 24
    assert main(["runs", "--store", url, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in runs] == ["kite"] and runs[0]["status"] == "done"


def test_inline_render_on_s3_records_states(store):
    spec = RenderSpec(prompt="a lantern in fog", duration_s=5, resolution="360p")
    result = RenderPipeline(store, InlineSegmentRunner()).render(spec, run_id="lantern")
    from longvid.manifest import load_manifest

    manifest = load_manifest(store.open("lantern").read_bytes("manifest.json").decode())
    assert manifest.status == "done"
    assert all(r.state is SegmentState.ACCEPTED for r in manifest.segments)
    assert result.frames == 120


def test_local_copies_follow_rewrites(store):
    run = store.create("rewrite")
    run.write_bytes("segments/seg_0000.mp4", b"A")
    assert run.local_path("segments/seg_0000.mp4").read_bytes() == b"A"
    run.write_bytes("segments/seg_0000.mp4", b"B")  # e.g. a regenerated attempt
    assert run.local_path("segments/seg_0000.mp4").read_bytes() == b"B"
