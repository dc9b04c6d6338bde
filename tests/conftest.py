import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local test clusters only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_session():
    """One Ray instance for the whole test session (starting Ray costs seconds)."""
    import ray

    from longvid.runtime import ensure_ray

    ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture
def fox_spec():
    from longvid.spec import RenderSpec

    return RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=30, resolution="360p")


def decode_rgb(path: Path):
    """All frames of a video as RGB arrays (test helper; small videos only)."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 (real HTTP), with the AWS settings pointing at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="test-access-key",
        AWS_SECRET_ACCESS_KEY="test-secret-key",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import boto3

    boto3.client("s3").create_bucket(Bucket="renders")
    yield f"http://{host}:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value




@pytest.fixture(autouse=True)
def _restore_provider_registry():
    """Tests register test-double providers; none may leak into later tests."""
    from longvid.providers import registry

    saved = dict(registry._FACTORIES)
    yield
    registry._FACTORIES.clear()
    registry._FACTORIES.update(saved)


@pytest.fixture(scope="session")
def tiny_ltx_dir(tmp_path_factory):
    """A tiny random LTX-Video model folder (diffusers layout), built once per session; no download."""
    from longvid.testing.tiny_models import build_tiny_ltx

    return build_tiny_ltx(tmp_path_factory.mktemp("models") / "tiny-ltx")


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory):
    """A tiny random Wan image-to-video model folder, built once per session; no download."""
    from longvid.testing.tiny_models import build_tiny_wan

    return build_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan")


@pytest.fixture
def provider_runway(monkeypatch):
    """The fake Runway on 127.0.0.1 returning clips as a provider encodes them, at 30 fps."""
    from longvid.testing import fake_runway

    server, fake = fake_runway.start_fake_runway(pending_polls=0, running_polls=1, fps=30, provider_style=True)
    monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
    monkeypatch.setenv("RUNWAYML_API_SECRET", fake_runway.DEFAULT_KEY)
    monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.02")
    yield fake
    server.stop()
