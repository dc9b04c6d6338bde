"""Editing what a scene says: every scene keeps its length (only the words are said again and
placed in it), a narration-only edit makes no new video, words that do not fit are refused,
an estimate pays no speech, and the speech an edit paid for is booked in its version.
Ray-free; Gemini speech is the fake on 127.0.0.1."""

import json
import shutil

import pytest
from pydantic import SecretStr

from longvid.editing import parse_edit_request
from longvid.errors import InputError
from longvid.manifest import RunPlan
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.runtime.edit_narration import keep_scene_lengths
from longvid.runtime.edit_run import prepare_edit, run_edit
from longvid.runtime.versions import read_history
from longvid.settings import GeminiSettings, Settings
from longvid.sound.narration import NarrationRecord, PhraseRecord, Spoken
from longvid.sound.timing import NarrationTiming
from longvid.spec import RenderSpec
from longvid.testing.fake_gemini import start_fake_gemini

BOARD = """\
- description: a lighthouse on a cliff at night
  narration: The lighthouse waits.
- description: a ship arrives at dawn
  narration: A ship comes home.
- description: gulls over the harbour
  narration: Gulls call.
- description: the ship leaves at dusk
  narration: And it leaves again.
"""
LONG = "A great ship with red sails and a tired crew comes slowly home across the grey water after many months."


def _record(scene_frames, phrases):
    return NarrationRecord(engine="espeak", identity="espeak", language="en", fps=12, requested_s=sum(scene_frames) / 12,
                           scene_frames=scene_frames,
                           phrases=[PhraseRecord(scene=s, text=t, key=f"k{i}", start_s=0.0, duration_s=d)
                                    for i, (s, t, d) in enumerate(phrases)])


def test_new_words_are_placed_in_the_old_scene_lengths_or_refused():
    old = _record([36, 36, 36], [(0, "a", 1.0), (1, "b", 1.0), (2, "c", 1.0)])
    said = _record([20, 60, 28], [(0, "a", 1.0), (1, "b longer", 1.2), (1, "and more", 0.5), (2, "c", 1.0)])
    kept = keep_scene_lengths(Spoken(said, NarrationTiming(said.scene_frames, [], 12, 9.0)), old)
    assert kept.record.scene_frames == [36, 36, 36] and kept.timing.scene_frames == [36, 36, 36]
    assert [p.start_s for p in kept.record.phrases] == pytest.approx([0.3, 3.3, 3.3 + 1.2 + 0.25, 6.3])
    assert [p.text for p in kept.record.phrases] == ["a", "b longer", "and more", "c"]
    too_long = _record([36, 36, 36], [(0, "a", 1.0), (1, "b", 2.5), (2, "c", 1.0)])
    with pytest.raises(InputError, match=r"scene 2's narration takes 3.3 s .* lasts 3.0 s"):
        keep_scene_lengths(Spoken(too_long, NarrationTiming(too_long.scene_frames, [], 12, 9.0)), old)


@pytest.fixture(scope="module")
def gemini():
    with start_fake_gemini() as server:
        yield server


@pytest.fixture(scope="module")
def narrated(gemini, tmp_path_factory):
    """A 4-scene, 12 s narrated render (Gemini speech, one segment per scene), copied per test."""
    root = tmp_path_factory.mktemp("narrated")
    (root / "board.yaml").write_text(BOARD)
    spec = RenderSpec(prompt="a harbour", duration_s=12, fps=12, resolution="360p", narration="auto", speech="gemini",
                      continuity="anchor", storyboard_file=root / "board.yaml", judge="off")
    settings = Settings(gemini=GeminiSettings(api_key=SecretStr(gemini.api_key), base_url=gemini.url))
    RenderPipeline(LocalRunStore(root / "store"), InlineSegmentRunner(), settings=settings).render(spec, run_id="h")
    return root / "store", settings


@pytest.fixture
def edit(narrated, gemini, tmp_path):
    source, settings = narrated
    shutil.copytree(source, tmp_path / "store")
    store = LocalRunStore(tmp_path / "store")

    def make(edits, estimate_only=False):
        runner = InlineSegmentRunner()
        pipeline = RenderPipeline(store, runner, settings=settings)
        return prepare_edit(pipeline, "h", parse_edit_request(edits), estimate_only=estimate_only), runner, pipeline
    return make, store


def test_a_narration_edit_keeps_every_scene_and_clip_and_books_its_speech(edit, gemini):
    make, store = edit
    run = store.root / "h"
    old = RunPlan.model_validate_json((run / "plan.json").read_text())
    asked = gemini.fake.request_count

    estimate, _, _ = make([{"kind": "scene", "scene": 2, "narration": "A ship docks."}], estimate_only=True)
    assert gemini.fake.request_count == asked  # an estimate asks for no speech
    assert estimate.summary()["estimated_speech_usd"] > 0 and estimate.summary()["regenerate"] == []
    assert estimate.estimate.low_usd == pytest.approx(estimate.speech_estimate_usd)

    prepared, runner, pipeline = make([{"kind": "scene", "scene": 2, "narration": "A ship docks."}])
    assert gemini.fake.request_count == asked  # said only once the edit runs (it may still be refused)
    assert prepared.summary()["regenerate"] == [] and prepared.summary()["keep"] == [0, 1, 2, 3]
    run_edit(pipeline, prepared)
    assert gemini.fake.request_count == asked + 1  # only the new phrase is said
    assert runner.submitted == []  # no new video is paid for words
    new = RunPlan.model_validate_json((run / "plan.json").read_text())
    assert new.narration.scene_frames == old.narration.scene_frames
    assert [(j.start_frame, j.frames) for j in new.segments] == [(j.start_frame, j.frames) for j in old.segments]
    assert "A ship docks." in (run / "subtitles.srt").read_text()
    # Each version keeps its own narration track and subtitles.
    assert "A ship docks." not in (run / "versions/v1/subtitles.srt").read_text()
    assert "A ship docks." in (run / "versions/v2/subtitles.vtt").read_text()
    assert (run / "versions/v1/narration.wav").read_bytes() != (run / "versions/v2/narration.wav").read_bytes()
    manifest = json.loads((run / "manifest.json").read_text())
    speech = [e for e in manifest["ledger"] if e["provider"] == "gemini-tts"]
    assert len(speech) == 1 and speech[0]["cost_usd"] > 0
    pending = json.loads((run / "versions/v2/edit.json").read_text())
    assert [k for k, _ in pending["speech_costs"]] == [speech[0]["key"].removeprefix("speech/")]
    assert read_history(store.open("h")).versions[1].cost_usd == pytest.approx(speech[0]["cost_usd"], abs=1e-5)


def test_an_edit_refused_for_its_budget_asks_for_no_speech(edit, gemini):
    make, _ = edit
    asked = gemini.fake.request_count
    with pytest.raises(InputError, match="budget"):
        make({"edits": [{"kind": "scene", "scene": 2, "narration": "A ship docks."},
                        {"kind": "regenerate", "segment": 0, "seed": 9}], "budget_usd": 0.0000001})
    assert gemini.fake.request_count == asked


def test_words_that_do_not_fit_their_scene_and_a_no_op_edit_are_refused_before_paying(edit, gemini):
    make, _ = edit
    asked = gemini.fake.request_count
    with pytest.raises(InputError, match=r"scene 2's narration would take about .* keeps every scene's length"):
        make([{"kind": "scene", "scene": 2, "narration": LONG}])
    with pytest.raises(InputError, match="changes nothing"):
        make([{"kind": "scene", "scene": 2, "text": "a ship arrives at dawn"}])
    assert gemini.fake.request_count == asked
