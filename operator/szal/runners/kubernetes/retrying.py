"""A retried run's first state: the original's Succeeded steps carried over.

``szal retry RUN`` creates a WorkflowRun annotated ``szal.dev/retry-of:
RUN`` that carries RUN's pinned spec and params inline. When the reconciler
starts such a run (nothing pinned yet) it calls :func:`initial_state`
instead of a new run's state: it reads RUN and seeds the state with
:func:`szal.engine.retrying.seed_retry`. The seeded steps go out in the
run's first status patch (the one that writes ``pinnedSpec`` and every step
record), so a restarted operator restores them from status like any other.

An annotation, not a spec field: it names where the run came from, it is
read once at the start, and the spec already says what to run. The original
must still exist and must have pinned the same spec (hash): a run that names
a missing original, or one that ran something else, fails at its start with
reason ``RetryRefused`` and a message naming it, before any step runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from szal.engine.compiled import new_run_state
from szal.engine.retrying import retry_problem, seed_retry
from szal.engine.state import RunState
from szal.engine.workflow import ResolvedWorkflow
from szal.runners.kubernetes.client import ApiClient, NotFound
from szal.runners.kubernetes.events import RunRef
from szal.runners.kubernetes.pinning import RunRefused
from szal.runners.kubernetes.runtime import run_path

RETRY_OF = "szal.dev/retry-of"
"""The annotation naming the run a retry keeps the Succeeded steps of."""


def retry_of(body: Mapping[str, Any]) -> str | None:
    """The run ``body`` retries, if it is a retry."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    name = annotations.get(RETRY_OF)
    return str(name) if name else None


async def initial_state(
    client: ApiClient, ref: RunRef, body: Mapping[str, Any], workflow: ResolvedWorkflow
) -> RunState:
    """A new run's state, seeded from the original when the run is a retry."""
    original = retry_of(body)
    if original is None:
        return new_run_state(workflow)
    try:
        source = await client.get(run_path(RunRef(ref.namespace, original, "")))
    except NotFound:
        raise RunRefused(
            "RetryRefused", f"retry of {original!r}: no such run in namespace {ref.namespace}"
        ) from None
    status = source.get("status") or {}
    problem = retry_problem(original, status.get("phase"))
    if problem is not None:
        raise RunRefused("RetryRefused", f"retry of {original!r}: {problem}")
    pinned = (status.get("workflow") or {}).get("specHash")
    if pinned != workflow.spec_hash:
        raise RunRefused(
            "RetryRefused",
            f"retry of {original!r}: it ran spec {pinned}, this run's spec is {workflow.spec_hash}",
        )
    return seed_retry(workflow, status.get("steps") or {}, original)
