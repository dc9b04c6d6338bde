"""The API's OpenAPI, fuzzed: schemathesis finds no 5xx. And serve_config.yaml is a config
`serve deploy` accepts.

The app runs in-process (no Serve, no Ray): a real store in a temporary folder, the real
offline planner, and a renderer that records what it is asked to start (renders are not
executed). Limits are raised so the fuzzer reaches past them; the image fetcher knows no
host names and connects nowhere, so generated URLs never leave this machine.
"""

import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from provider_doubles import RecordingRenderer
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from serve.api import create_api
from serve.images import ImageFetcher
from serve.planning import PlanService
from serve.settings import ApiSettings

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "schema-test-token-5b7e0c2a91d84f36"


def no_host_names(host: str, port: int) -> list[str]:
    raise OSError(f"{host} is not resolved in this test")


def refuse_connections(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("this test connects nowhere", request=request)


# Built at import: schemathesis's pytest integration needs the schema when tests are
# collected (its fixture-based lazy loading does not work with this pytest).
STORE = Path(tempfile.mkdtemp(prefix="longvid-schema-")) / "runs"
API_SETTINGS = ApiSettings.from_env(
    {"LONGVID_API_TOKENS": TOKEN, "LONGVID_STORE": str(STORE)},
    write_rate_per_minute=100_000, read_rate_per_minute=100_000, max_concurrent_renders=100_000,
    event_stream_max_s=1.0,
)
FETCHER = ImageFetcher(API_SETTINGS.max_image_bytes, resolver=no_host_names, transport=httpx.MockTransport(refuse_connections))
RENDERER = RecordingRenderer()
schema = schemathesis.openapi.from_asgi("/openapi.json", create_api(PlanService("offline"), RENDERER, API_SETTINGS, fetcher=FETCHER))


@pytest.fixture(scope="module", autouse=True)
def _remove_store():
    yield
    shutil.rmtree(STORE.parent, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error])


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_without_a_token(case):
    response = case.call_and_validate(checks=[not_a_server_error])
    if case.path not in ("/healthz",) and "sig" not in (case.query or {}):
        assert response.status_code in (400, 401, 404, 405, 409, 413, 415, 422)


def test_serve_config_is_a_valid_deploy_config():
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "serve_config.yaml").read_text()))
    assert config.http_options.request_timeout_s and config.http_options.host == "0.0.0.0"
    (application,) = config.applications
    assert application.import_path == "serve.app:app"
    deployments = {d.name: d for d in application.deployments}
    assert set(deployments) == {"LongvidAPI", "Planner", "Renderer"}
    for name in ("LongvidAPI", "Planner"):
        scaling = deployments[name].autoscaling_config
        assert scaling["min_replicas"] >= 1 and scaling["max_replicas"] > scaling["min_replicas"]
        assert scaling["target_ongoing_requests"] > 0
    for deployment in deployments.values():
        assert deployment.health_check_period_s and deployment.ray_actor_options.num_cpus > 0
    text = (ROOT / "serve_config.yaml").read_text()
    assert "LONGVID_API_TOKENS:" not in text and "RUNWAYML_API_SECRET:" not in text  # secrets come from the environment


def test_the_config_names_the_deployments_the_app_defines():
    """Overrides in the config apply by deployment name: they must be the app's names."""
    from serve.app import LongvidAPI, Planner, Renderer

    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    assert {d["name"] for d in config["applications"][0]["deployments"]} == {LongvidAPI.name, Planner.name, Renderer.name}
