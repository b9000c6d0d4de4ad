"""An attempt's stored phase is its outcome, never a guess from its message.

Covers, in every store (SQLite and Postgres, see conftest.py), a run driven
by the real planner: a retried attempt that failed with a message saying
"timed out" (``curl: (28) Connection timed out``) is stored Failed, a
retried attempt the planner timed out is stored TimedOut, and a last
attempt failing with such a message leaves the step Failed, in the run's
status and in history alike. Does not cover the runners (they only report
Failed or Succeeded; the timeout is the planner's decision).
"""

from __future__ import annotations

from tests.engine.simulator import T0, resolve

from szal.engine import AttemptRef, Launch, Observation, Planner, Stop, new_run_state
from szal.engine.phases import StepPhase
from szal.history.recording import RunIdentity, record_plan, record_start
from szal.history.store import ExecutionStore

CURL = "curl: (28) Connection timed out"

WORKFLOW = {
    "mode": "Sequential",
    "steps": [
        {
            "name": "fetch",
            "image": "curl",
            "command": ["curl", "https://example.invalid"],
            "timeout": "5s",
            "retries": {"limit": 2, "backoff": "Fixed", "delay": "1s"},
        }
    ],
}


async def test_failed_attempts_saying_timed_out_are_stored_failed(store: ExecutionStore) -> None:
    workflow = resolve(WORKFLOW)
    planner = Planner(workflow)
    state = new_run_state(workflow)
    identity = RunIdentity(uid="outcomes", name="outcomes", namespace="default", created_at=T0)
    definition, run_row = record_start(workflow, identity, state)
    await store.write_batch(run_row, workflows=[definition])

    ref = AttemptRef("fetch", 1)
    # Attempt 1 fails; its message happens to say "timed out".
    # Attempt 2 hangs until the planner's 5s timeout stops it.
    # Attempt 3 fails saying "timed out" again: the step ends Failed.
    script = {1: CURL, 2: None, 3: f"{CURL} (again)"}
    now = T0
    inbox: list[Observation] = []
    stops: list[Stop] = []
    for _ in range(20):
        plan = planner.plan(state, inbox, now)
        inbox = []
        run_row, attempts, events = record_plan(identity, state, plan.transitions)
        await store.write_batch(run_row, attempts, events)
        for action in plan.actions:
            if isinstance(action, Launch):
                ref = action.ref
                inbox.append(Observation(ref, "Running", now))
                message = script[ref.attempt]
                if message is not None:
                    inbox.append(Observation(ref, "Failed", now + 1, exit_code=28, message=message))
            else:
                stops.append(action)
        if state.phase.is_terminal:
            break
        if not inbox:
            assert plan.wake_at is not None
            now = plan.wake_at
        else:
            now = max(o.at for o in inbox)

    assert state.phase.is_terminal
    assert state.steps["fetch"].phase is StepPhase.FAILED
    assert [s.reason for s in stops] == ["timeout"]
    detail = await store.get_run("outcomes")
    assert detail is not None
    got = [(a.attempt, a.phase) for a in detail.attempts if not a.rollback]
    assert got == [(1, "Failed"), (2, "TimedOut"), (3, "Failed")]
    assert CURL in (detail.attempts[0].message or "")
    assert detail.run.phase == "Failed"
