"""The operator's API server (``szal operator --api-port``) on the test cluster.

Covers, with real ServiceAccount tokens checked by the real API server
(TokenReview, SubjectAccessReview): 401 without a token and with a bad
one; 403 for an account without rights, and for cluster-wide listing by an
account that may only read its namespace; 200 for an account with ``get,
list workflowruns`` and ``get pods/log`` there. With those rights: a live
run is listed while it runs, its SSE stream (token in ``?access_token=``)
carries every event of the Postgres event log in id order and ends with
``end`` Succeeded, a reconnect with ``Last-Event-ID`` resumes after that
id, the run's detail shows attempts and events, and a step's logs are
served; the operator's /metrics counts the run, its hop and the streamed
events. Not covered: the REST API's parameter rules and the hub's
buffering (tests/serving), the chart's wiring (e2e/test_install.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.postgres.server import shared_dsn
from tests.serving.sse import messages

from e2e.conftest import Kubectl
from e2e.operator_support import OperatorProcess, ensure_crds, free_port, run, sim, workflow
from szal.history.postgres import PostgresStore

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

READER_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: run-reader}
rules:
- apiGroups: [szal.dev]
  resources: [workflowruns]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: run-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-reader}
subjects:
- {kind: ServiceAccount, name: reader}
"""


def _token(kubectl: Kubectl, namespace: str, account: str) -> str:
    kubectl("create", "serviceaccount", account, "-n", namespace)
    return str(kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip())


async def _event_ids(dsn: str, uid: str) -> list[int]:
    store = PostgresStore(dsn)
    try:
        await store.migrate()
        return [e.id for e in await store.events_after(0, uid) if e.id is not None]
    finally:
        await store.close()


async def _scenario(base: str, ns: str, reader: str, nobody: str, dsn: str) -> None:
    runs = f"{base}/api/v1/namespaces/{ns}/workflowruns"

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async with aiohttp.ClientSession() as http:

        async def status(url: str, headers: dict[str, str] | None = None) -> int:
            async with http.get(url, headers=headers) as response:
                await response.read()
                return response.status

        assert await status(runs) == 401
        assert await status(runs, bearer("not-a-token")) == 401
        assert await status(runs, bearer(nobody)) == 403
        assert await status(f"{base}/api/v1/workflowruns", bearer(reader)) == 403
        assert await status(f"{base}/api/v1/openapi.json") == 200

        # The live run is listed while it runs (the mirror may not have it yet).
        async def listed() -> dict[str, Any]:
            for _ in range(200):
                async with http.get(runs, headers=bearer(reader)) as response:
                    assert response.status == 200, await response.text()
                    items = (await response.json())["items"]
                if items:
                    return dict(items[0])
                await asyncio.sleep(0.05)
            raise AssertionError("the run was never listed")

        first = await listed()
        assert first["name"] == "live" and first["phase"] in ("Pending", "Running")
        uid = first["uid"]

        stream = f"{runs}/live/events?access_token={reader}"
        received: list[int] = []
        ended: Any = None
        async with http.get(stream) as response:
            assert response.status == 200, await response.text()
            async for message in messages(response):
                if message.id is not None:
                    received.append(int(message.id))
                    if len(received) == 3:
                        break
        resume_from = received[-1]
        async with http.get(stream, headers={"Last-Event-ID": str(resume_from)}) as response:
            assert response.status == 200
            async for message in messages(response):
                if message.event == "end":
                    ended = message.json()
                elif message.id is not None:
                    received.append(int(message.id))
        assert ended == {"phase": "Succeeded"}
        assert received == await _event_ids(dsn, uid)

        async with http.get(f"{runs}/live", headers=bearer(reader)) as response:
            assert response.status == 200
            detail = await response.json()
        assert detail["run"]["phase"] == "Succeeded"
        assert sorted(a["step"] for a in detail["attempts"]) == ["a", "b"]
        assert [e["id"] for e in detail["events"]] == received
        assert detail["workflow"]["steps"][0]["name"] == "a"

        logs = f"{runs}/live/steps/a/logs"
        assert await status(logs, bearer(nobody)) == 403
        async with http.get(logs, headers=bearer(reader)) as response:
            assert response.status == 200
            assert response.headers["X-Szal-Log-Origin"] in ("pod", "history")


def test_api_auth_listing_streaming_and_logs(
    kubeconfig: Path, kubectl: Kubectl, namespace: str
) -> None:
    dsn = shared_dsn()
    ensure_crds(kubectl)
    kubectl.apply(READER_ROLE, namespace)
    reader = _token(kubectl, namespace, "reader")
    nobody = _token(kubectl, namespace, "nobody")
    spec = {
        "mode": "Dag",
        "template": {"image": "busybox:1.36", "pod": sim("1500ms")},
        "steps": [
            {"name": "a", "command": ["true"]},
            {"name": "b", "command": ["true"], "dependsOn": ["a"]},
        ],
    }
    kubectl.apply(workflow("live", spec), namespace)
    port = free_port()
    args = ("--history-dsn", dsn, "--api-port", str(port), "--api-host", "127.0.0.1")
    with OperatorProcess(kubeconfig, [namespace], *args) as operator:
        kubectl.apply(run("live", "live"), namespace)
        asyncio.run(_scenario(f"http://127.0.0.1:{port}", namespace, reader, nobody, dsn))
        metrics = operator.metrics()
    labels = f'namespace="{namespace}",workflow="live"'
    assert metrics[f"szal_runs_started_total{{{labels}}}"] == 1
    finished = f'namespace="{namespace}",phase="Succeeded",workflow="live"'
    assert metrics[f"szal_runs_finished_total{{{finished}}}"] == 1
    assert metrics[f"szal_hop_latency_seconds_count{{{labels}}}"] == 1  # a -> b
    assert metrics["szal_stream_events_total"] >= 4
    assert metrics["szal_stream_clients"] == 0
