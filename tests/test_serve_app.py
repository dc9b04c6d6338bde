"""The Serve app's FastAPI routes, exercised in-process (no Serve runtime needed)."""

from fastapi.testclient import TestClient

from serve.app import api

client = TestClient(api)


def test_health():
    assert client.get("/healthz").json() == {"status": "ok"}


def test_plan_endpoint_returns_storyboard_and_exact_segments():
    response = client.post("/v1/plans", json={"prompt": "a red fox in the snow", "duration_s": 31})
    assert response.status_code == 200
    body = response.json()
    assert len(body["segments"]) == 6
    assert sum(s["frames"] for s in body["segments"]) == 31 * 24


def test_plan_endpoint_refuses_bad_input_with_the_reason():
    response = client.post("/v1/plans", json={"prompt": "fox", "duration_s": 10000})
    assert response.status_code == 422
    assert "between 5 and 600 seconds" in response.json()["detail"]
    response = client.post("/v1/plans", json={"prompt": "fox", "provider": "sora"})
    assert response.status_code == 422 and "unknown provider" in response.json()["detail"]
