"""Where the API's runs come from: :class:`RunSource`, and the history one.

:class:`HistorySource` answers from an :class:`ExecutionStore` alone; that
is all ``szal serve`` has (the local runner writes SQLite, and the log of an
attempt is stored when the attempt ends, so a local step still running shows
no output yet). On a cluster the operator wraps it with live runs (see
``docs/live.md``). The REST handlers (:mod:`szal.serving.rest`) only ever
talk to a :class:`RunSource`.

Decisions: a run is addressed by namespace and name (the newest run of that
name, as ``szal show``), or by namespace and uid; a uid that names a run of
another namespace is "not found", never a leak across namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from szal.history.store import (
    ExecutionStore,
    RunDetail,
    RunPage,
    RunQuery,
    RunRecord,
    WorkflowRecord,
)


@dataclass(frozen=True, slots=True)
class StepLog:
    """A step's output and where it came from (``history``: the store's copy)."""

    text: str
    origin: Literal["history", "pod"]


class RunSource(Protocol):
    """What the REST API reads."""

    async def list_runs(self, query: RunQuery) -> RunPage:
        """Runs matching the query, newest first, keyset-paginated."""

    async def get_run(self, namespace: str, ref: str) -> RunDetail | None:
        """A run by name (the newest) or uid, in ``namespace``."""

    async def get_workflow(self, run: RunRecord) -> dict[str, Any] | None:
        """The workflow spec the run pinned, if known."""

    async def get_log(
        self, run: RunRecord, step: str, attempt: int | None, rollback: bool
    ) -> StepLog:
        """A step's output (the last attempt when ``attempt`` is None)."""


class _WorkflowLookup(Protocol):
    async def get_workflow(
        self, namespace: str, name: str, spec_hash: str
    ) -> WorkflowRecord | None: ...


@dataclass(frozen=True, slots=True)
class HistorySource:
    """A :class:`RunSource` over one history store."""

    store: ExecutionStore

    async def list_runs(self, query: RunQuery) -> RunPage:
        return await self.store.list_runs(query)

    async def get_run(self, namespace: str, ref: str) -> RunDetail | None:
        detail = await self.store.get_run(ref, namespace)
        if detail is None or detail.run.namespace != namespace:
            return None
        return detail

    async def get_workflow(self, run: RunRecord) -> dict[str, Any] | None:
        lookup: _WorkflowLookup | None = getattr(self.store, "get_workflow", None) and self.store  # type: ignore[assignment]
        if lookup is None:
            return None
        record = await lookup.get_workflow(run.namespace, run.workflow, run.spec_hash)
        return record.spec if record is not None else None

    async def get_log(
        self, run: RunRecord, step: str, attempt: int | None, rollback: bool
    ) -> StepLog:
        if rollback:
            text = await self.store.get_rollback_log(run.uid, step)
        else:
            text = await self.store.get_log(run.uid, step, attempt)
        return StepLog(text, "history")
