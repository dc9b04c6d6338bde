"""Long-range drift: a segment is compared with its scene's accepted segments several back and
with its characters' first appearances; the memory survives a resume."""

import numpy as np
import pytest

from longvid.consistency import JudgeConfig
from longvid.consistency.longrange import LongRangeMemory
from longvid.consistency.pipeline_judge import LONG_RANGE_FILE, ConsistencySegmentJudge
from longvid.testing import drift_clips as dc


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    """Six chained segments of one scene: clean, and drifting 30% of the way to another palette."""
    folder = tmp_path_factory.mktemp("longrange")
    jobs = dc.tiny_jobs(duration_s=36, scenes=1)[:6]
    assert len({j.scene_index for j in jobs}) == 1
    end = dc.blend_palette(jobs[0].scene.color_palette, dc.DRIFT_PALETTE, 0.3)
    paths = {}
    for label, clips in (("clean", [dc.clean(j) for j in jobs]), ("gradual", dc.gradual_drift(jobs, end))):
        for job, frames in zip(jobs, clips):
            paths[label, job.index] = folder / f"{label}{job.index}.mp4"
            paths[label, job.index].write_bytes(dc.mp4(job, frames))
    return jobs, paths


def judge_all(jobs, paths, label):
    adapter = ConsistencySegmentJudge(JudgeConfig(backend="structural"))
    previous, verdicts = None, []
    for job in jobs:
        verdicts.append(adapter.judge(job, paths[label, job.index], previous))
        previous = (job, paths[label, job.index])
    return adapter, verdicts


def test_gradual_drift_over_six_segments_is_caught_and_clean_ones_are_not(six):
    jobs, paths = six
    threshold = JudgeConfig().structural_thresholds.drift
    _, clean = judge_all(jobs, paths, "clean")
    assert all(v.passed for v in clean), [v.reason for v in clean]
    assert all(v.scores["drift"] >= threshold + 0.1 for v in clean[1:])
    _, gradual = judge_all(jobs, paths, "gradual")
    assert gradual[1].passed  # one step of the walk is small
    assert all(v.scores["drift"] < threshold and "drift" in v.reason for v in gradual[3:])


def test_memory_compares_only_segments_far_enough_back_and_keeps_first_appearances():
    memory = LongRangeMemory(lookback=2, keep=2)
    for index in range(10):
        memory.remember(0, index, np.full((1, 4), index, np.float32), {"Fox": np.ones((3, 4))} if index == 0 else {"fox": np.zeros((3, 4))})
    anchors = memory.anchors_for(0, 5)
    assert [int(a[0, 0]) for a in anchors] == [0, 1]  # bounded: the first `keep` and the newest `keep` (8, 9)
    assert [int(a[0, 0]) for a in memory.anchors_for(0, 10)] == [0, 1, 8]  # up to 10 - lookback
    with_fox = memory.anchors_for(0, 1, ["FOX"])
    assert len(with_fox) == 1 and with_fox[0].sum() == 12  # the first appearance, never replaced
    assert memory.anchors_for(1, 5, ["fox"]) == []  # another scene: whole frames differ by design
    again = LongRangeMemory(lookback=2, keep=2)
    again.load_bytes(memory.to_bytes())
    assert [int(a[0, 0]) for a in again.anchors_for(0, 20, ["fox"])[:-1]] == [0, 1, 8, 9]
    assert again.anchors_for(0, 20, ["fox"])[-1].sum() == 12


def test_resume_rebuilds_the_slow_side_and_the_run_folder_keeps_it(six, tmp_path):
    jobs, paths = six
    first, verdicts = judge_all(jobs, paths, "clean")

    class Folder:
        files = {}

        def write_bytes(self, name, data):
            self.files[name] = data

    run = Folder()
    first.save_state(run)
    assert LONG_RANGE_FILE in run.files
    run.exists = lambda name: name in run.files
    run.read_bytes = lambda name: run.files[name]
    resumed = ConsistencySegmentJudge(JudgeConfig(backend="structural"))
    resumed.load_state(run)  # what acceptance.remember does first, then it replays the accepted segments
    assert resumed.long_range.to_bytes() == first.long_range.to_bytes()  # the state of the uninterrupted run
    for job in jobs[:5]:  # what acceptance.remember does for segments accepted before the crash
        resumed.remember_accepted(job, paths["clean", job.index])
    again = resumed.judge(jobs[5], paths["clean", 5], (jobs[4], paths["clean", 4]))
    assert again.scores["drift"] == pytest.approx(verdicts[5].scores["drift"], abs=1e-6)
    gradual_last = resumed.judge(jobs[5], paths["gradual", 5], (jobs[4], paths["clean", 4]))
    assert not gradual_last.passed and "drift" in gradual_last.reason


def test_the_scene_anchor_is_left_to_the_anchor_check():
    """Drift (a mean, threshold 0.80) on the scene's first frame would fail segments the anchor
    check (worst keyframe, 0.75) passes on that same frame: drift looks only at later ones."""
    memory = LongRangeMemory(lookback=2, keep=2)
    for index in range(4):
        memory.remember(0, index, np.full((1, 4), index, np.float32))
    assert [int(a[0, 0]) for a in memory.anchors_for(0, 3, without_scene_anchor=True)] == [1]
    assert [int(a[0, 0]) for a in memory.anchors_for(0, 3)] == [0, 1]
