import pytest

from longvid.manifest import IllegalTransition, RunManifest, SegmentRecord, transition
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
