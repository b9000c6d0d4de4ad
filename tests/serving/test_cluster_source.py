"""ClusterSource: live WorkflowRun objects merged with the history store.

The API server is a real local HTTP server (tests/kubernetes/local_server.py)
answering the WorkflowRun list and get calls; the store is a real SQLite
store. Covers: a live object's status wins over the stored row of the same
run, a run the mirror has not written yet is listed on the page its creation
time falls in (and on no other), runs whose objects are gone come from the
store, listing without a store pages the live runs with its own cursor, and
a run's detail combines live attempts with stored attempts and events.
Does not cover auth or pod logs (e2e/test_live_api.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.history.records import run_record
from tests.kubernetes.local_server import serving

from szal.engine.timestamps import format_timestamp
from szal.history.sqlite import SqliteStore
from szal.history.store import AttemptRecord, EventRecord, RunQuery
from szal.runners.kubernetes.client import ApiClient, Credentials
from szal.serving.cluster import ClusterSource
from szal.serving.sources import HistorySource


def run_object(
    uid: str, created: float, phase: str, steps: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {
            "name": f"run-{uid}",
            "namespace": "default",
            "uid": uid,
            "creationTimestamp": format_timestamp(created).split(".")[0] + "Z",
        },
        "spec": {"workflowRef": {"name": "wf"}, "params": {"env": "dev"}},
        "status": {
            "phase": phase,
            "workflow": {"name": "wf", "version": 1, "specHash": "h1"},
            "steps": steps or {},
        },
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "history.db")
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


def cluster(objects: list[dict[str, Any]]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        base = "/apis/szal.dev/v1alpha1/namespaces/default/workflowruns"
        if request.path == base:
            return web.json_response({"items": objects})
        for obj in objects:
            if request.path == f"{base}/{obj['metadata']['name']}":
                return web.json_response(obj)
        return web.json_response({"reason": "NotFound", "message": "not found"}, status=404)

    return serving(handler)


async def test_live_status_wins_and_unmirrored_runs_join_their_page(store: SqliteStore) -> None:
    for i in range(6):  # stored: u0..u5 created at 1000, 1010, ... 1050, all Running
        await store.upsert_run(run_record(f"u{i}", created_at=1000.0 + 10 * i))
    objects = [
        run_object("u4", 1040.0, "Succeeded"),  # stored too: the object's phase wins
        run_object("new", 1100.0, "Pending"),  # not mirrored yet, newest
        run_object("edge", 1035.0, "Running"),  # not mirrored, between pages 1 and 2
        run_object("inner", 1025.0, "Running"),  # not mirrored, inside page 2
    ]
    async with cluster(objects) as url, ApiClient(Credentials(server=url)) as client:
        source = ClusterSource(client, ("default",), HistorySource(store))
        pages: list[list[tuple[str, str]]] = []
        cursor = None
        while True:
            page = await source.list_runs(RunQuery(limit=2, after=cursor))
            pages.append([(r.uid, r.phase) for r in page.runs])
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert pages == [
        [("new", "Pending"), ("u5", "Running"), ("u4", "Succeeded"), ("edge", "Running")],
        [("u3", "Running"), ("inner", "Running"), ("u2", "Running")],
        [("u1", "Running"), ("u0", "Running")],
    ]


async def test_without_a_store_live_runs_are_paged_here() -> None:
    objects = [run_object(f"l{i}", 2000.0 + i, "Running") for i in range(5)]
    async with cluster(objects) as url, ApiClient(Credentials(server=url)) as client:
        source = ClusterSource(client, ("default",), None)
        first = await source.list_runs(RunQuery(limit=3))
        second = await source.list_runs(RunQuery(limit=3, after=first.next_cursor))
        only_running = await source.list_runs(RunQuery(phase="Succeeded"))
    assert [r.uid for r in first.runs] == ["l4", "l3", "l2"]
    assert [r.uid for r in second.runs] == ["l1", "l0"] and second.next_cursor is None
    assert only_running.runs == []


async def test_detail_merges_live_attempts_with_stored_history(store: SqliteStore) -> None:
    await store.write_batch(
        run_record("u1", name="run-u1"),
        attempts=[
            AttemptRecord("u1", "a", 1, False, "Failed", 1001.0, 1002.0, 1),
            AttemptRecord("u1", "a", 2, False, "Running", 1003.0),
        ],
        events=[EventRecord("u1", "a", 1, False, "Pending", "Running", "StepStarted", 1001.0)],
    )
    steps = {
        "a": {
            "phase": "Succeeded",
            "attempts": 2,
            "startedAt": "1970-01-01T00:16:41.000Z",
            "finishedAt": "1970-01-01T00:16:45.000Z",
            "exitCode": 0,
        },
        "b": {"phase": "Running", "attempts": 1, "attemptStartedAt": "1970-01-01T00:16:46.000Z"},
    }
    objects = [run_object("u1", 1000.0, "Running", steps)]
    async with cluster(objects) as url, ApiClient(Credentials(server=url)) as client:
        source = ClusterSource(client, ("default",), HistorySource(store))
        detail = await source.get_run("default", "run-u1")
        gone = await source.get_run("default", "nothing")
    assert detail is not None and gone is None
    assert [(a.step, a.attempt, a.phase) for a in detail.attempts] == [
        ("a", 1, "Failed"),
        ("a", 2, "Succeeded"),
        ("b", 1, "Running"),
    ]
    assert [e.new for e in detail.events] == ["Running"]
