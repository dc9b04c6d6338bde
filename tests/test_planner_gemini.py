"""The Gemini planner, driving the real google-genai client against the fake Gemini server.

Only the base URL and the key differ from production; no client method is patched.
"""

import time

import pytest
from PIL import Image
from pydantic import SecretStr

from longvid.errors import InputError, RenderError
from longvid.planning.gemini import (
    DEFAULT_GEMINI_MODEL,
    GeminiPlanner,
    PlanRejected,
    PlanScene,
    StoryPlan,
    gemini_available,
    to_storyboard,
)
from longvid.planning.offline import OfflinePlanner
from longvid.settings import GeminiSettings, Settings
from longvid.spec import CameraMove, RenderSpec, Transition
from longvid.testing.fake_gemini import Fault, FakeGemini, start_fake_gemini

SECRET = "AIzaFAKE-s3cr3t-k3y-never-print-me-0123456789"

_ENV = (
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE",
    "LONGVID_GEMINI_MODEL",
)


@pytest.fixture(scope="module")
def server():
    with start_fake_gemini(api_key=SECRET, slow_s=1.0) as running:
        yield running


@pytest.fixture
def fake(server, monkeypatch):
    """A clean fake, and an environment that points an unmodified client at it."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    server.fake.clear()
    yield server.fake
    server.fake.clear()


def planner(**kwargs) -> GeminiPlanner:
    """A planner on the settings an edge would build from this test's environment; `model`
    and `base_url` override them."""
    kwargs.setdefault("retry_initial_delay_s", 0.01)
    kwargs.setdefault("retry_max_delay_s", 0.05)
    overrides = {name: kwargs.pop(name) for name in ("model", "base_url") if name in kwargs}
    return GeminiPlanner(Settings.from_env().gemini.model_copy(update=overrides), **kwargs)


def spec(prompt="a red fox explores a snowy forest at dawn, then sleeps in its den", **kwargs) -> RenderSpec:
    kwargs.setdefault("duration_s", 30)
    return RenderSpec(prompt=prompt, **kwargs)


def assert_no_secret(*texts):
    for text in texts:
        assert SECRET not in str(text)


# -- the happy path -------------------------------------------------------------------------


def test_happy_path_plans_with_gemini_through_the_sdk(fake, tmp_path):
    ref = tmp_path / "fox.png"
    Image.new("RGB", (64, 48), (200, 80, 20)).save(ref)
    the_spec = spec(reference_images=[ref])
    gemini = planner()

    board = gemini.plan(the_spec, max_scenes=6)

    assert board.planner == "gemini" and gemini.warnings == []
    assert 3 <= len(board.scenes) <= 6
    assert board.prompt == the_spec.prompt
    assert abs(sum(s.duration_s for s in board.scenes) - 30) < 0.01  # weights scaled to the duration
    assert all(s.characters and s.characters[0].name == "red fox" for s in board.scenes)
    assert board.scenes[0].characters[0].description  # the top-level character's description

    (request,) = fake.requests
    assert request.model == DEFAULT_GEMINI_MODEL
    assert request.api_version in ("v1", "v1beta")
    assert request.api_key == SECRET and request.headers["x-goog-api-key"] == SECRET
    config = request.generation_config
    assert (config.get("responseMimeType") or config.get("response_mime_type")) == "application/json"
    assert config["temperature"] == 1.0 and "thinkingConfig" not in config
    schema = request.response_schema
    assert schema is not None and set(schema["properties"]) == {"title", "style", "characters", "scenes"}
    scene_schema = schema["properties"]["scenes"]["items"]["properties"]
    assert scene_schema["camera_movement"]["enum"] == [m.value for m in CameraMove]
    assert scene_schema["transition"]["enum"] == [t.value for t in Transition]
    assert "storyboard planner" in request.system_instruction
    assert "a red fox explores a snowy forest at dawn" in request.prompt_text
    assert "between 3 and 6 scenes" in request.prompt_text

    assert request.images == [("image/png", ref.read_bytes())]

    assert gemini.usage.requests == 1
    assert gemini.usage.prompt_tokens > 0 and gemini.usage.output_tokens > 0
    assert gemini.usage.total_tokens == gemini.usage.prompt_tokens + gemini.usage.output_tokens
    assert gemini.usage.model_version == "fake-gemini-001"
    assert gemini.usage.estimated_cost_usd() > 0
    assert gemini.usage.estimated_cost_usd({}) is None


def test_thinking_level_and_temperature_are_sent(fake):
    planner(thinking_level="low", temperature=0.4).plan(spec())
    config = fake.requests[0].generation_config
    thinking = config.get("thinkingConfig") or config.get("thinking_config")
    assert (thinking.get("thinkingLevel") or thinking.get("thinking_level")) == "LOW"
    assert config["temperature"] == 0.4


def test_model_and_base_url_come_from_the_constructor_or_the_environment(fake, server, monkeypatch):
    monkeypatch.setenv("LONGVID_GEMINI_MODEL", "gemini-flash-latest")
    planner().plan(spec(), max_scenes=4)
    assert fake.requests[-1].model == "gemini-flash-latest"

    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL")
    planner(model="gemini-3.5-flash", base_url=server.url, api_version="v1beta").plan(spec(), max_scenes=4)
    assert (fake.requests[-1].model, fake.requests[-1].api_version) == ("gemini-3.5-flash", "v1beta")


def test_google_api_key_wins_over_gemini_api_key(fake, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", SECRET)
    monkeypatch.setenv("GEMINI_API_KEY", "some-other-key")
    assert planner().plan(spec()).planner == "gemini"

    monkeypatch.setenv("GOOGLE_API_KEY", "a-wrong-key")
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    with pytest.raises(InputError, match="GOOGLE_API_KEY was rejected"):
        planner().plan(spec())


def test_a_chinese_prompt_round_trips(fake):
    prompt = "一只红色的狐狸在黄昏的雪林中奔跑，然后回到温暖的洞穴里睡觉。"
    board = planner().plan(RenderSpec(prompt=prompt, duration_s=30), max_scenes=8)

    assert board.planner == "gemini"
    assert prompt in fake.requests[0].prompt_text
    assert board.prompt == prompt
    assert board.title.startswith("一只红色的狐狸")
    assert any("回到温暖的洞穴里睡觉" in s.description for s in board.scenes)
    assert all(s.lighting.value == "dusk" for s in board.scenes)  # 黄昏, read by the fake's planner


def test_few_segments_narrow_the_scene_count(fake):
    board = planner().plan(spec(duration_s=10), max_scenes=2)
    assert len(board.scenes) == 2
    assert "exactly 2 scenes" in fake.requests[0].prompt_text


# -- invalid answers: retry, then fall back -------------------------------------------------


def test_malformed_json_is_retried_with_the_error_in_the_prompt(fake):
    fake.inject(Fault.MALFORMED)
    gemini = planner()
    board = gemini.plan(spec(), max_scenes=6)

    assert board.planner == "gemini" and gemini.warnings == []
    assert fake.request_count == 2 and gemini.usage.requests == 2
    first, second = fake.requests
    assert "rejected" not in first.prompt_text
    assert "Attempt 1 was rejected: the answer is not valid JSON" in second.prompt_text
    assert "a red fox explores a snowy forest at dawn" in second.prompt_text


@pytest.mark.parametrize(
    ("fault", "mentioned"),
    [
        (Fault.TOO_MANY_SCENES, "between 3 and 6 scenes, got 20"),
        (Fault.BAD_ENUM, "scenes.0.camera_movement"),
        (Fault.BAD_COLOUR, "not a #rrggbb hex colour"),
        (Fault.EMPTY, "held no JSON"),
    ],
)
def test_out_of_bounds_answers_are_retried(fake, fault, mentioned):
    fake.inject(fault)
    board = planner().plan(spec(), max_scenes=6)
    assert board.planner == "gemini"
    assert fake.request_count == 2
    assert mentioned in fake.requests[1].prompt_text


def test_always_bad_answers_fall_back_to_the_offline_planner(fake):
    fake.inject(Fault.TOO_MANY_SCENES, times=None)
    the_spec = spec()
    gemini = planner(validation_retries=2)
    board = gemini.plan(the_spec, max_scenes=6)

    assert fake.request_count == 3  # the first try and two retries
    assert board == OfflinePlanner().plan(the_spec, max_scenes=6)
    assert board.planner == "offline"
    (warning,) = gemini.warnings
    assert "offline planner" in warning and "3 answers failed validation" in warning and "got 20" in warning
    assert gemini.usage.requests == 3
    assert_no_secret(warning)


def test_plan_with_report_returns_warnings_without_touching_the_planner(fake):
    fake.inject(Fault.MALFORMED, times=None)
    gemini = planner(validation_retries=0)
    result = gemini.plan_with_report(spec())
    assert result.fell_back and len(result.warnings) == 1 and result.usage.requests == 1
    assert gemini.warnings == []


def test_without_fallback_a_failure_raises(fake):
    fake.inject(Fault.MALFORMED, times=None)
    with pytest.raises(RenderError, match="not valid JSON") as caught:
        planner(validation_retries=1, allow_fallback=False).plan(spec())
    assert_no_secret(caught.value)


# -- API errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.RATE_LIMIT])
def test_api_errors_after_the_sdk_retries_fall_back_with_a_warning(fake, fault):
    fake.inject(fault, times=None)
    gemini = planner(http_attempts=2)
    board = gemini.plan(spec(), max_scenes=6)

    assert board.planner == "offline"
    assert fake.request_count == 2  # the SDK's own retry happened
    (warning,) = gemini.warnings
    assert f"answered {fault.value}" in warning and "offline planner" in warning
    assert_no_secret(warning)


def test_a_transient_429_is_retried_by_the_sdk(fake):
    fake.inject(Fault.RATE_LIMIT)
    gemini = planner(http_attempts=3)
    assert gemini.plan(spec()).planner == "gemini"
    assert fake.request_count == 2 and gemini.warnings == []


def test_an_unknown_model_falls_back_with_a_hint(fake):
    fake.inject(Fault.NOT_FOUND)
    gemini = planner(model="gemini-0-retired")
    assert gemini.plan(spec()).planner == "offline"
    assert "404" in gemini.warnings[0] and "LONGVID_GEMINI_MODEL" in gemini.warnings[0]


def test_a_slow_answer_times_out_and_falls_back(fake):
    fake.inject(Fault.SLOW)
    gemini = planner(timeout_s=0.3, http_attempts=1)
    started = time.monotonic()
    board = gemini.plan(spec())
    assert time.monotonic() - started < 1.0
    assert board.planner == "offline"
    assert "timed out" in gemini.warnings[0]


def test_an_unreachable_api_falls_back(fake):
    gemini = planner(base_url="http://127.0.0.1:9", http_attempts=1)  # the discard port: refused
    assert gemini.plan(spec()).planner == "offline"
    assert "could not be reached" in gemini.warnings[0]


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.UNAUTHENTICATED, Fault.FORBIDDEN, Fault.KEY_INVALID])
def test_a_rejected_key_is_an_input_error(fake, fault):
    fake.inject(fault)
    gemini = planner()
    with pytest.raises(InputError, match="GEMINI_API_KEY was rejected by the Gemini API") as caught:
        gemini.plan(spec())
    assert fake.request_count == 1  # no retry, no fallback
    assert_no_secret(caught.value, repr(gemini), gemini.warnings)


def test_a_wrong_key_is_rejected_by_the_fake_like_google_does(fake, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-not-the-right-one")
    with pytest.raises(InputError, match="GEMINI_API_KEY was rejected") as caught:
        planner().plan(spec())
    assert "AIza-not-the-right-one" not in str(caught.value)


def test_a_missing_key_is_an_input_error_naming_the_variables(fake, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    assert not gemini_available(Settings.from_env().gemini)
    with pytest.raises(InputError, match="GOOGLE_API_KEY or GEMINI_API_KEY"):
        planner()
    monkeypatch.setenv("GEMINI_API_KEY", "   ")
    with pytest.raises(InputError):
        planner()
    assert gemini_available(Settings.from_env({"GEMINI_API_KEY": "x"}).gemini)


def test_the_key_never_shows_in_any_message(fake, monkeypatch):
    gemini = planner(http_attempts=1)
    assert SECRET not in repr(gemini)
    messages = []
    for fault in (Fault.MALFORMED, Fault.SERVER_ERROR, Fault.NOT_FOUND):
        fake.clear()
        fake.inject(fault, times=None)
        gemini.plan(spec())
        messages += gemini.warnings
    # even when the service quotes the key back
    monkeypatch.setattr(fake, "error_message", f"quota exceeded for key {SECRET}")
    fake.clear()
    fake.inject(Fault.UNAVAILABLE)
    gemini.plan(spec())
    messages += gemini.warnings
    assert "[redacted]" in messages[-1]
    fake.inject(Fault.UNAUTHENTICATED)
    with pytest.raises(InputError) as caught:
        gemini.plan(spec())
    messages.append(str(caught.value))
    assert len(messages) == 5
    assert_no_secret(*messages)


def test_gemini_errors_are_scrubbed_by_the_shared_rules(fake, monkeypatch):
    # The planner uses the providers' sanitizer: a token or signed URL the service quotes is
    # removed too, not only the configured key (it used to strip the key alone).
    other = "AIzaOTHER-project-key-0123456789abcdef"
    monkeypatch.setattr(fake, "error_message", f"denied for {other}; see https://x.test/p?sig=abc123&v=1")
    gemini = planner(http_attempts=1)
    fake.inject(Fault.UNAVAILABLE)
    gemini.plan(spec())
    assert other not in gemini.warnings[0] and "abc123" not in gemini.warnings[0] and "[redacted]" in gemini.warnings[0]


# -- the conversion rules, without the network ----------------------------------------------


def _plan_json(**scene_changes):
    scene = {
        "description": "a fox in the snow",
        "duration_s": 10,
        "visual_style": "cinematic",
        "characters": ["Fox", "Owl"],
        "camera_movement": "static",
        "lighting": "dawn",
        "color_palette": ["#ABC", "1d3557"],
        "transition": "cut",
    } | scene_changes
    return {
        "title": "Fox",
        "style": "cinematic",
        "characters": [{"name": "fox", "description": "a small red fox"}],
        "scenes": [scene, dict(scene), dict(scene, duration_s=20)],
    }


def test_loose_but_clear_answers_are_normalised():
    plan = StoryPlan.model_validate(_plan_json(camera_movement="Pan Left", lighting="GOLDEN-HOUR"))
    board = to_storyboard(plan, spec(duration_s=40), max_scenes=8)
    first = board.scenes[0]
    assert first.camera_movement is CameraMove.PAN_LEFT and first.lighting.value == "golden_hour"
    assert first.color_palette == ["#aabbcc", "#1d3557"]
    assert [c.name for c in first.characters] == ["fox", "Owl"]  # matched case-insensitively; unknowns kept
    assert first.characters[0].description == "a small red fox"
    assert [s.duration_s for s in board.scenes] == [10, 10, 20]


def test_bad_answers_are_rejected_with_a_reason():
    with pytest.raises(PlanRejected, match="at most 2|exactly 2 scenes, got 3"):
        to_storyboard(StoryPlan.model_validate(_plan_json()), spec(), max_scenes=2)
    with pytest.raises(PlanRejected, match="description: is empty"):
        to_storyboard(StoryPlan.model_validate(_plan_json(description="  ")), spec(), max_scenes=8)
    with pytest.raises(ValueError):
        PlanScene.model_validate(_plan_json()["scenes"][0] | {"transition": "wipe"})


def test_the_response_schema_is_accepted_by_the_sdk():
    from google.genai import _transformers, types

    schema = _transformers.t_schema(None, StoryPlan)
    assert isinstance(schema, types.Schema)
    assert schema.properties["scenes"].max_items == 8


def test_the_fake_can_run_without_a_fixed_key():
    with start_fake_gemini(FakeGemini(api_key=None)) as running:
        board = GeminiPlanner(GeminiSettings(api_key=SecretStr("anything"), base_url=running.url)).plan(spec())
    assert board.planner == "gemini"


def test_cli_plans_with_gemini_when_a_key_is_set(monkeypatch, capsys):
    """`longvid plan` through the real SDK to the fake: the default planner picks Gemini
    when a key is configured, and falls back (with a warning) when the service fails."""
    import json as _json

    from longvid.cli import main
    from longvid.testing.fake_gemini import Fault, start_fake_gemini

    with start_fake_gemini() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        assert main(["plan", "a red fox explores a snowy forest at dawn", "--json"]) == 0
        assert _json.loads(capsys.readouterr().out)["storyboard"]["planner"] == "gemini"
        assert main(["plan", "a red fox", "--planner", "offline", "--json"]) == 0
        assert _json.loads(capsys.readouterr().out)["storyboard"]["planner"] == "offline"
        server.fake.inject(Fault.MALFORMED, times=None)
        assert main(["plan", "a red fox", "--json"]) == 0
        captured = capsys.readouterr()
        assert _json.loads(captured.out)["storyboard"]["planner"] == "offline"
        assert "used the offline planner instead" in captured.err
        assert server.env()["GEMINI_API_KEY"] not in captured.err


# -- rewording a prompt a video provider refused ------------------------------------------------


def test_rephrase_asks_gemini_with_a_schema_and_returns_its_prompt(fake):
    reworded = planner().rephrase("A knight draws his sword in a bloody war", "SAFETY.INPUT.TEXT")
    assert reworded == "A knight draws his staff in a dramatic struggle"
    request = fake.requests[-1]
    assert set(request.response_schema["properties"]) == {"prompt"}
    assert "SAFETY.INPUT.TEXT" in request.prompt_text and "bloody war" in request.prompt_text


def test_rephrase_falls_back_to_the_offline_rewording_when_gemini_fails(fake):
    fake.inject(Fault.MALFORMED, times=None)
    reworded = planner(http_attempts=1).rephrase("A knight draws his sword", "SAFETY")
    assert reworded == "A knight draws his staff"


# -- repairable answers are repaired, not retried (issue 15) ---------------------------------


def test_colour_names_and_long_palettes_are_repaired_not_refused(fake):
    fake.inject(Fault.COLOUR_NAMES, times=None)
    gemini = planner()
    board = gemini.plan(spec(), max_scenes=6)

    assert fake.request_count == 1 and board.planner == "gemini"  # no retry, no offline fallback
    assert all(s.color_palette == ["#191970", "#2f4f4f", "#aabbcc", "#ffd700", "#ffffff", "#000000"] for s in board.scenes)
    text = " | ".join(gemini.warnings)
    assert "'midnight blue' -> #191970" in text and "'not a colour'" in text and "cut from 8 to 6" in text
    assert "offline" not in text
    assert_no_secret(*gemini.warnings)


def test_an_unusable_scene_is_dropped_and_the_rest_kept(fake):
    fake.inject(Fault.EMPTY_SCENE, times=None)
    gemini = planner()
    board = gemini.plan(spec(duration_s=60), max_scenes=8)

    assert fake.request_count == 1 and board.planner == "gemini"
    assert len(board.scenes) == 5 and all(s.description.strip() for s in board.scenes)
    assert sum(s.duration_s for s in board.scenes) == pytest.approx(60, abs=0.01)
    (warning,) = gemini.warnings
    assert "dropped 1 scene" in warning and "scenes.5.description: is empty" in warning


def test_an_answer_with_too_few_usable_scenes_is_still_asked_again(fake):
    fake.inject(Fault.EMPTY_SCENE, times=1)
    board = planner().plan(spec(), max_scenes=6)  # 3 scenes asked for; one empty leaves 2
    assert fake.request_count == 2 and board.planner == "gemini"
    assert "got only 2 usable; scenes.2.description: is empty" in fake.requests[1].prompt_text


def test_counts_over_the_limits_are_clamped_with_a_note():
    crowd = [f"Person {i}" for i in range(9)]
    plan = StoryPlan.model_validate(_plan_json(characters=crowd, color_palette=["red", "#123", "bogus"]))
    repairs: list[str] = []
    board = to_storyboard(plan, spec(duration_s=40), max_scenes=8, repairs=repairs)
    assert [len(s.characters) for s in board.scenes] == [6, 6, 6]
    assert board.scenes[0].color_palette == ["#ff0000", "#112233"]
    assert any("first 6 of its 9 characters" in r for r in repairs)
    assert any("'red' -> #ff0000" in r for r in repairs) and any("'bogus'" in r for r in repairs)
    clean: list[str] = []
    to_storyboard(StoryPlan.model_validate(_plan_json()), spec(duration_s=40), max_scenes=8, repairs=clean)
    assert clean == []
