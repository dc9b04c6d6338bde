import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvid.errors import InputError
from longvid.planning import OfflinePlanner, load_storyboard
from longvid.planning.offline import find_subject, split_clauses
from longvid.spec import RenderSpec, Transition

PLANNER = OfflinePlanner()


def test_same_prompt_and_seed_give_the_same_plan():
    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn", seed=7)
    assert PLANNER.plan(spec) == PLANNER.plan(spec)


def test_another_seed_gives_another_plan():
    a = PLANNER.plan(RenderSpec(prompt="a red fox explores a snowy forest at dawn", seed=1))
    b = PLANNER.plan(RenderSpec(prompt="a red fox explores a snowy forest at dawn", seed=2))
    assert a != b


@settings(max_examples=40, deadline=None)
@given(
    prompt=st.text(min_size=1, max_size=300).filter(lambda s: s.strip()),
    duration=st.floats(min_value=5, max_value=600),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_plans_stay_within_bounds_for_any_prompt(prompt, duration, seed):
    storyboard = PLANNER.plan(RenderSpec(prompt=prompt, duration_s=duration, seed=seed))
    assert 3 <= len(storyboard.scenes) <= 8
    for scene in storyboard.scenes:
        assert scene.description and scene.characters
        assert 2 <= len(scene.color_palette) <= 6


def test_scene_count_respects_the_segment_limit():
    spec = RenderSpec(prompt="one. two. three. four. five. six. seven.", duration_s=20)
    assert len(PLANNER.plan(spec, max_scenes=4).scenes) == 4


def test_english_subject_and_lighting():
    storyboard = PLANNER.plan(RenderSpec(prompt="a red fox explores a snowy forest at dawn"))
    assert storyboard.scenes[0].characters[0].name == "red fox"
    assert all(s.lighting.value == "dawn" for s in storyboard.scenes)


def test_chinese_prompt_is_planned():
    prompt = "一只红色的狐狸在雪林中探索，黎明时分，它发现了一条结冰的小溪。"
    storyboard = PLANNER.plan(RenderSpec(prompt=prompt, duration_s=30))
    assert 3 <= len(storyboard.scenes) <= 8
    assert storyboard.scenes[0].characters[0].name == "一只红色的狐狸"
    assert any("小溪" in s.description for s in storyboard.scenes)
    assert storyboard.scenes[0].lighting.value == "dawn"


def test_clause_split_handles_cjk_and_latin():
    assert split_clauses("A fox runs. Then it sleeps!") == ["A fox runs", "Then it sleeps"]
    assert split_clauses("a fox runs and then it sleeps") == ["a fox runs", "it sleeps"]
    assert split_clauses("狐狸奔跑。它睡着了。") == ["狐狸奔跑", "它睡着了"]


def test_find_subject_stops_at_the_verb():
    assert find_subject("the old lighthouse keeper walks home") == "old lighthouse keeper"
    assert find_subject("an astronaut floats in space") == "astronaut"


def test_storyboard_file_json_and_yaml(tmp_path):
    scenes = [
        {"description": "a lighthouse at night", "lighting": "night", "transition": "cut"},
        {"description": "waves crash", "camera_movement": "pan_left"},
    ]
    json_file = tmp_path / "board.json"
    json_file.write_text(json.dumps({"title": "Sea", "scenes": scenes}))
    yaml_file = tmp_path / "board.yaml"
    yaml_file.write_text("- description: a lighthouse at night\n  lighting: night\n  transition: cut\n- description: waves crash\n  camera_movement: pan_left\n")
    from_json = load_storyboard(json_file)
    from_yaml = load_storyboard(yaml_file)
    assert from_json.title == "Sea" and from_yaml.title == "board"
    assert from_json.scenes == from_yaml.scenes
    assert from_json.scenes[0].transition is Transition.CUT
    assert from_json.planner == "storyboard-file"


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "not valid JSON/YAML"),
        ('{"scenes": []}', "scenes"),
        ('{"scenes": [{"description": "x", "lighting": "purple"}]}', "lighting"),
        ('"just a string"', "must hold an object"),
    ],
)
def test_bad_storyboard_files_say_what_is_wrong(tmp_path, content, expected):
    path = tmp_path / "board.json"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_storyboard(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_binary_storyboard_file_is_refused(tmp_path):
    path = tmp_path / "board.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x9c")
    with pytest.raises(InputError, match="cannot read storyboard file"):
        load_storyboard(path)


def test_offline_planner_takes_the_longest_prompts():
    """Found by schemathesis through the API: long one-word prompts overflowed field limits."""
    from longvid.spec import MAX_PROMPT_CHARS

    for prompt in ("x" * MAX_PROMPT_CHARS, "word " * (MAX_PROMPT_CHARS // 5)):
        board = OfflinePlanner().plan(RenderSpec(prompt=prompt, duration_s=30))
        assert all(len(s.description) <= 2000 and len(s.characters[0].name) <= 80 for s in board.scenes)
