"""The edit vocabulary and the pure decision of what an edit regenerates (no Ray, no files)."""

import pytest

from longvid.editing import Decision, LockEdit, RegenerateEdit, SceneEdit, apply_scene_edits, parse_edit_request, plan_regeneration
from longvid.errors import InputError
from longvid.planning import segment_storyboard
from longvid.spec import CameraMove, ContinuityMode, RenderSpec, Scene, Storyboard

SPEC = RenderSpec(prompt="harbour", duration_s=8, fps=12, resolution="360p", narration="off")


def _board(*texts):
    return Storyboard(title="t", scenes=[Scene(description=t) for t in texts])


def _jobs(board, continuity="auto"):
    return segment_storyboard(board, SPEC.model_copy(update={"continuity": ContinuityMode(continuity)}))


def _decide(old_board, request, continuity="auto", locked=()):
    new_board = apply_scene_edits(old_board, request)
    return plan_regeneration(_jobs(old_board, continuity), _jobs(new_board, continuity), reseeds=request.reseeds,
                             replaced=set(request.replacements), locked=set(locked), version=2)


BOARD = _board("a lighthouse", "a ship arrives", "gulls", "the ship leaves")


def test_a_scene_edit_regenerates_only_that_scene_in_anchor_mode():
    plan = _decide(BOARD, parse_edit_request([{"kind": "scene", "scene": 2, "text": "a red ship arrives"}]))
    assert plan.regenerated == [1]
    assert plan.indices(Decision.KEEP) == [0, 2, 3]
    assert plan.jobs[1].scene.description == "a red ship arrives"
    assert plan.sources == {0: 0, 2: 2, 3: 3}


def test_in_chain_mode_the_following_segments_regenerate_until_a_locked_one():
    request = parse_edit_request([{"kind": "scene", "scene": 2, "camera": "zoom_in"}])
    plan = _decide(BOARD, request, "chain")
    assert plan.regenerated == [1, 2, 3]
    assert "first frame changed" in plan.decisions[2][1]
    locked = _decide(BOARD, request, "chain", locked=[2])
    assert locked.regenerated == [1]
    assert locked.decisions[2][0] is Decision.LOCKED and locked.decisions[3][0] is Decision.KEEP


def test_a_reseed_keeps_the_rest_and_derives_a_stable_seed():
    plan = _decide(BOARD, parse_edit_request([{"kind": "regenerate", "segment": 3}]))
    again = _decide(BOARD, parse_edit_request([{"kind": "regenerate", "segment": 3}]))
    old = _jobs(BOARD)
    assert plan.regenerated == [3]
    assert plan.jobs[3].seed != old[3].seed and plan.jobs[3].seed == again.jobs[3].seed
    given = _decide(BOARD, parse_edit_request([{"kind": "regenerate", "segment": 3, "seed": 77}]))
    assert given.jobs[3].seed == 77 and [j.seed for j in given.jobs[:3]] == [j.seed for j in old[:3]]


def test_kept_segments_keep_an_earlier_edits_seed():
    reseeded = [j.model_copy(update={"seed": 5}) if j.index == 2 else j for j in _jobs(BOARD)]
    plan = plan_regeneration(reseeded, _jobs(BOARD), reseeds={}, replaced=set(), locked=set(), version=3)
    assert plan.regenerated == [] and plan.jobs[2].seed == 5


def test_an_edit_that_changes_a_locked_segment_is_refused():
    request = parse_edit_request([{"kind": "scene", "scene": 2, "lighting": "night"}])
    with pytest.raises(InputError, match="segment 1 is locked"):
        _decide(BOARD, request, locked=[1])


def test_scene_edits_change_only_the_named_fields():
    request = parse_edit_request([SceneEdit(scene=1, camera=CameraMove.ZOOM_IN).model_dump(), {"kind": "scene", "scene": 1, "narration": " hi "}])
    board = apply_scene_edits(BOARD, request)
    assert board.scenes[0].camera_movement is CameraMove.ZOOM_IN and board.scenes[0].narration == "hi"
    assert board.scenes[0].description == "a lighthouse" and board.scenes[1:] == BOARD.scenes[1:]


@pytest.mark.parametrize("edits, message", [
    ([{"kind": "scene", "scene": 9, "text": "x"}], "scene 9 does not exist"),
    ([{"kind": "regenerate", "segment": 4}], r"segment\(s\) \[4\] do not exist"),
    ([{"kind": "lock", "segments": [1]}, {"kind": "unlock", "segments": [1]}], "both locked and unlocked"),
    ([{"kind": "regenerate", "segment": 2}], r"segment\(s\) \[2\] are locked; unlock them first"),
    ([{"kind": "scene", "scene": 1, "narration": "hello"}], "narration edit needs --narration auto"),
])
def test_edits_that_do_not_fit_the_run_are_refused_in_one_line(edits, message):
    with pytest.raises(InputError, match=message) as caught:
        parse_edit_request(edits).check_against(4, 4, narration_on=False, locked={2})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("data, message", [
    ([], "edits"),
    ([{"kind": "scene", "scene": 1}], "say what to change"),
    ([{"kind": "paint", "segment": 1}], "kind"),
    ([{"kind": "regenerate", "segment": -1}], "greater than or equal to 0"),
])
def test_malformed_edits_are_input_errors(data, message):
    with pytest.raises(InputError, match=message):
        parse_edit_request(data)


def test_a_lock_only_request_makes_no_version():
    request = parse_edit_request([LockEdit(segments=[1, 2]).model_dump()])
    assert not request.changes_video and request.locks == {1, 2}
    assert parse_edit_request([RegenerateEdit(segment=0).model_dump()]).changes_video


def test_a_narration_only_change_keeps_every_clip():
    """The narration is spoken over the video, never part of its prompt: no segment is made again."""
    narrated = Storyboard(title="t", scenes=[Scene(description=t, narration="Words.") for t in ("a lighthouse", "a ship")])
    plan = _decide(narrated, parse_edit_request([{"kind": "scene", "scene": 2, "narration": "Other words."}]))
    assert plan.regenerated == [] and plan.sources == {j.index: j.index for j in plan.jobs}
    assert plan.jobs[-1].scene.narration == "Other words."


def test_an_edit_that_changes_the_segment_count_may_not_name_or_keep_locked_segments():
    request = parse_edit_request([{"kind": "scene", "scene": 2, "text": "x"}, {"kind": "regenerate", "segment": 3}])
    with pytest.raises(InputError, match=r"changes the number of segments \(4 to 5\), so segment number\(s\) \[1, 3\]"):
        request.check_segment_count(4, 5, locked={1})
    request.check_segment_count(4, 4, locked={1})  # same count: numbers mean the same segments
    parse_edit_request([{"kind": "scene", "scene": 2, "text": "x"}]).check_segment_count(4, 5, locked=set())
