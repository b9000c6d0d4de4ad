"""Record builders shared by the store tests (contract, SQLite, Postgres)."""

from __future__ import annotations

from typing import Any

from szal.history.store import RunRecord


def run_record(uid: str, **changes: Any) -> RunRecord:
    """A Running run of workflow ``wf`` created at t=1000; ``changes`` override fields."""
    fields: dict[str, Any] = dict(
        uid=uid,
        name=f"run-{uid}",
        namespace="default",
        workflow="wf",
        workflow_version=1,
        spec_hash="h1",
        params={"env": "dev"},
        phase="Running",
        created_at=1000.0,
        started_at=1000.5,
    )
    fields.update(changes)
    return RunRecord(**fields)
