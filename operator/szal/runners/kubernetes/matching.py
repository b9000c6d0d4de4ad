"""The webhooks' ``matchConditions``: which requests the API server never sends to them.

A validating webhook with ``failurePolicy: Fail`` blocks every request it
matches while its server is down or slow. Suspending, cancelling or
labelling a run must always work (a huge run most of all), so the API
server is told, in CEL (``matchConditions``, GA since Kubernetes 1.30), to
call the webhook only when there is something to check:

* a **Workflow**: a CREATE, or an UPDATE that changes ``spec``
  (metadata-only updates, such as labels or kopf's finalizers, are skipped;
  status writes go to ``/status``, which the rules do not match);
* a **WorkflowRun**: a CREATE, or an UPDATE that changes one of its
  immutable fields (:mod:`szal.spec.immutability`); such an update is
  refused anyway, by the CRD's transition rules first. ``suspend``,
  ``cancel``, ``skipFinally``, ``ttlSecondsAfterFinished`` and metadata
  never reach it;
* a **WorkflowSchedule**: as a Workflow, a CREATE or a ``spec`` change.

The same expressions are in the kustomize base
(``manifests/base/webhook``) and the Helm chart
(``charts/szal/templates/webhook.yaml``); ``tests/kubernetes`` checks
they match :data:`MATCH_CONDITIONS`. Decisions: kopf's own managed
configuration (development mode, ``--webhook-port``) has no
``matchConditions`` (kopf builds it and has no field for them), so there the
Python handlers skip the same updates, but the request still reaches the
server.
"""

from __future__ import annotations

from typing import Final

from szal.spec.immutability import immutable_run_fields


def _changed(field: str) -> str:
    new, old = f"object.spec.{field}", f"oldObject.spec.{field}"
    return f"has({new}) != has({old}) || (has({new}) && {new} != {old})"


WORKFLOW_CONDITION: Final = "request.operation != 'UPDATE' || object.spec != oldObject.spec"
"""Call the Workflow webhook on CREATE and on an UPDATE of ``spec``."""

WORKFLOW_RUN_CONDITION: Final = "request.operation != 'UPDATE' || " + " || ".join(
    f"({_changed(field)})" for field in immutable_run_fields()
)
"""Call the WorkflowRun webhook on CREATE and on an UPDATE of an immutable field."""

#: ``matchConditions`` by resource plural, as the configurations carry them.
MATCH_CONDITIONS: Final[dict[str, list[dict[str, str]]]] = {
    "workflows": [{"name": "spec-changed", "expression": WORKFLOW_CONDITION}],
    "workflowruns": [{"name": "not-only-controls", "expression": WORKFLOW_RUN_CONDITION}],
    "workflowschedules": [{"name": "spec-changed", "expression": WORKFLOW_CONDITION}],
}
