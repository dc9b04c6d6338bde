"""The command line's contract: clear one-line errors with exit code 2, JSON for scripts.
These run without Ray: input is refused before Ray starts."""

import json

import pytest

from longvid.cli import main


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["render", ""], "prompt: the prompt is empty"),
        (["render", "a fox", "--duration", "0"], "between 5 and 600 seconds"),
        (["render", "a fox", "--duration", "10000"], "between 5 and 600 seconds"),
        (["render", "a fox", "--provider", "sora"], "unknown provider 'sora'; choose one of: local, preview"),
        (["plan", "a fox", "--provider", "nope"], "unknown provider 'nope'"),
        (["render", "a fox", "-o", "out.avi"], "must end in .mp4"),
        (["render", "a fox", "--num-cpus", "0"], "--num-cpus must be at least 1"),  # a Ray that could run nothing
    ],
)
def test_bad_input_exits_2_with_a_reason(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("longvid: error: ") and expected in err[0]
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_unreadable_storyboard_file_exits_2(tmp_path, capsys):
    board = tmp_path / "board.yaml"
    board.write_text("scenes: [ {description: unclosed")
    assert main(["render", "a fox", "--storyboard", str(board)]) == 2
    assert "is not valid JSON/YAML" in capsys.readouterr().err


def test_missing_storyboard_file_exits_2(tmp_path, capsys):
    assert main(["plan", "a fox", "--storyboard", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["render", "a fox", "--duration", "long"])
    assert info.value.code == 2


def test_json_error_for_scripts(capsys):
    assert main(["plan", "", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["exit_code"] == 2 and "prompt" in out["error"]


def test_plan_chinese_prompt_as_json(capsys):
    assert main(["plan", "一只红色的狐狸在雪林中探索，黎明时分，它发现了一条小溪。", "-d", "30", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    scenes = data["storyboard"]["scenes"]
    assert 3 <= len(scenes) <= 8
    assert sum(s["frames"] for s in data["segments"]) == 30 * 24
    assert "狐狸" in scenes[0]["characters"][0]["name"]


def test_plan_table(capsys):
    assert main(["plan", "a red fox explores a snowy forest at dawn"]) == 0
    out = capsys.readouterr().out
    assert "6 segments" in out and "dawn" in out


def test_providers_lists_what_is_configured_without_keys(capsys, monkeypatch):
    monkeypatch.delenv("RUNWAYML_API_SECRET", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "secret-value-never-printed")
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("\t")[0]: line for line in out.splitlines()}
    assert rows["preview"].startswith("preview\tready\tmodel=procedural-v1")
    assert "not configured (set RUNWAYML_API_SECRET)" in rows["runway"]
    assert rows["veo"].startswith("veo\tready") and "secret-value" not in out
