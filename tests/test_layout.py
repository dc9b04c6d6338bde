"""The run-store layout: one module names every file, and the stores put them there."""

from longvid.runtime import layout
from longvid.runtime.store import LocalRunStore


def test_file_names_keep_their_on_disk_form():
    # Existing run folders and caches must stay readable: these strings are a storage format.
    assert layout.segment_path(3) == "segments/seg_0003.mp4"
    assert layout.attempt_path(3, 1) == "segments/seg_0003.attempt1.mp4"
    assert layout.cache_path("ab" * 32) == f"cache/ab/{'ab' * 32}.mp4"
    assert layout.health_state("veo") == "health/veo.json"
    assert (layout.PLAN, layout.MANIFEST, layout.FINAL, layout.REPORT) == ("plan.json", "manifest.json", "final.mp4", "report.json")


def test_local_store_puts_cache_and_state_where_the_layout_says(tmp_path):
    store = LocalRunStore(tmp_path)
    store.cache_put("cd" * 32, b"video")
    store.put_state(layout.health_state("runway"), b"{}")
    assert (tmp_path / layout.cache_path("cd" * 32)).read_bytes() == b"video"
    assert (tmp_path / layout.STATE / "health" / "runway.json").read_bytes() == b"{}"
    assert store.cache_get("cd" * 32) == b"video" and store.get_state(layout.health_state("runway")) == b"{}"
    store.create("r1")
    assert (tmp_path / "r1" / layout.SEGMENTS).is_dir()
