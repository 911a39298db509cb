"""Liveness and readiness probes answer without login, and readiness follows the database."""
import pytest
from django.db.utils import OperationalError
from django.test import override_settings

from fieldsync import health

pytestmark = pytest.mark.django_db


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_with_database_ok(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    # The broker is reported but never decides readiness.
    assert "broker" in body["checks"]


def test_readyz_unavailable_when_the_database_is_not(client, monkeypatch):
    class DownConnection:
        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr(health, "connection", DownConnection())
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "error: OperationalError"


@override_settings(SECURE_SSL_REDIRECT=True)
def test_probes_are_not_redirected_to_https(client):
    """Behind the proxy the probes come over plain http from the orchestrator."""
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/admin/login/").status_code == 301


def test_probes_only_answer_get(client):
    assert client.post("/healthz").status_code == 405
