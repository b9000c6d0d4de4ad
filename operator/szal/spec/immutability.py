"""Which fields of a WorkflowRun's spec may change after it was created.

A run executes the workflow and params it was started with (pinned in
``status.pinnedSpec``); editing ``workflowRef``, ``workflow`` or ``params``
later used to be accepted and silently ignored. Now they are refused, twice
over: by CEL transition rules on the CRD (:mod:`szal.spec.crd`, no webhook
needed) and by the admission webhook
(:mod:`szal.runners.kubernetes.admission`), with the same message.

Decisions:

* The mutable fields are the controls, listed in :data:`RUN_CONTROL_FIELDS`
  (``suspend``, ``cancel``, ``skipFinally`` (set with a cancel),
  ``ttlSecondsAfterFinished``); every other field
  of :class:`~szal.spec.models.WorkflowRunSpec`, including fields added
  later, is immutable (the rules are generated from the model's fields).
* Immutable from creation, not from the first status write: a CEL rule
  cannot read the status, and a run starts as soon as the operator sees it,
  so the difference is a window of milliseconds. To run other params,
  create another run.
* Adding or removing an immutable field counts as a change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from szal.spec.models import WorkflowRunSpec

#: Wire names of the WorkflowRun spec fields that may change at any time.
RUN_CONTROL_FIELDS: Final = ("suspend", "cancel", "skipFinally", "ttlSecondsAfterFinished")


def immutable_run_fields() -> tuple[str, ...]:
    """Wire names of every WorkflowRun spec field that is not a control."""
    names = (field.alias or name for name, field in WorkflowRunSpec.model_fields.items())
    return tuple(name for name in names if name not in RUN_CONTROL_FIELDS)


def immutable_message(field: str) -> str:
    """What a refused change of ``spec.<field>`` says."""
    controls = ", ".join(RUN_CONTROL_FIELDS)
    return (
        f"spec.{field} is immutable: a WorkflowRun's spec cannot change after creation,"
        f" except {controls} (create a new run instead)"
    )


def changed_immutable_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The immutable fields whose value differs between two run specs (wire names)."""
    return [field for field in immutable_run_fields() if old.get(field) != new.get(field)]
