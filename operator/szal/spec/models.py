"""Pydantic models of the ``szal.dev/v1alpha1`` Workflow and WorkflowRun.

Field names are the wire names (camelCase) through aliases; Python code uses
snake_case. Unknown fields are refused (``extra="forbid"``) so a typo such as
``dependson`` is an error naming the field rather than a silently ignored key.
Models are frozen: a loaded spec never changes under the engine's feet.

Only *shape* is checked here (types, enums, patterns, bounds). Checks that
need the whole workflow (unique names, dependencies, cycles, ``when``
references, GPU capacity) live in ``szal.engine.validation`` so that all of
them are collected and reported together with the step and field they concern.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from szal.spec.backoff import Backoff
from szal.spec.containers import EnvFromSource, EnvVarSource, PodFields, VolumeMount
from szal.spec.durations import DURATION_PATTERN

GROUP = "szal.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: DNS-1123 label: what Kubernetes accepts as a label value and a name part.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

Mode = Literal["Sequential", "Parallel", "Dag", "Hierarchical"]
Trigger = Literal["All", "Any"]
Launcher = Literal["Pod", "Job"]
#: Kubernetes' own values and meaning; unset: Kubernetes' default (Always for
#: ``:latest`` or no tag, else IfNotPresent). Ignored by the local runner.
ImagePullPolicy = Literal["Always", "IfNotPresent", "Never"]
ParamValue = str | int | float | bool | list[Any] | dict[str, Any]
#: A param's declared type (the JSON type of its values), as in Tekton and Argo.
ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, examples=["90s", "1m30s"])]
#: A Kubernetes resource quantity: ``500m``, ``2``, ``1.5``, ``1Gi``, ``128M``.
#: Plain numbers are accepted as Kubernetes accepts them (``cpu: 2``).
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)


def _check_quantity(value: Any) -> Any:
    if isinstance(value, str):
        ok = _QUANTITY.match(value) is not None
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    if not ok:
        raise ValueError(
            f"invalid quantity {value!r}: use a Kubernetes quantity such as 500m, 2, 0.5,"
            " 1Gi or 128M"
        )
    return value


Quantity = Annotated[
    str | int | float,
    BeforeValidator(_check_quantity),
    Field(description="A Kubernetes quantity: 500m, 2, 0.5, 1Gi, 128M."),
]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class EnvVar(_Model):
    """An environment variable given to a step: a ``value``, or ``valueFrom`` a
    Secret, ConfigMap, Pod field or resource (Kubernetes' meaning)."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    value: str = ""
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value and self.value_from is not None:
            raise ValueError("set value or valueFrom, not both")
        return self


class GpuRequest(_Model):
    """GPUs a step needs: a count and, optionally, the product (node label)."""

    count: Annotated[int, Field(ge=1, le=64)] = 1
    product: str | None = None


class Resources(_Model):
    """CPU, memory and GPUs for a step, short form and Kubernetes' form.

    ``cpu`` and ``memory`` set the request and the limit alike; ``requests``
    and ``limits`` set them separately for any resource (``cpu``,
    ``memory``, ``ephemeral-storage``, extended resources); ``gpu`` is a
    ``nvidia.com/gpu`` limit. A resource set in both forms is an error.
    """

    cpu: Quantity | None = None
    memory: Quantity | None = None
    gpu: GpuRequest | None = None
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Resources:
        explicit = {*(self.requests or {}), *(self.limits or {})}
        for short in ("cpu", "memory"):
            if getattr(self, short) is not None and short in explicit:
                raise ValueError(
                    f"{short} is set both as {short} (request and limit) and in"
                    " requests/limits: use one form"
                )
        if self.gpu is not None and "nvidia.com/gpu" in explicit:
            raise ValueError("nvidia.com/gpu is set both as gpu and in requests/limits")
        return self


class Retries(_Model):
    """Retry policy: attempts = limit + 1; delay grows per ``backoff``."""

    limit: Annotated[int, Field(ge=0, le=100)] = 0
    backoff: Backoff = "Fixed"
    delay: Duration = "1s"
    max_delay: Duration | None = None


class PodMetadata(_Model):
    """Labels and annotations copied onto a step's Pod."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodOptions(PodFields):
    """Pod-level settings for a step (cluster only; ignored locally)."""

    metadata: PodMetadata | None = None
    service_account_name: str | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    priority_class_name: str | None = None
    security_context: dict[str, Any] | None = None


class CommandSpec(_Model):
    """What to run and with what: the fields a step, the template and a
    rollback all have (one definition, so they never drift apart)."""

    image: str | None = None
    image_pull_policy: ImagePullPolicy | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    script: str | None = None
    env: list[EnvVar] | None = None
    env_from: list[EnvFromSource] | None = None
    working_dir: str | None = None
    volume_mounts: list[VolumeMount] | None = None
    timeout: Duration | None = None


class StepOptions(CommandSpec):
    """A command plus how it runs: every field the template may set for all
    steps (a rollback runs with its step's resources, launcher and pod)."""

    retries: Retries | None = None
    resources: Resources | None = None
    launcher: Launcher | None = None
    pod: PodOptions | None = None


class Compensation(CommandSpec):
    """A step's rollback: a command run when the run fails (reverse order)."""


class StepTemplate(StepOptions):
    """Defaults merged into every step (a step's own fields win)."""


#: The most instances one matrix or ``forEach`` may expand to.
MAX_MATRIX_INSTANCES = 1000


class Matrix(_Model):
    """A step's fan-out: one instance per combination (see docs/engine.md, "Matrix").

    ``params`` is crossed (every combination, the first param outermost);
    ``include`` adds explicit combinations after them; ``maxParallel`` caps
    the instances of this matrix running at once (the workflow's
    ``maxParallel`` applies too).
    """

    params: dict[str, list[ParamValue]] | None = None
    include: list[dict[str, ParamValue]] | None = None
    max_parallel: Annotated[int, Field(ge=1)] | None = None


class Step(StepOptions):
    """One step: a container (or local process), its wiring and its policies."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    depends_on: list[str] = Field(default_factory=list)
    trigger: Trigger = "All"
    when: str | None = None
    rollback: Compensation | None = None
    steps: list[Step] | None = None
    mode: Mode | None = None
    matrix: Matrix | None = None
    for_each: str | None = None


class Param(_Model):
    """A workflow parameter; without a default, every run must give it.

    ``type`` unset: the JSON type of ``default``, else ``string`` (see
    :func:`szal.engine.params.declared_type`).
    """

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")]
    type: ParamType | None = None
    enum: Annotated[list[ParamValue], Field(min_length=1)] | None = None
    default: ParamValue | None = None
    description: str | None = None


class WorkflowSpec(_Model):
    """What a Workflow defines: its steps and how they run."""

    version: Annotated[int, Field(ge=1)] = 1
    mode: Mode = "Sequential"
    params: list[Param] = Field(default_factory=list)
    timeout: Duration | None = None
    max_parallel: Annotated[int, Field(ge=1)] | None = None
    fail_fast: bool = False
    rollback_on_failure: bool = False
    template: StepTemplate | None = None
    steps: Annotated[list[Step], Field(min_length=1)]
    finally_: list[Step] = Field(
        default_factory=list,
        alias="finally",
        description="Steps run after the main steps (and their rollback), whatever the outcome.",
    )


class ObjectMeta(BaseModel):
    """The part of Kubernetes object metadata that Szál reads."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Workflow(_Model):
    """A Workflow object (``kind: Workflow``)."""

    api_version: Literal["szal.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Workflow"]
    metadata: ObjectMeta
    spec: WorkflowSpec
    status: dict[str, Any] | None = None


class WorkflowRef(_Model):
    """Names the Workflow a run executes (same namespace)."""

    name: Annotated[str, Field(min_length=1)]


class WorkflowRunSpec(_Model):
    """What a WorkflowRun asks for: which workflow, params, and controls."""

    workflow_ref: WorkflowRef | None = None
    workflow: WorkflowSpec | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)
    suspend: bool = False
    cancel: bool = False
    skip_finally: bool = Field(
        default=False, description="With cancel: do not run (or stop) the finally steps."
    )
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None


class WorkflowRun(_Model):
    """A WorkflowRun object (``kind: WorkflowRun``)."""

    api_version: Literal["szal.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["WorkflowRun"]
    metadata: ObjectMeta
    spec: WorkflowRunSpec
    status: dict[str, Any] | None = None
