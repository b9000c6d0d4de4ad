"""The WorkflowSchedule resource: runs of a Workflow on a cron schedule.

Like Kubernetes' CronJob and Argo's CronWorkflow: a cron expression read
in a time zone, a concurrency policy, a deadline for starting late, how
many finished runs to keep, a suspend switch and the runs' params. The
engine's :mod:`szal.engine.scheduling` decides from this spec, the
schedule's status and ``now`` what to create; the operator's
:mod:`szal.runners.kubernetes.scheduling` does it. ``szal crds`` generates
the CRD from these models. The cron expression itself is checked by the
engine (the spec layer imports no cron library).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from szal.spec.models import ObjectMeta, ParamValue, WorkflowRef, _Model

ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]


class WorkflowScheduleSpec(_Model):
    """When to start runs of which Workflow, and what to do when they overlap."""

    schedule: Annotated[
        str,
        Field(
            min_length=1,
            description="A cron expression (5 fields, or @hourly, @daily...), in timeZone.",
        ),
    ]
    time_zone: Annotated[
        str | None,
        Field(description="An IANA time zone (Europe/Budapest); default UTC."),
    ] = None
    workflow_ref: WorkflowRef
    params: dict[str, ParamValue] = Field(default_factory=dict)
    concurrency_policy: Annotated[
        ConcurrencyPolicy,
        Field(
            description="Allow: runs may overlap; Forbid: skip a time while a run is active;"
            " Replace: cancel the active run and start the new one."
        ),
    ] = "Allow"
    starting_deadline_seconds: Annotated[
        int | None,
        Field(
            ge=0,
            description="A time missed by more than this is skipped; only the latest missed"
            " time is ever started. Default: no deadline.",
        ),
    ] = None
    successful_runs_history_limit: Annotated[int, Field(ge=0)] = 3
    failed_runs_history_limit: Annotated[int, Field(ge=0)] = 1
    suspend: bool = False


class WorkflowSchedule(_Model):
    """A WorkflowSchedule object (``kind: WorkflowSchedule``)."""

    api_version: Literal["szal.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["WorkflowSchedule"]
    metadata: ObjectMeta
    spec: WorkflowScheduleSpec
    status: dict[str, Any] | None = None
