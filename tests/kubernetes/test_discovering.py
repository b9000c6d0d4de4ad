"""The operator waits for its CRDs (``szal.runners.kubernetes.discovering``).

Against a real local HTTP server playing the API server's discovery
document for ``szal.dev/v1alpha1``: missing (404), then serving one of the
two resources, then both. Covers what is reported missing, that the wait
ends when both appear, that ``/readyz`` says what it waits for meanwhile
(503 with the CRD names) and that a stop flag ends the wait.

Not covered: kopf's start after the wait (the e2e operator tests start
operators with the CRDs installed; deleting CRDs on the shared test
cluster would break every other test).
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
from aiohttp import web
from tests.kubernetes.local_server import serving

from szal.runners.kubernetes.client import ApiClient, Credentials, RetrySettings
from szal.runners.kubernetes.discovering import missing_resources, wait_for_crds
from szal.runners.kubernetes.metrics import MetricsServer, listen

ONCE = RetrySettings(attempts=1, request_timeout=5)


class Discovery:
    """``/apis/szal.dev/v1alpha1``: absent, then each stage's resources in turn."""

    def __init__(self, stages: list[list[str] | None]) -> None:
        self.stages = stages
        self.calls = 0
        self.asked = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        assert request.path == "/apis/szal.dev/v1alpha1"
        stage = self.stages[min(self.calls, len(self.stages) - 1)]
        self.calls += 1
        self.asked.set()
        if stage is None:
            body = {"kind": "Status", "code": 404, "reason": "NotFound"}
            return web.json_response(body, status=404)
        return web.json_response({"resources": [{"name": name} for name in stage]})


async def test_missing_resources_names_the_crds() -> None:
    fake = Discovery([None, ["workflows", "workflows/status"]])
    async with serving(fake.handle) as url, ApiClient(Credentials(url), retry=ONCE) as client:
        assert await missing_resources(client) == ["workflows.szal.dev", "workflowruns.szal.dev"]
        assert await missing_resources(client) == ["workflowruns.szal.dev"]


async def test_the_wait_ends_when_the_crds_appear_and_readyz_says_why_meanwhile() -> None:
    fake = Discovery([None, None, ["workflows"], ["workflows", "workflowruns"]])
    sock = listen("127.0.0.1", 0, "--metrics-port")
    port = sock.getsockname()[1]
    metrics = MetricsServer(None, asyncio.Event(), "127.0.0.1", port, sock=sock)
    await metrics.start()
    try:
        async with serving(fake.handle) as url, ApiClient(Credentials(url), retry=ONCE) as client:
            waiting = asyncio.create_task(wait_for_crds(client, metrics, None, 0.2))
            async with aiohttp.ClientSession() as http:
                await asyncio.wait_for(fake.asked.wait(), timeout=10)
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    assert response.status == 503
                    text = await response.text()
                assert text.startswith("waiting for the CRDs: workflows.szal.dev"), text
                assert await asyncio.wait_for(waiting, timeout=10) is True
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    assert (response.status, await response.text()) == (503, "starting")
            assert fake.calls == 4
    finally:
        await metrics.stop()


async def test_readyz_names_the_api_server_before_its_first_answer() -> None:
    metrics = MetricsServer(None, asyncio.Event(), "127.0.0.1", 0)
    answered = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await answered.wait()
        return web.json_response({"resources": [{"name": "workflows"}, {"name": "workflowruns"}]})

    async with serving(slow) as url, ApiClient(Credentials(url), retry=ONCE) as client:
        waiting = asyncio.create_task(wait_for_crds(client, metrics, None, 0.01))
        await asyncio.sleep(0.2)
        assert metrics.waiting_for == "waiting for the API server (checking for the CRDs)"
        answered.set()
        assert await asyncio.wait_for(waiting, timeout=10) is True
        assert metrics.waiting_for is None


async def test_a_stop_flag_ends_the_wait() -> None:
    fake = Discovery([None])
    stop = asyncio.Event()
    stop.set()
    async with serving(fake.handle) as url, ApiClient(Credentials(url), retry=ONCE) as client:
        assert await wait_for_crds(client, None, stop, 0.01) is False


def test_listen_gives_a_listening_socket() -> None:
    sock = listen("127.0.0.1", 0, "--metrics-port")
    try:
        assert sock.type == socket.SOCK_STREAM and sock.getsockname()[1] > 0
    finally:
        sock.close()
