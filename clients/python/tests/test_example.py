"""The FastAPI example app publishes on an HTTP request."""

import importlib.util
import json

import pytest

from conftest import PACKAGE_DIR, history

fastapi = pytest.importorskip("fastapi", reason="run-tests.sh installs fastapi and httpx")


def load_example():
    path = PACKAGE_DIR / "examples" / "fastapi_app.py"
    spec = importlib.util.spec_from_file_location("fastapi_app", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fastapi_example_publishes_on_a_request(fresh, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("REDIS_URL", fresh.url)
    example = load_example()
    with TestClient(example.app) as client:
        answer = client.post("/alerts", json={"tutor_id": "t-17", "severity": "critical"})
        assert answer.status_code == 202, answer.text
        position = answer.json()["id"]
        too_big = client.post("/alerts", json={"blob": "x" * 70_000})
        assert too_big.status_code == 413
        assert "over MAX_EVENT_BYTES (65536)" in too_big.json()["detail"]
        assert client.get("/dashboards").json() == {"active_connections": 0}
    ((sid, envelope),) = history(fresh)
    assert position.endswith(":" + sid)
    assert json.loads(envelope)["data"] == {"tutor_id": "t-17", "severity": "critical"}
