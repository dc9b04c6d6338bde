import json

import pytest
from pydantic import ValidationError

from longvid.errors import InputError
from longvid.manifest import AttemptRecord, IllegalTransition, RunManifest, RunStatus, SegmentRecord, load_manifest, transition, with_warnings
from longvid.providers.ledger import CostLedger, EntryState
from longvid.spec import RenderSpec, SegmentState


def _manifest(count=2):
    return RunManifest(
        run_id="r1",
        spec=RenderSpec(prompt="fox"),
        segments=[SegmentRecord(index=i, scene_index=0, provider="preview") for i in range(count)],
    )


def test_happy_path_and_attempt_count():
    m = _manifest()
    m = transition(m, 0, SegmentState.SUBMITTED, task_id="t1")
    assert m.segments[0].attempts == 1 and m.segments[0].task_id == "t1"
    m = transition(m, 0, SegmentState.GENERATED, cost_usd=0.5)
    m = transition(m, 0, SegmentState.ACCEPTED)
    assert m.segments[0].state is SegmentState.ACCEPTED
    assert m.segments[1].state is SegmentState.PENDING
    assert m.cost_usd == 0.5
    assert m.counts() == {"accepted": 1, "pending": 1}


def test_transitions_return_new_manifests():
    m = _manifest()
    m2 = transition(m, 0, SegmentState.SUBMITTED)
    assert m.segments[0].state is SegmentState.PENDING
    assert m2.segments[0].state is SegmentState.SUBMITTED


@pytest.mark.parametrize(
    "path",
    [
        [SegmentState.ACCEPTED],
        [SegmentState.JUDGED],
        [SegmentState.SUBMITTED, SegmentState.ACCEPTED, SegmentState.PENDING],
    ],
)
def test_illegal_moves_are_refused(path):
    m = _manifest()
    with pytest.raises(IllegalTransition):
        for state in path:
            m = transition(m, 0, state)


def test_failed_segment_can_be_retried():
    m = transition(_manifest(), 0, SegmentState.SUBMITTED)
    m = transition(m, 0, SegmentState.FAILED, error="boom")
    m = transition(m, 0, SegmentState.PENDING, error=None)
    m = transition(m, 0, SegmentState.SUBMITTED)
    assert m.segments[0].attempts == 2


def test_manifest_round_trips_through_json():
    m = transition(_manifest(), 1, SegmentState.SUBMITTED, task_id="x")
    again = RunManifest.model_validate_json(m.model_dump_json())
    assert again == m


def test_with_warnings_returns_a_new_manifest_and_adds_each_text_once():
    m = _manifest()
    m2 = with_warnings(m, "a", "b", "a")
    assert m.warnings == () and m2.warnings == ("a", "b")
    assert with_warnings(m2, "b", "c").warnings == ("a", "b", "c")  # a resumed render does not repeat "b"
    assert with_warnings(m2, "a") is m2
    with pytest.raises(AttributeError):
        m2.warnings.append("d")  # no in-place change: transitions only


ATTEMPT = dict(seed=7, passed=False, quality=0.4, file="segments/seg_0001.attempt0.mp4", sha256="ab", anchor=0.4, seam=None,
               prompt=0.3, character=None, failures=["anchor 0.400 < 0.750"], backend="clip", keyframes=[0, 5], seconds=0.1, notes="")


def test_typed_attempts_ledger_and_status_keep_their_json_shape():
    ledger = CostLedger(entries=[])
    ledger.reserve("seg1/call1", 1, "runway", 0.5)
    ledger.charge("seg1/call1", 0.25, note="done")
    m = transition(_manifest(), 1, SegmentState.SUBMITTED, task_id="x")
    m = transition(m, 1, SegmentState.GENERATED)
    m = transition(m, 1, SegmentState.JUDGED, scores=[AttemptRecord(**ATTEMPT)])
    m = m.model_copy(update={"ledger": list(ledger.entries), "status": RunStatus.RENDERING})
    data = json.loads(m.model_dump_json())
    assert data["status"] == "rendering"
    assert data["segments"][1]["scores"] == [ATTEMPT]  # flat, in the order manifests have always had
    assert list(data["segments"][1]["scores"][0]) == list(ATTEMPT)
    assert data["ledger"] == [{"key": "seg1/call1", "segment": 1, "provider": "runway", "estimate_usd": 0.5, "state": "charged",
                               "cost_usd": 0.25, "task_id": None, "note": "done"}]
    again = load_manifest(m.model_dump_json())
    assert again == m and again.ledger[0].state is EntryState.CHARGED and again.segments[1].scores[0].measured == {"anchor": 0.4, "prompt": 0.3}
    assert again.cost_usd == 0.25


def test_attempts_are_frozen_and_unknown_judge_fields_refused():
    attempt = AttemptRecord(**ATTEMPT)
    with pytest.raises(ValidationError):
        attempt.passed = True
    with pytest.raises(ValidationError, match="colour"):
        AttemptRecord(**ATTEMPT, colour=0.9)


def test_unknown_run_status_is_refused_clearly():
    text = _manifest().model_dump_json().replace('"status":"planned"', '"status":"paused"')
    with pytest.raises(InputError, match="status"):
        load_manifest(text)
    assert RunStatus.FAILED.finished and not RunStatus.MERGING.finished and f"{RunStatus.DONE}" == "done"
