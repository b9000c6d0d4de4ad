"""A finished run's lifecycle (``finalizing.RunLifecycle``): its TTL and history finalizer.

Covers, against a real local HTTP server (:mod:`tests.kubernetes.run_api`)
in virtual time: ``ttlSecondsAfterFinished`` wakes the reconciler when due
and then deletes the run once (the reconciler ends); the history finalizer
is added at the start, held while the history is not archived (waking at
the warning deadline), ``HistoryArchived=False`` and a warning shown once
that passed, and released (the condition back to True) once archived; a
run whose mirror was turned off is released at once.

The history sink is a small in-memory
:class:`~szal.runners.kubernetes.runtime.HistorySink` whose ``archived``
answer the test sets (a finished run records no transitions). Not covered: the real mirror and
Postgres (``e2e/test_operator_history.py``), the decisions alone
(``test_finalizing.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.kubernetes.local_server import serving
from tests.kubernetes.run_api import RunApi

from szal.engine.phases import RunPhase
from szal.engine.state import RunState
from szal.runners.kubernetes.client import ApiClient, Credentials, RetrySettings
from szal.runners.kubernetes.events import EventPoster, RunRef
from szal.runners.kubernetes.finalizing import FINALIZER, RunLifecycle
from szal.runners.kubernetes.runtime import HistorySink, Mailbox, ReconcilerSettings, Runtime

FINISHED = 1_800_000_000.0
TIMEOUT = 300.0
RUN = RunRef("ns", "r", "u1")
RUN_PATH = "/apis/szal.dev/v1alpha1/namespaces/ns/workflowruns/r"


@dataclass
class Sink(HistorySink):
    """Remembers what was recovered; ``is_archived`` is the test's to set."""

    is_archived: bool = False
    recovered: list[RunRef] = field(default_factory=list)

    def recover(self, run: RunRef, *rest: Any) -> None:
        self.recovered.append(run)

    def archived(self, run: RunRef) -> bool:
        return self.is_archived

    def pending(self, run: RunRef) -> int:
        return 0

    def last_error(self) -> str | None:
        return "connection refused"

    async def wait_archived(self, run: RunRef, timeout: float) -> bool:  # noqa: ASYNC109
        return False  # news comes from the test's own passes


def run_body(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "r", "namespace": "ns", "uid": "u1", "resourceVersion": "1"},
        "spec": {"workflowRef": {"name": "wf"}, **spec},
        "status": {"phase": "Succeeded"},
    }


@dataclass
class World:
    api: RunApi
    lifecycle: RunLifecycle
    mailbox: Mailbox
    sink: Sink | None

    @property
    def stored(self) -> dict[str, Any]:
        return self.api.objects[RUN_PATH]

    async def after_finish(self, now: float) -> float | None:
        self.mailbox.body = self.stored
        state = RunState(phase=RunPhase.SUCCEEDED, finished_at=FINISHED)
        return await self.lifecycle.after_finish(self.mailbox.body, state, now)


async def world(api: RunApi, client: ApiClient, sink: Sink | None, **spec: Any) -> World:
    api.objects[RUN_PATH] = run_body(**spec)
    mailbox = Mailbox("ns", "r", "u1", api.objects[RUN_PATH])
    settings = ReconcilerSettings(history_finalizer_timeout=TIMEOUT)
    runtime = Runtime(client, EventPoster(client), lambda ns, r: (), settings, sink)
    return World(api, RunLifecycle(runtime, mailbox, RUN), mailbox, sink)


@pytest.fixture
async def served() -> AsyncIterator[tuple[RunApi, ApiClient]]:
    api = RunApi()
    once = RetrySettings(attempts=1, request_timeout=5)
    async with serving(api.handle) as url, ApiClient(Credentials(url), retry=once) as client:
        yield api, client


async def test_the_ttl_wakes_when_due_then_deletes_the_run_once(
    served: tuple[RunApi, ApiClient],
) -> None:
    w = await world(*served, None, ttlSecondsAfterFinished=60)
    assert await w.after_finish(FINISHED + 10) == FINISHED + 60
    assert w.api.requests("DELETE") == [] and not w.mailbox.deleted
    assert await w.after_finish(FINISHED + 60) is None
    assert [path for path, _ in w.api.requests("DELETE")] == [RUN_PATH]
    assert w.mailbox.deleted and not w.lifecycle.holding


async def test_the_finalizer_holds_a_run_until_its_history_is_archived(
    served: tuple[RunApi, ApiClient],
) -> None:
    sink = Sink()
    w = await world(*served, sink)
    await w.lifecycle.add_finalizer()
    assert w.stored["metadata"]["finalizers"] == [FINALIZER]
    # Not archived: held, and woken when the warning is due.
    assert await w.after_finish(FINISHED + 1) == FINISHED + TIMEOUT
    assert w.lifecycle.holding and sink.recovered == [RUN]
    # The warning: HistoryArchived=False with the mirror's error, the finalizer kept.
    assert await w.after_finish(FINISHED + TIMEOUT) is None
    (condition,) = w.stored["status"]["conditions"]
    assert (condition["type"], condition["status"]) == ("HistoryArchived", "False")
    assert "connection refused" in condition["message"]
    assert w.lifecycle.holding and w.stored["metadata"]["finalizers"] == [FINALIZER]
    # Archived at last: the condition turns True and the finalizer goes.
    sink.is_archived = True
    assert await w.after_finish(FINISHED + TIMEOUT + 5) is None
    (condition,) = w.stored["status"]["conditions"]
    assert (condition["status"], condition["reason"]) == ("True", "Archived")
    assert w.stored["metadata"]["finalizers"] == [] and not w.lifecycle.holding
    await w.lifecycle.close()


async def test_a_run_whose_mirror_was_turned_off_is_released_at_once(
    served: tuple[RunApi, ApiClient],
) -> None:
    w = await world(*served, None)
    w.stored["metadata"]["finalizers"] = ["other.example/keep", FINALIZER]
    assert await w.after_finish(FINISHED + 1) is None
    assert w.stored["metadata"]["finalizers"] == ["other.example/keep"]
    assert not w.lifecycle.holding
