"""The pure engine: validation, resolution, state machines and the planner.

No I/O and no clock: the planner takes ``now`` and returns actions and the
next state. Both runners (local, Kubernetes) are thin shells around it.

Typical use by a runner::

    admitted = admit(document, given_params)   # the one way in: Admitted | Refused
    if isinstance(admitted, Refused):
        ...                                    # admitted.issues: every problem
    resolved = admitted.workflow
    compiled = compile_workflow(resolved)    # immutable, shareable between runs
    state = new_run_state(resolved)          # or RunState.from_status(saved)
    session = compiled.attach(state, run_name=run)
    plan = session.plan(observations, now)   # changes session.state in place
"""

from szal.engine.actions import (
    Action,
    AttemptRef,
    Launch,
    Observation,
    Plan,
    Stop,
    Transition,
)
from szal.engine.admitting import Admitted, Definition, Refused, admit, admit_definition
from szal.engine.compiled import CompiledWorkflow, compile_workflow, new_run_state
from szal.engine.environment import (
    CONTEXT_ENV_LIMIT,
    deliver_context,
    param_variable,
    run_context,
    step_environment,
)
from szal.engine.migrations import (
    CURRENT_VERSION,
    MigrationError,
    MigrationRegistry,
    default_registry,
    definition_version,
    upgrade,
)
from szal.engine.phases import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    InvalidTransition,
    RunPhase,
    StepPhase,
    run_transition,
    step_transition,
)
from szal.engine.planner import PlanSession
from szal.engine.readiness import (
    CONDITION_NOT_MET,
    DEPENDENCY_FAILED,
    PARENT_STEP_FAILED,
    PRIOR_STEP_FAILED,
)
from szal.engine.rollback import Rollback
from szal.engine.state import PinnedWorkflow, RollbackState, RunState, StepState
from szal.engine.validation import (
    SpecIssue,
    WorkflowInvalid,
    issues_from_validation_error,
    parse_workflow,
    parse_workflow_run,
    spec_hash,
    validate_run_params,
    validate_workflow,
)
from szal.engine.workflow import (
    Command,
    ResolvedStep,
    ResolvedWorkflow,
    RetryPolicy,
    resolve_workflow,
)

__all__ = [
    "CONDITION_NOT_MET",
    "CONTEXT_ENV_LIMIT",
    "CURRENT_VERSION",
    "DEPENDENCY_FAILED",
    "PARENT_STEP_FAILED",
    "PRIOR_STEP_FAILED",
    "RUN_TRANSITIONS",
    "STEP_TRANSITIONS",
    "Action",
    "Admitted",
    "AttemptRef",
    "Command",
    "CompiledWorkflow",
    "Definition",
    "InvalidTransition",
    "Launch",
    "MigrationError",
    "MigrationRegistry",
    "Observation",
    "PinnedWorkflow",
    "Plan",
    "PlanSession",
    "Refused",
    "ResolvedStep",
    "ResolvedWorkflow",
    "RetryPolicy",
    "Rollback",
    "RollbackState",
    "RunPhase",
    "RunState",
    "SpecIssue",
    "StepPhase",
    "StepState",
    "Stop",
    "Transition",
    "WorkflowInvalid",
    "admit",
    "admit_definition",
    "compile_workflow",
    "default_registry",
    "definition_version",
    "deliver_context",
    "issues_from_validation_error",
    "new_run_state",
    "param_variable",
    "parse_workflow",
    "parse_workflow_run",
    "resolve_workflow",
    "run_context",
    "run_transition",
    "spec_hash",
    "step_environment",
    "step_transition",
    "upgrade",
    "validate_run_params",
    "validate_workflow",
]
