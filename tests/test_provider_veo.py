"""The real Veo client (google-genai in Vertex mode) against the fake Vertex endpoint on
127.0.0.1. Only the base URL and the credentials differ from production; the SDK makes
the HTTP calls, nothing in the client is patched."""

from __future__ import annotations

import base64
import io
import logging
import time

import av
import google.oauth2.credentials
import pytest
from PIL import Image
from pydantic import SecretStr

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
    retry_advice,
)
from longvid.providers.base import GenerationFailed, TaskState, wait_for_output
from longvid.providers.veo import VeoProvider, operation_failure_code, veo_capabilities
from longvid.settings import Settings, VeoSettings
from longvid.spec import AspectRatio, Scene, SegmentJob
from longvid.testing.fake_veo import DEFAULT_KEY, DEFAULT_TOKEN, Fault, start_fake_veo

FAST = RetryPolicy(attempts=4, initial_s=0.01, max_s=0.05, jitter_s=0.01)
FPS = 8
MODEL = "veo-3.1-fast-generate-preview"
ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GOOGLE_VERTEX_BASE_URL",
       "LONGVID_VEO_MODEL", "LONGVID_VEO_PRICES", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_APPLICATION_CREDENTIALS")


def configured(**overrides) -> VeoSettings:
    """The Veo settings an edge would build from this test's environment, with overrides
    (a key is given as plain text)."""
    if "api_key" in overrides:
        overrides["api_key"] = SecretStr(overrides["api_key"])
    return Settings.from_env().veo.model_copy(update=overrides)


@pytest.fixture(scope="module")
def veo_server():
    server, fake = start_fake_veo(scale=0.05, fps=FPS)  # 720p 16:9 -> 64x36
    yield server, fake
    server.stop()


@pytest.fixture
def fake(veo_server):
    _, fake = veo_server
    fake.reset()
    return fake


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def env(clean_env, veo_server):
    server, _ = veo_server
    clean_env.setenv("GOOGLE_VERTEX_BASE_URL", server.url)
    clean_env.setenv("GOOGLE_API_KEY", DEFAULT_KEY)
    return server


@pytest.fixture
def veo(env, fake):
    provider = VeoProvider(configured(), retry=FAST)
    yield provider
    provider.close()


def job(width=640, height=360, duration=5.0, seed=7, prompt="a paper boat drifts down a rainy street") -> SegmentJob:
    return SegmentJob(
        index=0, scene_index=0, segment_in_scene=0, prompt=prompt, scene=Scene(description=prompt), start_frame=0,
        frames=int(duration * 24), generate_duration_s=duration, fps=24, width=width, height=height, seed=seed,
    )


def png(colour=(30, 60, 220)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 36), colour).save(out, format="PNG")
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


def test_express_mode_happy_path_with_an_image(veo, fake):
    image = png()
    states = []
    task_id = veo.submit(job(), image)
    mp4 = wait(veo, task_id, on_status=lambda _, s: states.append(s.state))

    create, *polls = fake.requests
    assert create.path == f"/v1beta1/publishers/google/models/{MODEL}:predictLongRunning"
    assert create.headers["x-goog-api-key"] == DEFAULT_KEY and "authorization" not in create.headers
    (instance,) = create.body["instances"]
    assert instance["prompt"] == "a paper boat drifts down a rainy street"
    assert instance["image"] == {"bytesBase64Encoded": base64.b64encode(image).decode(), "mimeType": "image/png"}
    assert create.body["parameters"] == {"sampleCount": 1, "durationSeconds": 6, "aspectRatio": "16:9",
                                         "resolution": "720p", "seed": 7, "generateAudio": False}
    assert task_id.startswith(f"publishers/google/models/{MODEL}/operations/")
    assert {p.path for p in polls} == {f"/v1beta1/publishers/google/models/{MODEL}:fetchPredictOperation"}
    assert all(p.body == {"operationName": task_id} for p in polls)
    assert states == [TaskState.RUNNING, TaskState.SUCCEEDED]
    assert fake.counts["poll"] == 2  # fetch used the bytes the finishing poll brought

    frames = frames_of(mp4)
    assert len(frames) == 6 * FPS and frames[0].shape == (36, 64, 3)
    first = frames[0].reshape(-1, 3).mean(axis=0)
    assert first[2] > 150 and first[0] < 90  # starts on the blue prompt image


def test_project_mode_with_credentials_and_portrait_text_to_video(clean_env, veo_server, fake):
    server, _ = veo_server
    clean_env.setenv("GOOGLE_CLOUD_PROJECT", "film-studio")
    clean_env.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    clean_env.setenv("GOOGLE_API_KEY", DEFAULT_KEY)  # a project in the environment wins, as in the SDK
    credentials = google.oauth2.credentials.Credentials(token=DEFAULT_TOKEN)
    provider = VeoProvider(configured(base_url=server.url), credentials=credentials, retry=FAST, negative_prompt="blurry")
    assert provider.mode == "project"
    task_id = provider.submit(job(width=360, height=640, duration=8))
    mp4 = wait(provider, task_id)
    create = fake.requests[0]
    prefix = "/v1beta1/projects/film-studio/locations/europe-west4/publishers/google/models"
    assert create.path == f"{prefix}/{MODEL}:predictLongRunning"
    assert create.headers["authorization"] == f"Bearer {DEFAULT_TOKEN}" and "x-goog-api-key" not in create.headers
    assert "image" not in create.body["instances"][0]
    assert create.body["parameters"]["aspectRatio"] == "9:16" and create.body["parameters"]["negativePrompt"] == "blurry"
    assert create.body["parameters"]["durationSeconds"] == 8
    assert task_id.startswith("projects/film-studio/locations/europe-west4/")
    frames = frames_of(mp4)
    assert len(frames) == 8 * FPS and frames[0].shape == (64, 36, 3)


def test_a_new_instance_can_fetch_a_finished_operation_by_name(veo, env, fake):
    """Resume, or a Ray worker: only the operation name survives."""
    task_id = veo.submit(job())
    assert veo.poll(task_id).state is TaskState.RUNNING
    other = VeoProvider(configured(), retry=FAST)
    check_mp4(other.fetch(task_id))
    with pytest.raises(ProviderError) as info:
        VeoProvider(configured(), retry=FAST).fetch(veo.submit(job()))  # not done yet
    assert info.value.failure_code == "TASK.NOT_READY" and info.value.retryable


def test_created_through_the_registry(env, fake):
    assert {"runway", "veo"} <= set(available_providers())
    task_id, mp4 = generate(create_provider("veo", Settings.from_env()), job(), poll_interval_s=0.01, timeout_s=10)
    check_mp4(mp4)
    assert task_id in fake.operations


@pytest.mark.parametrize(
    "fault, code",
    [(Fault("fail", failure_code="SAFETY"), "SAFETY.INPUT.INVALID_ARGUMENT"),
     (Fault("fail", failure_code="INTERNAL", message="Video generation failed."), "INTERNAL.INTERNAL"),
     (Fault("rai"), "SAFETY.OUTPUT.RAI_FILTERED")],
)
def test_operation_errors_become_generation_failed(veo, fake, fault, code):
    fake.faults.append(fault)
    with pytest.raises(GenerationFailed) as info:
        wait(veo, veo.submit(job()))
    assert info.value.failure_code == code
    assert retry_advice(code) is (RetryAdvice.SAME if code.startswith("INTERNAL") else RetryAdvice.MODIFY)


def test_operation_failure_codes():
    assert operation_failure_code(3, "Invalid image size") == "INPUT.INVALID_ARGUMENT"
    assert operation_failure_code(3, "violates our Responsible AI practices") == "SAFETY.INPUT.INVALID_ARGUMENT"
    assert operation_failure_code(8, "quota") == "INTERNAL.RESOURCE_EXHAUSTED"
    assert operation_failure_code(7, "denied") == "HTTP.AUTH"
    assert operation_failure_code("x", "") == "INTERNAL.UNKNOWN"


def test_429_on_create_honours_retry_after(veo, fake):
    fake.faults.append(Fault("429", retry_after=0.2, times=2))
    started = time.monotonic()
    task_id = veo.submit(job())
    assert 0.4 <= time.monotonic() - started < 2.0
    assert fake.counts["create"] == 3 and list(fake.operations) == [task_id]


def test_an_ambiguous_500_on_create_is_not_retried_but_polls_are(veo, fake):
    fake.faults.append(Fault("500"))
    with pytest.raises(SubmitOutcomeUnknown):
        veo.submit(job())
    assert fake.counts["create"] == 1
    task_id = veo.submit(job())
    fake.faults.extend([Fault("503", on="poll"), Fault("500", on="poll"), Fault("malformed", on="poll")])
    check_mp4(wait(veo, task_id))


def test_poll_errors_past_the_budget(veo, fake):
    task_id = veo.submit(job())
    fake.faults.append(Fault("503", on="poll", times=None))
    with pytest.raises(ProviderHTTPError) as info:
        veo.poll(task_id)
    assert info.value.failure_code == "HTTP.UNAVAILABLE" and info.value.retryable
    fake.faults.clear()
    fake.faults.append(Fault("malformed", on="poll", times=None))
    with pytest.raises(MalformedResponse):
        veo.poll(task_id)


def test_400_is_rejected_with_the_servers_message(veo, fake):
    fake.faults.append(Fault("400", message="Unsupported resolution for this model."))
    with pytest.raises(ProviderRejected, match="Unsupported resolution for this model") as info:
        veo.submit(job())
    assert info.value.failure_code == "HTTP.REJECTED" and not info.value.retryable
    assert fake.counts["create"] == 1


def test_a_truncated_video_is_detected(veo, fake):
    task_id = veo.submit(job())
    fake.faults.append(Fault("truncate", on="poll", times=None))
    with pytest.raises(CorruptDownload) as info:
        wait(veo, task_id)
    assert info.value.retryable and info.value.failure_code == "DOWNLOAD.CORRUPT"


def test_a_stuck_operation_times_out_and_cannot_be_cancelled(veo, fake):
    fake.faults.append(Fault("stuck"))
    task_id = veo.submit(job())
    with pytest.raises(GenerationFailed) as info:
        wait(veo, task_id, timeout_s=0.3, poll_interval_s=0.02)
    assert info.value.failure_code == "TIMEOUT"
    with pytest.raises(ProviderError, match="cannot be cancelled"):
        veo.cancel(task_id)


def test_unknown_operation_is_not_found(veo, fake):
    status = veo.poll(f"publishers/google/models/{MODEL}/operations/does-not-exist")
    assert status.state is TaskState.FAILED and status.failure_code == "TASK.NOT_FOUND"


def test_the_key_never_appears_in_errors_reprs_or_logs(env, fake, caplog):
    caplog.set_level(logging.DEBUG)
    errors = []
    provider = VeoProvider(configured(), retry=FAST)
    assert DEFAULT_KEY not in repr(provider) and DEFAULT_KEY not in repr(provider.__dict__)
    for fault in (Fault("400", message=f"API key {DEFAULT_KEY} is odd"), Fault("500"),
                  Fault("fail", failure_code="SAFETY", message=f"usage guidelines {DEFAULT_KEY}")):
        fake.faults.append(fault)
        with pytest.raises(Exception) as info:
            wait(provider, provider.submit(job()))
        errors.append(info.value)
    wrong = "AIza" + "W" * 35
    with pytest.raises(ProviderRejected) as info:
        VeoProvider(configured(api_key=wrong), retry=FAST).submit(job())
    assert info.value.failure_code == "HTTP.AUTH"
    errors.append(info.value)
    for exc in errors:
        for text in chain_texts(exc):
            assert DEFAULT_KEY not in text and wrong not in text
    assert DEFAULT_KEY not in caplog.text and wrong not in caplog.text


def test_missing_credentials_are_input_errors(clean_env, tmp_path):
    with pytest.raises(InputError, match="GOOGLE_API_KEY"):
        VeoProvider(configured())
    with pytest.raises(InputError, match="GOOGLE_API_KEY"):
        create_provider("veo", Settings.from_env())
    clean_env.setenv("GOOGLE_CLOUD_PROJECT", "film-studio")
    clean_env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(InputError, match="no Google credentials"):
        VeoProvider(configured())
    assert provider_capabilities("veo", Settings.from_env()).name == "veo"  # listing needs no credentials


def test_capabilities_prices_and_overrides(clean_env, veo_server):
    caps = provider_capabilities("veo", Settings.from_env())
    assert (caps.name, caps.model, caps.runs_remotely, caps.idempotent_submit) == ("veo", MODEL, True, False)
    assert caps.durations.allowed == (4.0, 6.0, 8.0)
    assert set(caps.aspect_ratios) == {AspectRatio.LANDSCAPE, AspectRatio.PORTRAIT}
    assert caps.price_per_second_usd == pytest.approx(0.15) and caps.image_conditioning
    assert veo_capabilities(VeoSettings(model="veo-3.1-generate-preview")).price_per_second_usd == pytest.approx(0.40)
    clean_env.setenv("LONGVID_VEO_MODEL", "veo-3.1-generate-preview")
    clean_env.setenv("LONGVID_VEO_PRICES", '{"veo-3.1-generate-preview": 0.5}')
    assert provider_capabilities("veo", Settings.from_env()).price_per_second_usd == pytest.approx(0.5)
    server, _ = veo_server
    provider = VeoProvider(configured(api_key=DEFAULT_KEY, base_url=server.url))
    assert provider.price(5) == pytest.approx(3.0)  # billed for the 6 s asked for
    with pytest.raises(InputError, match="16:9 or 9:16"):
        provider.submit(job(480, 480))
    clean_env.setenv("LONGVID_VEO_PRICES", "[1]")
    with pytest.raises(InputError, match="LONGVID_VEO_PRICES"):
        provider_capabilities("veo", Settings.from_env())
