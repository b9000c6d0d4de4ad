"""A simulated executor that drives the planner in virtual time (test helper).

It does what a runner does, minus processes: carries out Launch and Stop,
finishes each attempt after a scripted duration with a scripted outcome,
feeds observations back, and jumps the clock to the next event or to
``Plan.wake_at``. It can "restart" at any plan boundary: serialize the status,
rebuild :class:`RunState` from it, attach it to the compiled workflow (a new
session, as a restarted runner does) and pass every
observation it knows again, optionally from a status saved one call earlier
(a runner that crashed before saving). It records every launched attempt so
tests can assert that nothing is launched twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from szal.engine import (
    AttemptRef,
    Launch,
    Observation,
    Plan,
    PlanSession,
    ResolvedWorkflow,
    RunState,
    Stop,
    Transition,
    compile_workflow,
    new_run_state,
    resolve_workflow,
)
from szal.spec import WorkflowSpec

T0 = 1_800_000_000.0


@dataclass(frozen=True)
class Outcome:
    """How a simulated attempt ends: ``Succeeded``, ``Failed`` or ``Hang`` (never ends)."""

    state: str = "Succeeded"
    duration: float = 1.0
    exit_code: int | None = None
    outputs: Mapping[str, Any] | None = None


Script = Callable[[AttemptRef], Outcome]


def always(outcome: Outcome) -> Script:
    return lambda ref: outcome


def by_step(table: Mapping[str, Outcome | list[Outcome]], default: Outcome = Outcome()) -> Script:
    """Outcomes per step name; a list gives one outcome per attempt (last repeats)."""

    def script(ref: AttemptRef) -> Outcome:
        value = table.get(ref.step, default)
        if isinstance(value, list):
            return value[min(ref.attempt, len(value)) - 1]
        return value

    return script


def spec_of(data: dict[str, Any]) -> WorkflowSpec:
    return WorkflowSpec.model_validate(data)


def resolve(data: dict[str, Any], params: Mapping[str, object] | None = None) -> ResolvedWorkflow:
    return resolve_workflow(spec_of(data), name="wf", params=dict(params or {}))


@dataclass
class Simulator:
    workflow: ResolvedWorkflow
    script: Script = field(default_factory=lambda: always(Outcome()))
    now: float = T0
    rollback_script: Script | None = None

    def __post_init__(self) -> None:
        self.compiled = compile_workflow(self.workflow)
        self.state: RunState = new_run_state(self.workflow)
        self.session: PlanSession = self.compiled.attach(self.state)
        self.launched: list[AttemptRef] = []
        self.launches: list[tuple[float, Launch]] = []
        self.stops: list[tuple[float, Stop]] = []
        self.transitions: list[Transition] = []
        self.plans: list[Plan] = []
        self.finishing: dict[AttemptRef, tuple[float, Observation]] = {}
        self.known: dict[AttemptRef, Observation] = {}
        self.inbox: list[Observation] = []
        self.saved_status: dict[str, Any] | None = None
        self.previous_status: dict[str, Any] | None = None
        self.suspend = False
        self.cancel = False
        self.skip_finally = False
        self.calls = 0

    # -- one plan call ---------------------------------------------------
    def plan(self) -> Plan:
        observations, self.inbox = self.inbox, []
        plan = self.session.plan(
            observations,
            self.now,
            suspend=self.suspend,
            cancel=self.cancel,
            skip_finally=self.skip_finally,
        )
        self.calls += 1
        self.plans.append(plan)
        self.transitions.extend(plan.transitions)
        for action in plan.actions:
            if isinstance(action, Launch):
                self._launch(action)
            else:
                self._stop(action)
        self.previous_status = self.saved_status
        self.saved_status = self.state.to_status()
        return plan

    def _launch(self, action: Launch) -> None:
        ref = action.ref
        assert ref not in self.launched, f"launched twice: {ref}"
        self.launched.append(ref)
        self.launches.append((self.now, action))
        script = self.rollback_script if ref.rollback and self.rollback_script else self.script
        outcome = script(ref)
        running = Observation(ref, "Running", self.now)
        self.known[ref] = running
        if outcome.state == "Hang":
            return
        exit_code = outcome.exit_code
        if exit_code is None:
            exit_code = 0 if outcome.state == "Succeeded" else 1
        end = Observation(
            ref,
            "Succeeded" if outcome.state == "Succeeded" else "Failed",
            self.now + outcome.duration,
            exit_code=exit_code,
            outputs=outcome.outputs,
        )
        self.finishing[ref] = (end.at, end)

    def _stop(self, action: Stop) -> None:
        self.stops.append((self.now, action))
        ref = action.ref
        self.finishing.pop(ref, None)
        killed = Observation(ref, "Failed", self.now, exit_code=137, message="killed")
        self.known[ref] = killed
        self.inbox.append(killed)  # stale for the planner: must be ignored

    # -- time --------------------------------------------------------------
    def advance(self, wake_at: float | None) -> bool:
        """Move to the next event; deliver due observations. False if nothing is left."""
        times = [at for at, _ in self.finishing.values()]
        if wake_at is not None:
            times.append(wake_at)
        if not times:
            return bool(self.inbox)
        target = max(self.now, min(times))
        self.now = target
        due = sorted(
            (item for item in self.finishing.items() if item[1][0] <= target),
            key=lambda item: (item[1][0], item[0].step),
        )
        for ref, (_, obs) in due:
            del self.finishing[ref]
            self.known[ref] = obs
            self.inbox.append(obs)
        return True

    def restart(self, *, stale: bool = False) -> None:
        """A new runner process: status -> RunState -> attach, all observations again.

        The compiled workflow is reused (it holds nothing of the run); only
        the session is new, built from the state read back from status.
        """
        status = self.previous_status if stale and self.previous_status else self.saved_status
        self.state = RunState.from_status(status)
        self.session = self.compiled.attach(self.state)
        self.inbox = list(self.known.values())

    def run(
        self,
        *,
        max_calls: int = 100_000,
        restart_at: set[int] | None = None,
        stale: bool = False,
        on_plan: Callable[[Simulator, Plan], None] | None = None,
    ) -> RunState:
        restart_at = restart_at or set()
        while self.calls < max_calls:
            if self.calls in restart_at:
                self.restart(stale=stale)
            plan = self.plan()
            if on_plan is not None:
                on_plan(self, plan)
            if self.state.phase.is_terminal:
                return self.state
            if not self.advance(plan.wake_at):
                return self.state
        raise AssertionError("run did not finish")

    def events(self, step: str | None = None) -> list[str]:
        return [t.event for t in self.transitions if t.step == step]

    def launched_steps(self) -> list[str]:
        return [ref.step for ref in self.launched if not ref.rollback]
