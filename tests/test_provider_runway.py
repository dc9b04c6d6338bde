"""The real Runway client against the fake Runway on 127.0.0.1 (same wire format; only the
base URL and the key differ from production, plus short retry waits). Nothing in the
client is patched: every behaviour here goes over HTTP."""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import pickle
import time

import av
import pytest
from pydantic import SecretStr
from PIL import Image

from longvid.errors import InputError
from longvid.providers import available_providers, create_provider, generate, provider_capabilities
from longvid.providers._http import (
    CorruptDownload,
    MalformedResponse,
    ProviderError,
    ProviderHTTPError,
    ProviderRejected,
    RetryAdvice,
    RetryPolicy,
    SubmitOutcomeUnknown,
    check_mp4,
    parse_retry_after,
    retry_advice,
    sanitize,
)
from longvid.providers.base import GenerationFailed, TaskState, wait_for_output
from longvid.providers.runway import RunwayProvider, choose_ratio, runway_capabilities
from longvid.settings import RunwaySettings, Settings
from longvid.spec import Scene, SegmentJob
from longvid.testing.fake_runway import DEFAULT_KEY, Fault, render_clip, start_fake_runway
from longvid.testing.server import LocalServer

FAST = RetryPolicy(attempts=4, initial_s=0.01, max_s=0.05, jitter_s=0.01)
FPS = 8  # the fake's output frame rate: small videos, quick tests


def configured(**overrides) -> RunwaySettings:
    """The Runway settings an edge would build from this test's environment, with overrides
    (a key is given as plain text)."""
    if "api_secret" in overrides:
        overrides["api_secret"] = SecretStr(overrides["api_secret"])
    return Settings.from_env().runway.model_copy(update=overrides)


@pytest.fixture(scope="module")
def runway_server():
    server, fake = start_fake_runway(scale=0.05, fps=FPS)  # 1280:720 -> 64x36
    yield server, fake
    server.stop()


@pytest.fixture
def fake(runway_server):
    _, fake = runway_server
    fake.reset()
    fake.pending_polls, fake.running_polls, fake.output_base_url = 1, 1, None
    return fake


@pytest.fixture
def env(monkeypatch, runway_server):
    server, _ = runway_server
    monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
    monkeypatch.setenv("RUNWAYML_API_SECRET", DEFAULT_KEY)
    monkeypatch.delenv("LONGVID_RUNWAY_MODEL", raising=False)
    monkeypatch.delenv("LONGVID_RUNWAY_PRICES", raising=False)
    return server


@pytest.fixture
def runway(env, fake):
    provider = RunwayProvider(configured(), retry=FAST)
    yield provider
    provider.close()


def job(width=640, height=360, duration=5.0, seed=7, prompt="a red fox trots through fresh snow") -> SegmentJob:
    return SegmentJob(
        index=0, scene_index=0, segment_in_scene=0, prompt=prompt, scene=Scene(description=prompt), start_frame=0,
        frames=int(duration * 24), generate_duration_s=duration, fps=24, width=width, height=height, seed=seed,
    )


def png(colour=(220, 40, 30), size=(64, 36)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def frames_of(mp4: bytes):
    with av.open(io.BytesIO(mp4)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def chain_texts(exc: BaseException | None):
    """str, repr and attributes of an exception and of everything chained to it."""
    while exc is not None:
        yield from (str(exc), repr(exc), repr(vars(exc)))
        exc = exc.__cause__ or exc.__context__


def wait(provider, task_id, **options):
    options.setdefault("poll_interval_s", 0.01)
    options.setdefault("timeout_s", 10)
    return wait_for_output(provider, task_id, **options)


# -- happy paths ------------------------------------------------------------------------


def test_image_to_video_sends_the_documented_body_and_returns_a_real_mp4(runway, fake):
    image = png()
    states = []
    task_id = runway.submit(job(), image)
    mp4 = wait(runway, task_id, on_status=lambda _, s: states.append(s.state))

    (create,) = fake.creates()
    assert create.path == "/v1/image_to_video"
    assert create.headers["authorization"] == f"Bearer {DEFAULT_KEY}"
    assert create.headers["x-runway-version"] == "2024-11-06"
    body = create.body
    assert set(body) == {"model", "promptText", "ratio", "duration", "seed", "promptImage"}
    assert body["model"] == "gen4.5" and body["ratio"] == "1280:720" and body["duration"] == 5 and body["seed"] == 7
    assert body["promptText"] == "a red fox trots through fresh snow"
    assert body["promptImage"].startswith("data:image/png;base64,")
    assert base64.b64decode(body["promptImage"].split(",", 1)[1]) == image
    assert states == [TaskState.PENDING, TaskState.RUNNING, TaskState.SUCCEEDED]

    frames = frames_of(mp4)
    assert len(frames) == 5 * FPS and frames[0].shape == (36, 64, 3)
    first = frames[0].reshape(-1, 3).mean(axis=0)
    assert first[0] > 150 and first[1] < 90  # the video starts on the red prompt image
    assert fake.counts["download"] == 1
    assert "authorization" not in fake.download_headers[0]  # the key never goes to the CDN


def test_text_to_video_portrait_picks_the_portrait_ratio_and_fits_the_duration(runway, fake):
    task_id = runway.submit(job(width=360, height=640, duration=4.5))
    mp4 = wait(runway, task_id)
    (create,) = fake.creates()
    assert create.path == "/v1/text_to_video"
    assert "promptImage" not in create.body
    assert create.body["ratio"] == "720:1280" and create.body["duration"] == 5  # 4.5 s -> whole seconds
    frames = frames_of(mp4)
    assert len(frames) == 5 * FPS and frames[0].shape == (64, 36, 3)


def test_veo_through_runway_sends_audio_and_no_seed(env, fake):
    with RunwayProvider(configured(model="veo3.1_fast"), retry=FAST) as provider:
        wait(provider, provider.submit(job(duration=5)))
        assert provider.price(5) == pytest.approx(6 * 0.15)  # billed for the 6 s asked for
        with pytest.raises(InputError, match="cannot make 360x360"):
            provider.submit(job(width=360, height=360))
    body = fake.creates()[0].body
    assert body == {"model": "veo3.1_fast", "promptText": body["promptText"], "ratio": "1280:720", "duration": 6, "audio": False}


def test_gen4_turbo_refuses_a_segment_without_an_image(env, fake):
    with RunwayProvider(configured(model="gen4_turbo"), retry=FAST) as provider:
        with pytest.raises(InputError, match="only makes video from an image"):
            provider.submit(job())
        wait(provider, provider.submit(job(duration=6), png()))
    assert fake.counts["create"] == 1 and fake.creates()[0].body["duration"] == 10


def test_created_through_the_registry_from_the_environment(env, fake):
    assert {"runway", "veo"} <= set(available_providers())
    provider = create_provider("runway", Settings.from_env())
    task_id, mp4 = generate(provider, job(), png(), poll_interval_s=0.01, timeout_s=10)
    check_mp4(mp4)
    assert fake.tasks[task_id].model == "gen4.5"


# -- waiting, throttling, failures -------------------------------------------------------


def test_throttled_is_waiting_not_failure(runway, fake):
    fake.faults.append(Fault("throttle", polls=3))
    states = []
    wait(runway, runway.submit(job()), on_status=lambda _, s: states.append(s.state))
    assert states[:3] == [TaskState.THROTTLED] * 3
    assert states[-1] is TaskState.SUCCEEDED


@pytest.mark.parametrize(
    "code, advice",
    [("SAFETY.INPUT.TEXT", RetryAdvice.MODIFY), ("SAFETY.OUTPUT.VIDEO", RetryAdvice.MODIFY),
     ("INTERNAL.BAD_OUTPUT.CODE01", RetryAdvice.SAME), ("ASSET.INVALID", RetryAdvice.MODIFY)],
)
def test_failed_task_carries_runways_failure_code(runway, fake, code, advice):
    fake.faults.append(Fault("fail", failure_code=code, message="Your prompt was flagged"))
    with pytest.raises(GenerationFailed) as info:
        wait(runway, runway.submit(job()))
    assert info.value.failure_code == code
    assert "Your prompt was flagged" in str(info.value)
    assert retry_advice(info.value.failure_code) is advice


def test_an_unreadable_prompt_image_fails_the_task_with_asset_invalid(runway, fake):
    with pytest.raises(GenerationFailed) as info:
        wait(runway, runway.submit(job(), b"\x89PNG\r\n\x1a\n not really an image"))
    assert info.value.failure_code == "ASSET.INVALID"


def test_a_task_stuck_running_times_out_and_can_be_cancelled(runway, fake):
    fake.faults.append(Fault("stuck"))
    task_id = runway.submit(job())
    started = time.monotonic()
    with pytest.raises(GenerationFailed) as info:
        wait(runway, task_id, timeout_s=0.3, poll_interval_s=0.02)
    assert info.value.failure_code == "TIMEOUT" and time.monotonic() - started < 3
    assert retry_advice("TIMEOUT") is RetryAdvice.CHECK
    runway.cancel(task_id)
    (delete,) = [r for r in fake.requests if r.method == "DELETE"]
    assert delete.path == f"/v1/tasks/{task_id}" and delete.headers["authorization"] == f"Bearer {DEFAULT_KEY}"
    status = runway.poll(task_id)
    assert status.state is TaskState.CANCELLED and status.failure_code == "CANCELLED"


def test_cancel_of_a_finished_or_unknown_task_is_quiet(runway, fake):
    task_id = runway.submit(job())
    wait(runway, task_id)
    runway.cancel(task_id)  # deletes it
    runway.cancel(task_id)  # already gone: 404 is fine
    assert fake.counts["cancel"] == 2
    status = runway.poll(task_id)
    assert status.state is TaskState.FAILED and status.failure_code == "TASK.NOT_FOUND"


# -- retries ------------------------------------------------------------------------------


def test_429_on_create_honours_retry_after(runway, fake):
    fake.faults.append(Fault("429", retry_after=0.2, times=2))
    started = time.monotonic()
    task_id = runway.submit(job())
    elapsed = time.monotonic() - started
    assert fake.counts["create"] == 3  # two 429s, then the one that made the task
    assert list(fake.tasks) == [task_id]
    assert 0.4 <= elapsed < 2.0  # waited Retry-After each time, not the 0.01 s backoff


def test_429_past_the_retry_budget_is_a_retryable_rate_limit(runway, fake):
    fake.faults.append(Fault("429", times=None))
    with pytest.raises(ProviderHTTPError) as info:
        runway.submit(job())
    assert info.value.failure_code == "HTTP.RATE_LIMITED" and info.value.retryable and info.value.status == 429
    assert fake.counts["create"] == FAST.attempts and not fake.tasks


def test_503_on_create_is_retried_because_nothing_was_created(runway, fake):
    fake.faults.append(Fault("503", times=2))
    task_id = runway.submit(job())
    assert fake.counts["create"] == 3 and list(fake.tasks) == [task_id]


@pytest.mark.parametrize("status", ["500", "502", "504"])
def test_an_ambiguous_5xx_on_create_is_not_retried(runway, fake, status):
    fake.faults.append(Fault(status))
    with pytest.raises(SubmitOutcomeUnknown) as info:
        runway.submit(job())
    assert info.value.failure_code == "SUBMIT.UNKNOWN" and not info.value.retryable
    assert retry_advice(info.value.failure_code) is RetryAdvice.CHECK
    assert fake.counts["create"] == 1


def test_a_create_that_times_out_after_sending_is_never_repeated(env, fake):
    fake.faults.append(Fault("slow", delay_s=0.8))
    with RunwayProvider(configured(), retry=FAST, timeout_s=0.25) as provider:
        with pytest.raises(SubmitOutcomeUnknown, match="may have been created"):
            provider.submit(job())
    assert fake.counts["create"] == 1
    assert len(fake.tasks) == 1  # the server did make the task: a retry would have made two


def test_5xx_and_slow_answers_on_polls_are_retried(env, fake):
    with RunwayProvider(configured(), retry=FAST, timeout_s=0.2) as provider:
        task_id = provider.submit(job())
        fake.faults.extend([Fault("502", on="poll"), Fault("504", on="poll"), Fault("slow", on="poll", delay_s=0.4),
                            Fault("503", on="download")])
        mp4 = wait(provider, task_id)
    check_mp4(mp4)
    assert fake.counts["download"] == 2
    assert fake.counts["poll"] == 2 + 3 + 1  # 502, 504; three states (one answered too late); fetch


def test_a_connection_refused_create_is_retried_then_reported_unavailable(fake, monkeypatch):
    probe = LocalServer(fake.app)  # a port with nothing listening on it
    monkeypatch.setenv("RUNWAYML_BASE_URL", probe.url)
    with RunwayProvider(configured(api_secret=DEFAULT_KEY), retry=FAST) as provider:
        with pytest.raises(ProviderError) as info:
            provider.submit(job())
    assert info.value.failure_code == "HTTP.UNREACHABLE" and info.value.retryable


# -- bad answers ---------------------------------------------------------------------------


def test_400_is_a_clear_non_retryable_error_with_the_servers_message(runway, fake):
    fake.faults.append(Fault("400", message="promptImage: the image is smaller than 64 pixels"))
    with pytest.raises(ProviderRejected) as info:
        runway.submit(job(), png())
    assert "the image is smaller than 64 pixels" in str(info.value)
    assert info.value.failure_code == "HTTP.REJECTED" and not info.value.retryable and info.value.status == 400
    assert fake.counts["create"] == 1


def test_the_fakes_validation_issues_reach_the_error(env, fake):
    # A client/fake disagreement shows as a 400 with Runway's issue list.
    with RunwayProvider(configured(), retry=FAST) as provider:
        provider.model = dataclasses.replace(provider.model, ratios=("1920:1080",))
        with pytest.raises(ProviderRejected, match=r"ratio: must be one of"):
            provider.submit(job(1920, 1080), png())


def test_malformed_json(runway, fake):
    task_id = runway.submit(job())
    fake.faults.append(Fault("malformed", on="poll"))
    assert runway.poll(task_id).state is TaskState.PENDING  # one bad answer is retried
    fake.faults.append(Fault("malformed", on="poll", times=None))
    with pytest.raises(MalformedResponse) as info:
        runway.poll(task_id)
    assert info.value.failure_code == "PROTOCOL.MALFORMED" and "not valid JSON" in str(info.value)
    fake.faults.clear()
    fake.faults.append(Fault("malformed"))
    creates = fake.counts["create"]
    with pytest.raises(SubmitOutcomeUnknown, match="not valid JSON"):
        runway.submit(job())
    assert fake.counts["create"] == creates + 1  # a 200 we cannot read may be a real task


@pytest.mark.parametrize("kind", ["truncate", "cut"])
def test_a_truncated_download_is_detected_and_retried(runway, fake, kind):
    task_id = runway.submit(job())
    fake.faults.append(Fault(kind, on="download"))
    check_mp4(wait(runway, task_id))  # the second download is whole
    assert fake.counts["download"] == 2
    fake.faults.append(Fault(kind, on="download", times=None))
    with pytest.raises(CorruptDownload) as info:
        runway.fetch(task_id)
    assert info.value.retryable and info.value.failure_code == "DOWNLOAD.CORRUPT"
    assert "_jwt" not in str(info.value) and "signed-" not in str(info.value)  # the URL's signature is not shown


def test_outputs_on_another_host_are_downloaded_without_the_key(runway, fake):
    with LocalServer(fake.app) as cdn:
        fake.output_base_url = cdn.url
        check_mp4(wait(runway, runway.submit(job())))
    assert fake.counts["download"] == 1
    assert fake.download_headers[0]["host"] == cdn.url.removeprefix("http://")
    assert "authorization" not in fake.download_headers[0]


# -- secrets -------------------------------------------------------------------------------


def test_the_key_never_appears_in_errors_reprs_or_logs(env, fake, caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []

    def collect(call):
        with pytest.raises(Exception) as info:
            call()
        errors.append(info.value)
        return info.value

    with RunwayProvider(configured(), retry=FAST) as provider:
        assert DEFAULT_KEY not in repr(provider) and DEFAULT_KEY not in repr(provider.__dict__)
        fake.faults.append(Fault("400", message=f"bad request from Bearer {DEFAULT_KEY} with {DEFAULT_KEY}"))
        assert "[redacted]" in str(collect(lambda: provider.submit(job())))
        task_id = provider.submit(job())
        fake.faults.append(Fault("500", on="poll", times=None))
        collect(lambda: provider.poll(task_id))
        fake.faults.clear()
        fake.faults.append(Fault("fail", failure_code="SAFETY.INPUT.TEXT", message=f"echo {DEFAULT_KEY}"))
        collect(lambda: wait(provider, provider.submit(job())))
    with RunwayProvider(configured(), retry=FAST, timeout_s=0.2) as provider:
        fake.faults.append(Fault("slow", delay_s=0.5))
        collect(lambda: provider.submit(job()))
    wrong = "key_" + "f" * 128
    with RunwayProvider(configured(api_secret=wrong), retry=FAST) as provider:
        auth = collect(lambda: provider.submit(job()))
        assert auth.failure_code == "HTTP.AUTH" and "RUNWAYML_API_SECRET" in str(auth)
        assert wrong not in repr(provider)
    assert len(errors) == 5
    for exc in errors:
        for text in chain_texts(exc):
            assert DEFAULT_KEY not in text and wrong not in text
    assert "Runway answered HTTP 500" in caplog.text  # the retries were logged...
    assert DEFAULT_KEY not in caplog.text and wrong not in caplog.text  # ...without the key


def test_a_missing_key_is_an_input_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv("RUNWAYML_API_SECRET", raising=False)
    with pytest.raises(InputError, match="RUNWAYML_API_SECRET"):
        RunwayProvider(configured())
    with pytest.raises(InputError, match="RUNWAYML_API_SECRET"):
        create_provider("runway", Settings.from_env())
    assert provider_capabilities("runway", Settings.from_env()).name == "runway"  # listing needs no key


def test_errors_survive_pickling_with_their_codes():
    for exc in (SubmitOutcomeUnknown("x", status=502, provider="runway"),
                ProviderHTTPError("y", "HTTP.RATE_LIMITED", status=429, retryable=True, retry_after_s=2.0),
                CorruptDownload("z")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert (back.failure_code, back.status, back.retryable, back.retry_after_s) == (
            exc.failure_code, exc.status, exc.retryable, exc.retry_after_s)


# -- pure parts ------------------------------------------------------------------------------


def test_capabilities_prices_and_overrides(monkeypatch):
    monkeypatch.delenv("LONGVID_RUNWAY_MODEL", raising=False)
    monkeypatch.delenv("LONGVID_RUNWAY_PRICES", raising=False)
    caps = provider_capabilities("runway", Settings.from_env())
    assert (caps.name, caps.model, caps.runs_remotely, caps.idempotent_submit) == ("runway", "gen4.5", True, False)
    assert caps.durations.allowed == tuple(float(s) for s in range(2, 11))
    assert caps.price_per_second_usd == pytest.approx(0.12)
    assert {a.value for a in caps.aspect_ratios} == {"16:9", "9:16"}
    turbo = runway_capabilities(RunwaySettings(model="gen4_turbo"))
    assert turbo.durations.allowed == (5.0, 10.0) and turbo.price_per_second_usd == pytest.approx(0.05)
    assert {a.value for a in turbo.aspect_ratios} == {"16:9", "9:16", "1:1"}
    assert runway_capabilities(RunwaySettings(model="veo3.1")).price_per_second_usd == pytest.approx(0.40)
    monkeypatch.setenv("LONGVID_RUNWAY_MODEL", "gen4_turbo")
    monkeypatch.setenv("LONGVID_RUNWAY_PRICES", '{"gen4_turbo": 6}')
    caps = provider_capabilities("runway", Settings.from_env())
    assert caps.model == "gen4_turbo" and caps.price_per_second_usd == pytest.approx(0.06)
    provider = RunwayProvider(configured(api_secret=DEFAULT_KEY, base_url="http://127.0.0.1:9"))
    assert provider.price(5) == pytest.approx(0.30) and provider.price(7) == pytest.approx(0.60)  # 7 s is billed as 10
    monkeypatch.setenv("LONGVID_RUNWAY_PRICES", "twelve")
    with pytest.raises(InputError, match="LONGVID_RUNWAY_PRICES"):
        provider_capabilities("runway", Settings.from_env())
    with pytest.raises(InputError, match="unknown Runway model 'gen3a_turbo'"):
        runway_capabilities(RunwaySettings(model="gen3a_turbo"))


@pytest.mark.parametrize(
    "size, ratios, expected",
    [((640, 360), "gen4", "1280:720"), ((854, 480), "gen4", "1280:720"), ((360, 640), "gen4", "720:1280"),
     ((480, 480), "gen4", "960:960"), ((1920, 1080), "veo", "1920:1080"), ((1280, 720), "veo", "1280:720"),
     ((480, 480), "veo", None), ((1000, 300), "gen4", None)],
)
def test_choose_ratio(size, ratios, expected):
    from longvid.providers.runway import _GEN4_RATIOS, _VEO_RATIOS

    assert choose_ratio(*size, _GEN4_RATIOS if ratios == "gen4" else _VEO_RATIOS) == expected


def test_retry_after_and_sanitize():
    assert parse_retry_after("2") == 2.0 and parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)
    text = sanitize(f"Authorization: Bearer abc.def key_{'a' * 40} data:image/png;base64,{'A' * 500} "
                    "https://cdn.example/x.mp4?_jwt=tok&v=1 secret-value", ["secret-value"])
    for leaked in ("abc.def", "a" * 40, "A" * 100, "tok", "secret-value"):
        assert leaked not in text


def test_check_mp4_catches_every_kind_of_cut():
    mp4 = render_clip("a quiet lake", 1, 32, 18, 1.0, 8)
    check_mp4(mp4)
    for cut in (8, 30, len(mp4) // 2, len(mp4) - 1):
        with pytest.raises(CorruptDownload):
            check_mp4(mp4[:cut])
    with pytest.raises(CorruptDownload):
        check_mp4(b"<html>503 Service Unavailable</html>" * 4)
    assert retry_advice("DOWNLOAD.CORRUPT") is RetryAdvice.SAME
