"""A workflow resolved for running: template merged, durations parsed, graph built.

:func:`resolve_workflow` turns a validated :class:`~szal.spec.WorkflowSpec`
into a :class:`ResolvedWorkflow`, once per run. It is the only place where
the step ``template`` is merged (a step's own fields win; ``env`` merges by
name; ``pod`` merges field by field) and where Hierarchical nesting is
flattened into one graph, so the planner works on a flat, indexed structure
and never walks the spec again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from szal.dsl import Condition, compile_condition
from szal.engine.matrices import expand_step, expansion_issues, is_matrix
from szal.spec import (
    Backoff,
    BackoffSettings,
    EnvVar,
    GpuRequest,
    Launcher,
    Mode,
    PodMetadata,
    PodOptions,
    Retries,
    Step,
    StepTemplate,
    Trigger,
    WorkflowSpec,
    parse_duration,
)
from szal.spec.containers import EnvFromSource, EnvVarSource, VolumeMount


@dataclass(frozen=True, slots=True)
class Command:
    """What to execute: ``command`` + ``args`` exec'd, or ``script`` via ``sh -c``."""

    image: str | None
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    script: str | None
    env: tuple[tuple[str, str], ...]
    image_pull_policy: str | None = None
    env_sources: tuple[tuple[str, EnvVarSource], ...] = ()
    """Env vars whose value comes ``valueFrom`` a Secret, ConfigMap or field (cluster only)."""
    env_from: tuple[EnvFromSource, ...] = ()
    working_dir: str | None = None
    volume_mounts: tuple[VolumeMount, ...] = ()

    def argv(self) -> list[str]:
        """The argument vector for a local process (``image`` is ignored)."""
        if self.script is not None:
            return ["sh", "-c", self.script]
        return [*(self.command or ()), *(self.args or ())]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A step's ``retries``, parsed: attempts = limit + 1, and the delay before
    attempt n+1 is :class:`~szal.spec.BackoffSettings`' formula (never jittered).

    The fields stay flat, as the spec writes them (callers and the conformance
    tests read ``retries.delay``); the formula lives only in BackoffSettings.
    """

    limit: int = 0
    backoff: Backoff = "Fixed"
    delay: float = 1.0
    max_delay: float | None = None

    @property
    def settings(self) -> BackoffSettings:
        """The backoff part as the settings type every retrying part of Szál uses."""
        return BackoffSettings(self.backoff, delay=self.delay, max_delay=self.max_delay)

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        return self.settings.delay_after(attempt)


@dataclass(frozen=True, slots=True)
class ResolvedStep:
    """One step with the template merged in and everything parsed.

    ``index`` is the step's position in :attr:`ResolvedWorkflow.steps`
    (definition order, parents before children); ``parent`` names the
    Hierarchical parent, ``group_mode`` is the mode of the sibling group the
    step belongs to, ``mode`` the mode of its own children.
    """

    name: str
    index: int
    command: Command
    timeout: float | None
    retries: RetryPolicy
    depends_on: tuple[str, ...]
    trigger: Trigger
    when: Condition | None
    rollback: Command | None
    rollback_timeout: float | None
    cpu: str | None
    memory: str | None
    gpu: GpuRequest | None
    launcher: Launcher
    pod: PodOptions | None
    parent: str | None
    children: tuple[str, ...]
    group_mode: Mode
    mode: Mode
    timeout_text: str | None = None  # the limits as written, for messages
    rollback_timeout_text: str | None = None
    final: bool = False  # a finally step (spec.finally), after every main step
    # Matrix (szal.engine.matrices): an instance's values; on the fan-out
    # step, that it is one and its own maxParallel.
    matrix: Mapping[str, Any] | None = None
    fan_out: bool = False
    matrix_max_parallel: int | None = None
    requests: tuple[tuple[str, str], ...] = ()
    """``resources.requests`` (besides ``cpu``/``memory``, which set both)."""
    limits: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ResolvedWorkflow:
    """Everything the planner needs, indexed. Built once per run."""

    name: str
    version: int
    spec_hash: str
    mode: Mode
    timeout: float | None
    max_parallel: int | None
    fail_fast: bool
    rollback_on_failure: bool
    params: dict[str, object]
    steps: tuple[ResolvedStep, ...]
    by_name: dict[str, ResolvedStep]
    timeout_text: str | None = None  # ``spec.timeout`` as written, for messages
    finally_count: int = 0  # the last steps are the finally steps


def _merged_vars(*layers: list[EnvVar] | None) -> dict[str, EnvVar]:
    merged: dict[str, EnvVar] = {}
    for layer in layers:
        for var in layer or ():
            merged[var.name] = var
    return merged


def _merge_env(*layers: list[EnvVar] | None) -> tuple[tuple[str, str], ...]:
    """Plain values by name, a later layer winning (a later ``valueFrom`` removes the value)."""
    return tuple(
        (name, var.value) for name, var in _merged_vars(*layers).items() if var.value_from is None
    )


def _env_sources(*layers: list[EnvVar] | None) -> tuple[tuple[str, EnvVarSource], ...]:
    return tuple(
        (name, var.value_from)
        for name, var in _merged_vars(*layers).items()
        if var.value_from is not None
    )


def _merge_mounts(*layers: list[VolumeMount] | None) -> tuple[VolumeMount, ...]:
    """Mounts by ``mountPath``, a later layer winning (as env merges by name)."""
    merged: dict[str, VolumeMount] = {}
    for layer in layers:
        for mount in layer or ():
            merged[mount.mount_path] = mount
    return tuple(merged.values())


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _quantities(values: Mapping[str, str | int | float] | None) -> tuple[tuple[str, str], ...]:
    return tuple((key, str(_quantity(value))) for key, value in (values or {}).items())


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def _merge_pod(step: PodOptions | None, template: PodOptions | None) -> PodOptions | None:
    if step is None or template is None:
        return step or template
    fields: dict[str, Any] = {}
    for name in PodOptions.model_fields:
        mine, theirs = getattr(step, name), getattr(template, name)
        fields[name] = mine if mine is not None else theirs
    if step.metadata is not None and template.metadata is not None:
        fields["metadata"] = PodMetadata(
            labels={**template.metadata.labels, **step.metadata.labels},
            annotations={**template.metadata.annotations, **step.metadata.annotations},
        )
    return PodOptions(**fields)


def _retry_policy(retries: Retries | None) -> RetryPolicy:
    if retries is None:
        return RetryPolicy()
    return RetryPolicy(
        limit=retries.limit,
        backoff=retries.backoff,
        delay=parse_duration(retries.delay),
        max_delay=None if retries.max_delay is None else parse_duration(retries.max_delay),
    )


def _command(step: Step, template: StepTemplate) -> Command:
    if step.steps and step.command is None and step.script is None and step.args is None:
        # A step with children runs only its own command: the template's
        # command is for the steps that do the work, not for grouping steps.
        command, args, script = None, None, None
    elif step.script is not None:
        command, args, script = None, None, step.script
    elif step.command is not None:
        command, args, script = step.command, step.args, None
    elif step.args is not None:
        command, args, script = template.command, step.args, None
        if template.command is None:
            script = template.script
    else:
        command, args, script = template.command, template.args, template.script
    return Command(
        image=step.image if step.image is not None else template.image,
        image_pull_policy=(
            step.image_pull_policy
            if step.image_pull_policy is not None
            else template.image_pull_policy
        ),
        command=_tuple(command),
        args=_tuple(args),
        script=script,
        env=_merge_env(template.env, step.env),
        env_sources=_env_sources(template.env, step.env),
        env_from=tuple(_first(step.env_from, template.env_from) or ()),
        working_dir=_first(step.working_dir, template.working_dir),
        volume_mounts=_merge_mounts(template.volume_mounts, step.volume_mounts),
    )


def resolve_workflow(
    spec: WorkflowSpec,
    *,
    name: str,
    params: Mapping[str, object],
    validate: bool = True,
) -> ResolvedWorkflow:
    """Resolve ``spec`` for a run named by ``name`` (the Workflow's name).

    ``params`` are the run's params (see
    :func:`szal.engine.validation.validate_run_params`); declared defaults
    fill the ones not given. With ``validate``
    (the default) the spec is validated first and :class:`WorkflowInvalid`
    raised on any issue: the planner relies on an acyclic, well-formed graph.
    :func:`szal.engine.admitting.admit`, the way in of every run start, has
    validated it already and passes ``validate=False``.
    Template merge: a step's own fields win; ``command``/``args``/``script``
    form one unit (a step's ``script`` or ``command`` replaces the template's
    whole unit, a step's lone ``args`` go with the template's ``command``);
    ``env`` merges by name (a ``valueFrom`` var and a plain one alike),
    ``volumeMounts`` by ``mountPath``; ``envFrom`` and ``workingDir`` are
    the step's if set, else the template's; ``resources`` is one unit (the
    step's, else the template's); ``pod`` merges field by field (labels and
    annotations key by key; ``volumes`` is one field: a step setting it
    replaces the template's list). A compensation inherits the step's image,
    imagePullPolicy, env, envFrom, workingDir and volumeMounts.
    A step with children that sets none of ``command``/``args``/``script``
    runs nothing of its own (not the template's command): it only orders its
    children.
    """
    from szal.engine.validation import raise_for_issues, spec_hash, validate_workflow

    if validate:
        raise_for_issues(validate_workflow(spec))
        raise_for_issues(
            expansion_issues(
                spec,
                {**{p.name: p.default for p in spec.params if p.default is not None}, **params},
            )
        )
    template = spec.template or StepTemplate()
    flat: list[tuple[Step, str | None, Mode]] = []
    run_params = {**{p.name: p.default for p in spec.params if p.default is not None}, **params}
    instances: dict[str, dict[str, Any]] = {}  # matrix values by instance name
    fan_outs: dict[str, int | None] = {}  # matrix steps and their own maxParallel

    def visit(steps: list[Step], parent: str | None, group_mode: Mode) -> None:
        for step in steps:
            if is_matrix(step):
                fan_outs[step.name] = step.matrix.max_parallel if step.matrix else None
                step, values = expand_step(step, run_params)
                instances.update(values)
            flat.append((step, parent, group_mode))
            if step.steps:
                visit(step.steps, step.name, step.mode or "Sequential")

    visit(spec.steps, None, spec.mode)
    main_count = len(flat)
    # Finally steps are flat: Parallel among themselves, or a Dag of their own.
    flat.extend((step, None, "Dag" if spec.mode == "Dag" else "Parallel") for step in spec.finally_)
    resolved: list[ResolvedStep] = []
    for index, (step, parent, group_mode) in enumerate(flat):
        command = _command(step, template)
        rollback: Command | None = None
        rollback_timeout: float | None = None
        if step.rollback is not None:
            comp = step.rollback
            rollback = Command(
                image=comp.image if comp.image is not None else command.image,
                image_pull_policy=(
                    comp.image_pull_policy
                    if comp.image_pull_policy is not None
                    else command.image_pull_policy
                ),
                command=_tuple(comp.command),
                args=_tuple(comp.args),
                script=comp.script,
                env=_merge_env(template.env, step.env, comp.env),
                env_sources=_env_sources(template.env, step.env, comp.env),
                env_from=tuple(_first(comp.env_from, step.env_from, template.env_from) or ()),
                working_dir=_first(comp.working_dir, command.working_dir),
                volume_mounts=_merge_mounts(
                    template.volume_mounts, step.volume_mounts, comp.volume_mounts
                ),
            )
            rollback_timeout = None if comp.timeout is None else parse_duration(comp.timeout)
        timeout = step.timeout if step.timeout is not None else template.timeout
        resources = step.resources if step.resources is not None else template.resources
        resolved.append(
            ResolvedStep(
                name=step.name,
                index=index,
                command=command,
                timeout=None if timeout is None else parse_duration(timeout),
                retries=_retry_policy(
                    step.retries if step.retries is not None else template.retries
                ),
                depends_on=tuple(dict.fromkeys(step.depends_on)),
                trigger=step.trigger,
                when=compile_condition(step.when) if step.when is not None else None,
                rollback=rollback,
                rollback_timeout=rollback_timeout,
                cpu=_quantity(resources.cpu) if resources else None,
                memory=_quantity(resources.memory) if resources else None,
                gpu=resources.gpu if resources else None,
                launcher=step.launcher or template.launcher or "Pod",
                pod=_merge_pod(step.pod, template.pod),
                parent=parent,
                children=tuple(child.name for child in step.steps or ()),
                group_mode=group_mode,
                mode=step.mode or "Sequential",
                timeout_text=timeout,
                rollback_timeout_text=step.rollback.timeout if step.rollback else None,
                final=index >= main_count,
                matrix=instances.get(step.name),
                fan_out=step.name in fan_outs,
                matrix_max_parallel=fan_outs.get(step.name),
                requests=_quantities(resources.requests if resources else None),
                limits=_quantities(resources.limits if resources else None),
            )
        )
    return ResolvedWorkflow(
        name=name,
        version=spec.version,
        spec_hash=spec_hash(spec),
        mode=spec.mode,
        timeout=None if spec.timeout is None else parse_duration(spec.timeout),
        max_parallel=spec.max_parallel,
        fail_fast=spec.fail_fast,
        rollback_on_failure=spec.rollback_on_failure,
        params=run_params,
        steps=tuple(resolved),
        by_name={step.name: step for step in resolved},
        timeout_text=spec.timeout,
        finally_count=len(spec.finally_),
    )


def _quantity(value: str | int | float | None) -> str | None:
    """A resource quantity as Kubernetes prints it (``2``, ``0.5``, ``500m``)."""
    if value is None or isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))
