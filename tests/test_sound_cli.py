"""The CLI's narration flags, through `longvid plan` (no Ray): the timing it shows, a
narration file, and the one-line exit-2 errors."""

import json

import pytest

from longvid.cli import main
from longvid.sound.espeak import espeak_binary

needs_espeak = pytest.mark.skipif(espeak_binary() is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")


@needs_espeak
def test_plan_shows_the_narration_timing_and_scene_lengths_fit_the_words(capsys):
    assert main(["plan", "a red fox explores a snowy forest at dawn", "-d", "30", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    narration = plan["narration"]
    assert narration["engine"] == "espeak" and narration["language"] == "en" and narration["phrases"]
    frames = {}
    for segment in plan["segments"]:
        frames[segment["scene_index"]] = frames.get(segment["scene_index"], 0) + segment["frames"]
    assert [frames[i] for i in sorted(frames)] == narration["scene_frames"] and sum(narration["scene_frames"]) == 720
    assert all(scene["narration"] for scene in plan["storyboard"]["scenes"])


@needs_espeak
def test_a_narration_file_gives_each_scene_its_text(tmp_path, capsys):
    board = tmp_path / "board.yaml"
    board.write_text("- description: a lighthouse at night\n- description: a ship at dawn\n")
    texts = tmp_path / "narration.txt"
    texts.write_text("The lighthouse keeps watch.\nAll night long.\n\n一艘船在黎明到达。\n")
    assert main(["plan", "x", "-d", "12", "--storyboard", str(board), "--narration", str(texts), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [s["narration"] for s in plan["storyboard"]["scenes"]] == ["The lighthouse keeps watch. All night long.",
                                                                     "一艘船在黎明到达。"]
    assert [p["text"] for p in plan["narration"]["phrases"]] == ["The lighthouse keeps watch.", "All night long.",
                                                                 "一艘船在黎明到达。"]


def test_a_narration_file_with_the_wrong_scene_count_is_a_one_line_error(tmp_path, capsys):
    board = tmp_path / "board.yaml"
    board.write_text("- description: a lighthouse at night\n- description: a ship at dawn\n")
    texts = tmp_path / "narration.txt"
    texts.write_text("One.\n\nTwo.\n\nThree.\n")
    assert main(["plan", "x", "--storyboard", str(board), "--narration", str(texts)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "narration file has 3 text(s) but the storyboard has 2 scene(s)" in err[0]
    assert main(["render", "x", "--narration", str(tmp_path / "missing.txt")]) == 2
    assert "--narration takes auto, off or a text file" in capsys.readouterr().err


def test_narration_off_plans_a_silent_video_cut_as_before(capsys):
    assert main(["plan", "a red fox explores a snowy forest at dawn", "-d", "30", "--narration", "off", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["narration"] is None and len(plan["segments"]) == 4
    assert all("narration" not in scene for scene in plan["storyboard"]["scenes"])


def test_a_bad_music_file_is_a_one_line_error_before_anything_starts(tmp_path, capsys):
    bad = tmp_path / "song.mp3"
    bad.write_text("not audio at all")
    assert main(["render", "a fox", "--music", str(bad), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "song.mp3" in err[0]
    assert not (tmp_path / "runs").exists()  # nothing was planned into a run, nothing paid


def test_the_gemini_planner_asks_for_narration_and_keeps_it():
    from pydantic import SecretStr

    from longvid.planning.gemini import GeminiPlanner
    from longvid.settings import GeminiSettings
    from longvid.spec import RenderSpec
    from longvid.testing.fake_gemini import start_fake_gemini

    with start_fake_gemini() as server:
        planner = GeminiPlanner(GeminiSettings(api_key=SecretStr(server.api_key), base_url=server.url))
        board = planner.plan(RenderSpec(prompt="一只红色的狐狸在雪林中探索", duration_s=30))
        request = server.fake.requests[-1]
    scene_schema = request.response_schema["properties"]["scenes"]["items"]
    assert "narration" in scene_schema["properties"] and "narration" in scene_schema["required"]
    assert board.planner == "gemini" and board.scenes[0].narration.startswith("一只红色的狐狸")


def test_subtitles_off_reaches_the_spec_and_cannot_be_burned(tmp_path, capsys):
    from longvid.cli import _spec_from, build_parser

    args = build_parser().parse_args(["render", "a fox", "--subtitles", "off"])
    spec = _spec_from(args)
    assert spec.subtitles is False and "subtitles" in spec.model_dump_json()
    assert "subtitles" not in _spec_from(build_parser().parse_args(["render", "a fox"])).model_dump_json()  # run ids unchanged
    assert main(["render", "a fox", "--subtitles", "off", "--burn-subtitles", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "burned subtitles need subtitles" in err[0]
