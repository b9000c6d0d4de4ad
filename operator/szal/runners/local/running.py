"""The local runner: drive the engine's planner with local processes.

``szal run`` builds a :class:`LocalRunner` and awaits :meth:`LocalRunner.run`.
The loop is the functional-core/imperative-shell split of DESIGN.md: all
semantics (ordering, conditions, retries, timeouts, rollback, cancellation)
are the planner's; this module only

1. asks the planner for a :class:`~szal.engine.actions.Plan` given the
   state, the new observations and ``now``;
2. records the plan's transitions into the history store (through
   :mod:`szal.history.recording`, shared with the operator's mirror) and
   tells the listener (live progress);
3. applies the actions: ``Launch`` starts a process (held first until
   enough GPUs are free), ``Stop`` signals its process group;
4. waits for the first of: a process exit, the plan's ``wake_at`` (a retry
   delay, a timeout), a cancel request (a signal), then goes to 1.

Timeouts are the planner's decision (``Stop(ref, 'timeout')``); the runner
only kills. Cancellation (SIGINT/SIGTERM, handled by the CLI calling
:meth:`LocalRunner.request_cancel`) re-plans with ``cancel=True``: the
planner stops running steps and cancels the rest, then runs the finally
steps (``spec.finally``); a second request kills every process group at once
instead of waiting for the grace period, and skips (stops) the finally steps
(``skip_finally=True``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from szal.engine.actions import AttemptRef, Launch, Observation, Plan, Stop
from szal.engine.compiled import compile_workflow, new_run_state
from szal.engine.environment import step_environment
from szal.engine.state import RunState
from szal.engine.workflow import ResolvedWorkflow
from szal.history.recording import RunIdentity, record_plan, record_start
from szal.history.reusing import reused_attempts
from szal.history.store import ExecutionStore
from szal.runners.local.gpus import GpuPool
from szal.runners.local.processes import Exited, LocalProcess, start_process


@dataclass(frozen=True, slots=True)
class LocalSettings:
    """How ``szal run`` runs steps on this machine."""

    max_parallel: int | None = None
    """Overrides the workflow's ``maxParallel`` (``--max-parallel``)."""
    grace_period: float = 10.0
    """Seconds between SIGTERM and SIGKILL when a step is stopped."""
    gpus: tuple[str, ...] = ()
    """GPU ids steps may use (see :func:`szal.runners.local.gpus.discover_gpus`)."""
    cwd: Path | None = None
    """Working directory of every step (default: the current directory)."""
    base_env: Mapping[str, str] | None = None
    """Environment inherited by every step (default: this process's)."""


class RunListener(Protocol):
    """Told about every plan after it is recorded (live progress, tests)."""

    def on_plan(self, state: RunState, plan: Plan, now: float) -> None: ...


class _Quiet:
    def on_plan(self, state: RunState, plan: Plan, now: float) -> None:
        return None


@dataclass(slots=True)
class _Attempt:
    launch: Launch
    process: LocalProcess
    gpus: tuple[str, ...]
    waiter: asyncio.Task[None]


@dataclass(slots=True)
class _Held:
    launch: Launch
    reported: bool = False


@dataclass(slots=True)
class _Inbox:
    """What the loop waits on: observations from processes, and a poke."""

    observations: list[Observation] = field(default_factory=list)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, observation: Observation) -> None:
        self.observations.append(observation)
        self.event.set()

    def take(self) -> list[Observation]:
        taken, self.observations = self.observations, []
        self.event.clear()
        return taken


class LocalRunner:
    """Runs one workflow to a terminal phase with local processes."""

    def __init__(
        self,
        workflow: ResolvedWorkflow,
        identity: RunIdentity,
        *,
        store: ExecutionStore | None = None,
        settings: LocalSettings | None = None,
        listener: RunListener | None = None,
        state: RunState | None = None,
    ) -> None:
        """``state``: a run seeded with carried-over steps (a retry,
        :func:`szal.engine.retrying.seed_retry`); default a new run's."""
        self.settings = settings or LocalSettings()
        if self.settings.max_parallel is not None:
            workflow = dataclasses.replace(workflow, max_parallel=self.settings.max_parallel)
        self.workflow = workflow
        self.identity = identity
        self.store = store
        self.listener: RunListener = listener or _Quiet()
        self.state: RunState = state if state is not None else new_run_state(workflow)
        self.session = compile_workflow(workflow).attach(self.state)
        self.gpu_pool = GpuPool(self.settings.gpus)
        self.cancel_signal: int | None = None
        self._cancel_count = 0
        self._running: dict[AttemptRef, _Attempt] = {}
        self._held: deque[_Held] = deque()
        self._inbox = _Inbox()
        self._base_env = dict(
            os.environ if self.settings.base_env is None else self.settings.base_env
        )

    def request_cancel(self, signum: int | None = None) -> None:
        """Cancel the run (first call: finally steps still run) or kill every step
        now and skip the finally steps (later calls)."""
        self._cancel_count += 1
        if self.cancel_signal is None:
            self.cancel_signal = signum
        if self._cancel_count > 1:
            for attempt in self._running.values():
                attempt.process.kill()
        self._inbox.event.set()

    async def run(self) -> RunState:
        """Run to the end and return the final state (also recorded in the store)."""
        if self.store is not None:
            workflow_record, run_record = record_start(self.workflow, self.identity, self.state)
            await self.store.save_workflow(workflow_record)
            await self.store.upsert_run(run_record)
            reused = reused_attempts(self.identity.uid, self.state)
            if reused:
                await self.store.upsert_attempts(reused)
        observations: list[Observation] = []
        try:
            while True:
                now = time.time()
                plan = self.session.plan(
                    observations,
                    now,
                    cancel=self._cancel_count > 0,
                    skip_finally=self._cancel_count > 1,
                )
                await self._record(plan)
                self.listener.on_plan(self.state, plan, now)
                for action in plan.actions:
                    if isinstance(action, Launch):
                        self._held.append(_Held(action))
                    elif isinstance(action, Stop):
                        self._stop(action)
                if self.state.phase.is_terminal:
                    self._held.clear()  # nothing new starts in a finished run
                    if not self._running:
                        return self.state
                else:
                    await self._start_held()
                observations = await self._wait(plan.wake_at)
        finally:
            await self._abandon()

    # -- applying actions -------------------------------------------------------

    async def _start_held(self) -> None:
        while self._held:
            held = self._held[0]
            launch = held.launch
            wanted = launch.step.gpu.count if launch.step.gpu and not launch.ref.rollback else 0
            gpus = self.gpu_pool.acquire(wanted) if wanted else ()
            if gpus is None:
                if not held.reported:
                    held.reported = True
                    self._inbox.put(
                        Observation(
                            launch.ref,
                            "Pending",
                            time.time(),
                            message=f"waiting for {wanted} free GPU(s) "
                            f"({self.gpu_pool.free} of {len(self.gpu_pool.ids)} free)",
                        )
                    )
                return  # strict arrival order: nobody overtakes a waiting GPU step
            self._held.popleft()
            await self._launch(launch, gpus)

    def _cwd(self, launch: Launch) -> Path | None:
        """``workingDir`` (relative: to the run's directory), else the run's directory."""
        working_dir = launch.command.working_dir
        if working_dir is None:
            return self.settings.cwd
        return (self.settings.cwd or Path.cwd()) / working_dir

    async def _launch(self, launch: Launch, gpus: tuple[str, ...]) -> None:
        env = dict(self._base_env)
        env.update(
            step_environment(
                self.session.compiled,
                self.state,
                launch.ref.step,
                launch.ref.attempt,
                run_name=self.identity.name,
                namespace=self.identity.namespace,
                rollback=launch.ref.rollback,
            )
        )
        if gpus or self.gpu_pool.ids:
            # As on a cluster, a step sees exactly the GPUs it was given (none if none).
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        process = await start_process(launch.command.argv(), env, cwd=self._cwd(launch))
        started = time.time()
        if process.start_error is None:
            self._inbox.put(Observation(launch.ref, "Running", started))
        waiter = asyncio.create_task(self._watch(launch, process, gpus))
        self._running[launch.ref] = _Attempt(launch, process, gpus, waiter)

    async def _watch(self, launch: Launch, process: LocalProcess, gpus: tuple[str, ...]) -> None:
        exited: Exited = await process.wait()
        at = time.time()
        outputs: dict[str, Any] | None = None
        message = exited.message
        state: str = "Succeeded" if exited.exit_code == 0 else "Failed"
        if process.start_error is None:
            outputs, problem = process.read_outputs()
            if problem is not None and exited.exit_code == 0:
                # A step that cannot hand over its outputs did not do its job.
                state, message = "Failed", problem
        log = process.read_log()
        if process.start_error is not None and exited.message:
            log += f"szal: {exited.message}\n"
        process.cleanup()
        if self.store is not None and log:
            ref = launch.ref
            await self.store.append_log(self.identity.uid, ref.step, ref.attempt, ref.rollback, log)
        self.gpu_pool.release(gpus)
        self._running.pop(launch.ref, None)
        self._inbox.put(
            Observation(
                launch.ref,
                "Succeeded" if state == "Succeeded" else "Failed",
                at,
                exit_code=exited.exit_code,
                outputs=outputs,
                message=message,
            )
        )

    def _stop(self, stop: Stop) -> None:
        attempt = self._running.get(stop.ref)
        if attempt is not None:
            if self._cancel_count > 1:
                attempt.process.kill()
            else:
                attempt.process.stop(self.settings.grace_period)
            return
        for held in list(self._held):
            if held.launch.ref == stop.ref:
                self._held.remove(held)
                self._inbox.put(
                    Observation(
                        stop.ref, "Failed", time.time(), message="stopped before it started"
                    )
                )

    # -- waiting and recording --------------------------------------------------

    async def _wait(self, wake_at: float | None) -> list[Observation]:
        inbox = self._inbox
        if not inbox.event.is_set():
            timeout = None if wake_at is None else max(0.0, wake_at - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inbox.event.wait(), timeout)
        return inbox.take()

    async def _record(self, plan: Plan) -> None:
        if self.store is None or not (plan.transitions or plan.run_changed):
            return
        run, attempts, events = record_plan(self.identity, self.state, plan.transitions)
        await self.store.write_batch(run, attempts, events)

    async def _abandon(self) -> None:
        """On an error in the loop, leave no process or task behind."""
        for attempt in list(self._running.values()):
            attempt.process.kill()
        waiters = [a.waiter for a in self._running.values()]
        if waiters:
            await asyncio.gather(*waiters, return_exceptions=True)
