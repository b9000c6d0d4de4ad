"""The operator's async API client against a real (local, plain HTTP) server.

Covers: kubeconfig and in-cluster credentials; error types by status and
reason (404, 409 AlreadyExists vs Conflict, 422, 403); retries of 429 and
5xx (Retry-After honoured) up to a limit; the bearer token; the write
counter; merge-patch content type.

Not covered: TLS with client certificates (every e2e test uses them
against the real API server).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from tests.kubernetes.local_server import serving

from szal.runners.kubernetes.client import (
    AlreadyExists,
    ApiClient,
    ApiError,
    Conflict,
    Credentials,
    CredentialsError,
    Invalid,
    NotFound,
    RetrySettings,
    credentials_from_kubeconfig,
    credentials_in_cluster,
)
from szal.spec import BackoffSettings


class Script:
    """Answers queued per path; records what was asked."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = {}
        self.seen: list[tuple[str, str, dict[str, str], Any]] = []

    def queue(self, path: str, status: int, body: dict[str, Any], **headers: str) -> None:
        self.answers.setdefault(path, []).append((status, body, headers))

    async def handle(self, request: web.Request) -> web.Response:
        text = await request.text()
        self.seen.append(
            (
                request.method,
                request.path,
                dict(request.headers),
                json.loads(text) if text else None,
            )
        )
        queue = self.answers.get(request.path) or [(200, {}, {})]
        status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        return web.json_response(body, status=status, headers=headers)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Script, str]]:
    script = Script()
    async with serving(script.handle) as url:
        yield script, url


FAST = RetrySettings(
    attempts=3,
    backoff=BackoffSettings("Exponential", delay=0.01, max_delay=0.02),
    request_timeout=5,
)


def status(code: int, reason: str, message: str = "m") -> dict[str, Any]:
    return {"kind": "Status", "code": code, "reason": reason, "message": message}


async def test_errors_are_typed_by_status_and_reason(server: tuple[Script, str]) -> None:
    script, url = server
    script.queue("/a", 404, status(404, "NotFound"))
    script.queue("/b", 409, status(409, "AlreadyExists"))
    script.queue("/c", 409, status(409, "Conflict", "the object has been modified"))
    script.queue("/d", 422, status(422, "Invalid"))
    async with ApiClient(Credentials(server=url), retry=FAST) as client:
        with pytest.raises(NotFound):
            await client.get("/a")
        with pytest.raises(AlreadyExists):
            await client.create("/b", {}, resource="pods")
        with pytest.raises(Conflict) as conflict:
            await client.merge_patch("/c", {}, resource="workflowruns/status")
        assert "modified" in conflict.value.message
        with pytest.raises(Invalid):
            await client.create("/d", {}, resource="pods")


async def test_transient_failures_are_retried(server: tuple[Script, str]) -> None:
    script, url = server
    script.queue("/x", 429, status(429, "TooManyRequests"), **{"Retry-After": "0"})
    script.queue("/x", 503, status(503, "ServiceUnavailable"))
    script.queue("/x", 201, {"metadata": {"name": "ok"}})
    script.queue("/never", 500, status(500, "InternalError"))
    async with ApiClient(Credentials(server=url), retry=FAST) as client:
        answer = await client.create("/x", {"kind": "Pod"}, resource="pods")
        assert answer == {"metadata": {"name": "ok"}}
        assert [p for _, p, _, _ in script.seen] == ["/x", "/x", "/x"]
        with pytest.raises(ApiError) as error:
            await client.get("/never")
        assert error.value.status == 500
        assert client.writes == {("create", "pods"): 1}


async def test_token_content_type_and_delete_options(server: tuple[Script, str]) -> None:
    script, url = server
    async with ApiClient(Credentials(server=url, token="s3cret"), retry=FAST) as client:
        await client.merge_patch("/p", {"status": {"phase": "Running"}}, resource="runs/status")
        await client.delete("/d", resource="pods", propagation="Background")
    (m1, _, h1, b1), (m2, _, _, b2) = script.seen
    assert (m1, h1["Authorization"], h1["Content-Type"]) == (
        "PATCH",
        "Bearer s3cret",
        "application/merge-patch+json",
    )
    assert b1 == {"status": {"phase": "Running"}}
    assert m2 == "DELETE" and b2["propagationPolicy"] == "Background"


def test_kubeconfig_with_inline_data_and_files(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("CA PEM")
    config = {
        "current-context": "b",
        "clusters": [
            {
                "name": "one",
                "cluster": {"server": "https://1.2.3.4:6443/", "certificate-authority": "ca.crt"},
            },
            {
                "name": "two",
                "cluster": {
                    "server": "https://5.6.7.8",
                    "certificate-authority-data": base64.b64encode(b"CA2").decode(),
                },
            },
        ],
        "users": [
            {
                "name": "cert",
                "user": {
                    "client-certificate-data": base64.b64encode(b"C").decode(),
                    "client-key-data": base64.b64encode(b"K").decode(),
                },
            },
            {"name": "tok", "user": {"token": "abc"}},
        ],
        "contexts": [
            {"name": "a", "context": {"cluster": "one", "user": "cert", "namespace": "team"}},
            {"name": "b", "context": {"cluster": "two", "user": "tok"}},
        ],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    current = credentials_from_kubeconfig(path)
    assert (current.server, current.ca_data, current.read_token()) == (
        "https://5.6.7.8",
        "CA2",
        "abc",
    )
    a = credentials_from_kubeconfig(path, "a")
    assert (a.server, a.ca_data, a.certificate_data, a.private_key_data, a.default_namespace) == (
        "https://1.2.3.4:6443",
        "CA PEM",
        "C",
        "K",
        "team",
    )
    with pytest.raises(CredentialsError):
        credentials_from_kubeconfig(path, "nope")


def test_in_cluster_token_is_reread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in (("token", "t1"), ("ca.crt", "CA"), ("namespace", "szal-system")):
        (tmp_path / name).write_text(text)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    creds = credentials_in_cluster(tmp_path)
    assert (creds.server, creds.default_namespace, creds.read_token()) == (
        "https://10.96.0.1:443",
        "szal-system",
        "t1",
    )
    (tmp_path / "token").write_text("t2")  # kubelet rotated it
    assert creds.read_token() == "t2"
