"""The REST API over a real server and real stores (SQLite and Postgres).

Covers: listing with each filter and keyset pagination (every run exactly
once over all pages), one run with attempts, events and its pinned
workflow, step logs (last attempt, a given attempt, the compensation), 404s
naming what is missing, 400s naming the parameter, and the OpenAPI document
matching the registered routes. Does not cover streams (test_streams.py)
nor ``szal serve`` as a process (test_serve_cmd.py).
"""

from __future__ import annotations

from typing import Any

from tests.history.records import run_record
from tests.serving.conftest import Api

from szal.history.store import AttemptRecord, EventRecord, WorkflowRecord
from szal.serving.app import build_app
from szal.serving.openapi import document
from szal.serving.sources import HistorySource


async def get_json(api: Api, path: str, status: int = 200) -> Any:
    async with api.http.get(api.url + path) as response:
        assert response.status == status, await response.text()
        assert response.content_type == "application/json"
        return await response.json()


async def seed_runs(api: Api) -> None:
    for i in range(7):
        await api.store.upsert_run(
            run_record(
                f"u{i}",
                created_at=1000.0 + i,
                namespace="team-a" if i % 2 else "team-b",
                workflow="etl" if i < 4 else "train",
                phase="Succeeded" if i % 3 == 0 else "Running",
                workflow_version=5 if i in (1, 4) else 1,
            )
        )


async def test_list_filters(api: Api) -> None:
    await seed_runs(api)
    everything = await get_json(api, "/api/v1/workflowruns")
    assert [r["uid"] for r in everything["items"]] == [f"u{i}" for i in range(6, -1, -1)]
    assert everything["nextCursor"] is None
    assert everything["items"][0]["createdAt"] == "1970-01-01T00:16:46.000000Z"

    def uids(body: Any) -> list[str]:
        return [r["uid"] for r in body["items"]]

    assert uids(await get_json(api, "/api/v1/namespaces/team-a/workflowruns")) == ["u5", "u3", "u1"]
    assert uids(await get_json(api, "/api/v1/workflowruns?namespace=team-b&workflow=etl")) == [
        "u2",
        "u0",
    ]
    assert uids(await get_json(api, "/api/v1/workflowruns?phase=Succeeded")) == ["u6", "u3", "u0"]
    assert uids(await get_json(api, "/api/v1/workflowruns?version=5")) == ["u4", "u1"]
    assert uids(await get_json(api, "/api/v1/workflowruns?workflow=etl&version=5")) == ["u1"]
    window = "/api/v1/workflowruns?since=1970-01-01T00:16:42Z&until=1005"
    assert uids(await get_json(api, window)) == ["u4", "u3", "u2"]


async def test_pagination_visits_every_run_once(api: Api) -> None:
    await seed_runs(api)
    seen: list[str] = []
    path = "/api/v1/workflowruns?limit=3"
    pages = 0
    while True:
        body = await get_json(api, path)
        pages += 1
        seen.extend(r["uid"] for r in body["items"])
        if body["nextCursor"] is None:
            break
        path = f"/api/v1/workflowruns?limit=3&cursor={body['nextCursor']}"
    assert pages == 3
    assert seen == [f"u{i}" for i in range(6, -1, -1)]


async def test_bad_parameters_are_named(api: Api) -> None:
    cases = {
        "limit=0": "limit",
        "limit=x": "limit",
        "version=0": "version",
        "version=five": "version",
        "phase=Done": "phase",
        "since=yesterday": "since",
        "cursor=nonsense": "cursor",
        "cursor=abc|def": "cursor",
        "color=red": "color",
    }
    for query, parameter in cases.items():
        body = await get_json(api, f"/api/v1/workflowruns?{query}", status=400)
        assert body["parameter"] == parameter, query
        assert body["error"].startswith(f"{parameter}: ")


async def test_one_run_with_attempts_events_and_workflow(api: Api) -> None:
    spec = {"steps": [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]}
    await api.store.save_workflow(WorkflowRecord("default", "wf", 1, "h1", spec))
    await api.store.write_batch(
        run_record("r1", name="nightly"),
        attempts=[
            AttemptRecord("r1", "a", 1, False, "Failed", 1001.0, 1002.0, 1, "exit 1"),
            AttemptRecord("r1", "a", 2, False, "Succeeded", 1003.0, 1004.0, 0, outputs={"n": 1}),
        ],
        events=[
            EventRecord("r1", None, 0, False, "Pending", "Running", "RunStarted", 1000.5),
            EventRecord("r1", "a", 1, False, "Pending", "Running", "StepStarted", 1001.0),
        ],
    )
    body = await get_json(api, "/api/v1/namespaces/default/workflowruns/nightly")
    assert body["run"]["uid"] == "r1"
    assert body["run"]["phase"] == "Running"
    assert [(a["attempt"], a["phase"], a["exitCode"]) for a in body["attempts"]] == [
        (1, "Failed", 1),
        (2, "Succeeded", 0),
    ]
    assert body["attempts"][1]["outputs"] == {"n": 1}
    assert [(e["step"], e["new"]) for e in body["events"]] == [(None, "Running"), ("a", "Running")]
    assert body["events"][0]["id"] < body["events"][1]["id"]
    assert body["workflow"] == spec
    by_uid = await get_json(api, "/api/v1/namespaces/default/workflowruns/r1")
    assert by_uid["run"]["name"] == "nightly"
    # A uid of another namespace's run is not found there.
    missing = await get_json(api, "/api/v1/namespaces/other/workflowruns/r1", status=404)
    assert missing["error"] == "workflowrun other/r1 not found"


async def test_step_logs(api: Api) -> None:
    await api.store.write_batch(
        run_record("r1"),
        attempts=[
            AttemptRecord("r1", "a", 1, False, "Failed"),
            AttemptRecord("r1", "a", 2, False, "Succeeded"),
            AttemptRecord("r1", "a", 1, True, "Succeeded"),
        ],
    )
    await api.store.append_log("r1", "a", 1, False, "first try\n")
    await api.store.append_log("r1", "a", 2, False, "second ")
    await api.store.append_log("r1", "a", 2, False, "try\n")
    await api.store.append_log("r1", "a", 1, True, "undo\n")
    base = api.url + "/api/v1/namespaces/default/workflowruns/run-r1/steps/a/logs"
    for query, expected in (
        ("", "second try\n"),
        ("?attempt=1", "first try\n"),
        ("?rollback=true", "undo\n"),
    ):
        async with api.http.get(base + query) as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            assert response.headers["X-Szal-Log-Origin"] == "history"
            assert await response.text() == expected
    async with api.http.get(base.replace("/a/", "/zz/")) as response:
        assert response.status == 404
        assert "step 'zz'" in (await response.json())["error"]
    async with api.http.get(base + "?attempt=zero") as response:
        assert response.status == 400
        assert (await response.json())["parameter"] == "attempt"


def test_openapi_documents_every_route() -> None:
    app = build_app(HistorySource(store=None), None)  # type: ignore[arg-type]
    routes = {
        resource.canonical
        for resource in app.router.resources()
        if resource.canonical.startswith("/api/v1/")
    }
    assert routes == set(document()["paths"])


async def test_openapi_served(api: Api) -> None:
    body = await get_json(api, "/api/v1/openapi.json")
    assert body["openapi"].startswith("3.")
    assert "/api/v1/workflowruns" in body["paths"]
