"""Property tests: the planner over random workflows, failures, timeouts, restarts.

Hypothesis draws a workflow (a random DAG, or Sequential / Parallel /
Hierarchical shapes) with random retries, timeouts, triggers, conditions,
compensations and matrices (a step fanned out to instances), and sometimes
finally steps (a Dag of their own in Dag mode, conditions on ``run.phase``
and main steps), a random outcome for every attempt (success, failure,
hang), random suspend windows, an optional cancel (sometimes skipping the
finally steps), and random restart points (status saved ->
RunState.from_status -> attached to the compiled workflow (a new session)
-> every known observation again, sometimes from the status saved one call
earlier). The simulated executor carries it out in virtual time. Invariants:

* no step starts before its dependencies are done (Dag All / Any,
  Sequential predecessor, Hierarchical parent; a matrix dependency is done
  when all its instances are);
* a matrix never has more instances running than its own maxParallel;
* attempts never exceed limit + 1;
* every run reaches a terminal phase with every step terminal;
* compensations run one at a time, in reverse order of completion, for
  exactly the Succeeded steps that have one;
* the run succeeded iff no step Failed or TimedOut (cancel aside);
* re-planning from a saved status never launches an attempt twice;
* a finally step starts only after every main step and every compensation
  ended, and runs unless the cancel skipped the finally steps.

And one equivalence: a session attached afresh to the saved status before
every call decides exactly what one long-lived session decides (same
actions in the same order, same statuses; transitions of one call compared
as a set).

Deliberately not: exact timestamps or messages (unit tests pin those).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.engine.simulator import Outcome, Simulator, resolve

from szal.engine import Launch, Plan, RunPhase, RunState, StepPhase

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(st.sampled_from(["Dag", "Dag", "Sequential", "Parallel", "Hierarchical"]))
    n = draw(st.integers(1, 10))
    names = [f"s{i}" for i in range(n)]
    has_deadline = draw(st.booleans())

    def make_step(i: int, deps: list[str], upstream: list[str]) -> dict[str, Any]:
        s: dict[str, Any] = {"name": names[i], "command": ["run", names[i]]}
        if deps:
            s["dependsOn"] = deps
            if draw(st.booleans()):
                s["trigger"] = draw(st.sampled_from(["All", "Any"]))
        if draw(st.integers(0, 3)) == 0:
            s["retries"] = {
                "limit": draw(st.integers(0, 2)),
                "backoff": draw(st.sampled_from(["Fixed", "Linear", "Exponential"])),
                "delay": draw(st.sampled_from(["0s", "1s", "2500ms"])),
            }
        if draw(st.integers(0, 2)) == 0:
            s["timeout"] = draw(st.sampled_from(["2s", "5s"]))
        if draw(st.booleans()):
            s["rollback"] = {"command": ["undo", names[i]]}
        if upstream and draw(st.integers(0, 3)) == 0:
            ref = draw(st.sampled_from(upstream))
            s["when"] = f"steps.{ref}.exitCode == 0 || steps.{ref}.phase == 'Skipped'"
        if draw(st.integers(0, 3)) == 0:
            # A matrix: its instances fan out as s<i>-0, s<i>-1, ...
            matrix: dict[str, Any] = {"params": {"x": list(range(draw(st.integers(1, 4))))}}
            if draw(st.booleans()):
                matrix["maxParallel"] = draw(st.integers(1, 2))
            if draw(st.booleans()):
                matrix["include"] = [{"x": 9}]
            s["matrix"] = matrix
        return s

    steps: list[dict[str, Any]] = []
    if mode == "Dag":
        ancestors: list[set[str]] = []
        for i in range(n):
            deps = sorted(set(draw(st.lists(st.sampled_from(names[:i]), max_size=3)))) if i else []
            up: set[str] = set(deps)
            for d in deps:
                up |= ancestors[int(d[1:])]
            ancestors.append(up)
            steps.append(make_step(i, deps, sorted(up)))
    elif mode == "Hierarchical":
        # A random forest: step i's parent is an earlier step or none.
        children: dict[int, list[dict[str, Any]]] = {}
        top: list[dict[str, Any]] = []
        child_modes = {}
        for i in range(n):
            parent = draw(st.integers(-1, i - 1)) if i else -1
            s = make_step(i, [], [])
            (children.setdefault(parent, []) if parent >= 0 else top).append(s)
            child_modes[i] = draw(st.sampled_from(["Sequential", "Parallel"]))
        for i in range(n):
            kids = children.get(i)
            if kids:
                node = next(s for s in _walk(top) if s["name"] == names[i])
                node["steps"] = kids
                node["mode"] = child_modes[i]
                node.pop("matrix", None)  # a matrix step has no children
        steps = top
    else:
        for i in range(n):
            upstream = names[:i] if mode == "Sequential" else []
            steps.append(make_step(i, [], upstream))
    spec: dict[str, Any] = {
        "mode": mode,
        "steps": steps,
        "failFast": draw(st.booleans()),
        "rollbackOnFailure": draw(st.booleans()),
    }
    finals: list[dict[str, Any]] = []
    for i in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):
        f: dict[str, Any] = {"name": f"f{i}", "command": ["final", str(i)]}
        if mode == "Dag" and i and draw(st.booleans()):
            f["dependsOn"] = sorted(
                set(
                    draw(
                        st.lists(
                            st.sampled_from([g["name"] for g in finals]), min_size=1, max_size=2
                        )
                    )
                )
            )
        if draw(st.integers(0, 3)) == 0:
            f["retries"] = {"limit": draw(st.integers(0, 2)), "delay": "1s"}
        if draw(st.integers(0, 2)) == 0:
            f["timeout"] = "2s"
        if draw(st.integers(0, 2)) == 0:
            f["when"] = draw(
                st.sampled_from(
                    [
                        "run.phase == 'Failed' || run.phase == 'RolledBack'",
                        "run.phase != 'Cancelled'",
                        f"'{names[0]}' in run.failedSteps",
                        f"steps.{names[-1]}.phase == 'Succeeded'",
                    ]
                )
            )
        finals.append(f)
    if finals:
        spec["finally"] = finals
    if draw(st.booleans()):
        spec["maxParallel"] = draw(st.integers(1, 3))
    if has_deadline:
        spec["timeout"] = draw(st.sampled_from(["7s", "30s"]))
    return spec


def _walk(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    todo = list(steps)
    while todo:
        s = todo.pop()
        out.append(s)
        todo.extend(s.get("steps", []))
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    spec = draw(workflows())
    outcomes = {}
    for s in _walk(spec["steps"]) + spec.get("finally", []):
        # spec.timeout does not bound finally steps: only their own timeout does.
        can_hang = "timeout" in s or ("timeout" in spec and not s["name"].startswith("f"))
        kinds = ["Succeeded", "Succeeded", "Failed"] + (["Hang"] if can_hang else [])
        matrix = s.get("matrix")
        count = len(matrix["params"]["x"]) + len(matrix.get("include", [])) if matrix else 0
        for name in [s["name"], *(f"{s['name']}-{k}" for k in range(count))]:
            outcomes[name] = [
                Outcome(draw(st.sampled_from(kinds)), draw(st.sampled_from([0.5, 1.0, 3.0])))
                for _ in range(3)
            ]
    comp_fail = draw(st.sets(st.sampled_from(sorted(outcomes))))
    return {
        "spec": spec,
        "outcomes": outcomes,
        "comp_fail": comp_fail,
        "restarts": draw(st.sets(st.integers(1, 40), max_size=4)),
        "stale": draw(st.booleans()),
        "suspend": draw(st.sets(st.integers(0, 30), max_size=5)),
        "cancel_at": draw(st.one_of(st.none(), st.integers(1, 40))),
        "skip_finally": draw(st.booleans()),
    }


def check_ready(sim: Simulator, plan: Plan) -> None:
    wf = sim.workflow
    recs = sim.state.steps
    for action in plan.actions:
        if not isinstance(action, Launch) or action.ref.rollback or action.ref.attempt != 1:
            continue
        step = wf.by_name[action.ref.step]
        if step.parent is not None:
            assert recs[step.parent].phase is StepPhase.SUCCEEDED
        if step.depends_on:
            # A matrix dependency is done when all its instances are.
            done = [
                all(recs[n].phase.is_terminal for n in _subtree(wf, d)) for d in step.depends_on
            ]
            if step.trigger == "Any":
                assert any(recs[d].phase is StepPhase.SUCCEEDED for d in step.depends_on)
            else:
                assert all(done)
        siblings = (
            wf.by_name[step.parent].children
            if step.parent
            else tuple(s.name for s in wf.steps if s.parent is None)
        )
        if step.group_mode in ("Sequential", "Hierarchical"):
            position = siblings.index(step.name)
            for earlier in siblings[:position]:
                assert all(recs[n].phase.is_terminal for n in _subtree(wf, earlier))
    for fan_out in wf.steps:
        limit = fan_out.matrix_max_parallel
        if limit is not None:
            running = [c for c in fan_out.children if recs[c].phase is StepPhase.RUNNING]
            assert len(running) <= limit, (fan_out.name, running)
    running_comps = [
        r for r in recs.values() if r.rollback and r.rollback.phase is StepPhase.RUNNING
    ]
    assert len(running_comps) <= 1
    for action in plan.actions:
        if isinstance(action, Launch) and wf.by_name[action.ref.step].final:
            assert action.ref.attempt > 1 or all(
                recs[s.name].phase.is_terminal for s in wf.steps if not s.final
            )
            assert all(r.rollback is None or r.rollback.phase.is_terminal for r in recs.values())


def _subtree(wf: Any, name: str) -> list[str]:
    out = [name]
    for child in wf.by_name[name].children:
        out += _subtree(wf, child)
    return out


def simulator(wf: Any, scenario: dict[str, Any]) -> Simulator:
    """A simulator playing the scenario's outcomes (compensations: ``comp_fail`` fail)."""
    outcomes = scenario["outcomes"]

    def script(ref: Any) -> Outcome:
        table = outcomes[ref.step]
        return table[min(ref.attempt, len(table)) - 1]

    def comp_script(ref: Any) -> Outcome:
        return Outcome("Failed" if ref.step in scenario["comp_fail"] else "Succeeded")

    return Simulator(wf, script, rollback_script=comp_script)


@SETTINGS
@given(scenarios())
def test_planner_invariants(scenario: dict[str, Any]) -> None:
    wf = resolve(scenario["spec"])
    sim = simulator(wf, scenario)
    for call in range(2000):
        if call in scenario["restarts"]:
            sim.restart(stale=scenario["stale"])
        sim.suspend = call in scenario["suspend"]
        sim.cancel = scenario["cancel_at"] is not None and call >= scenario["cancel_at"]
        sim.skip_finally = sim.cancel and scenario["skip_finally"]
        plan = sim.plan()
        check_ready(sim, plan)
        if sim.state.phase.is_terminal:
            break
        if not sim.advance(plan.wake_at) and not sim.suspend:
            raise AssertionError(f"stuck in {sim.state.phase}: {sim.state.to_status()}")
    else:
        raise AssertionError("run did not finish")

    state = sim.state
    assert state.phase.is_terminal
    assert all(r.phase.is_terminal for r in state.steps.values())
    assert state.finished_count == len(wf.steps)
    for ref in sim.launched:
        if not ref.rollback:
            assert ref.attempt <= wf.by_name[ref.step].retries.limit + 1
    for name, rec in state.steps.items():
        assert rec.attempts <= wf.by_name[name].retries.limit + 1
        if rec.phase is StepPhase.SKIPPED:
            assert rec.attempts == 0
    failed = any(r.phase in (StepPhase.FAILED, StepPhase.TIMED_OUT) for r in state.steps.values())
    if state.phase is RunPhase.SUCCEEDED:
        assert not failed
    if state.phase in (RunPhase.ROLLED_BACK,) or (
        state.phase is RunPhase.FAILED and state.reason is None and failed
    ):
        assert failed
    comps = [ref.step for ref in sim.launched if ref.rollback]
    if comps:
        assert wf.rollback_on_failure and failed
        expected = sorted(
            (
                n
                for n, r in state.steps.items()
                if r.phase is StepPhase.SUCCEEDED and wf.by_name[n].rollback is not None
            ),
            key=lambda n: -(state.steps[n].finish_order or 0),
        )
        if state.reason == "Cancelled":  # cancelled while rolling back: a prefix ran
            assert comps == expected[: len(comps)]
        else:
            assert comps == expected
    elif state.phase is RunPhase.FAILED and wf.rollback_on_failure and state.reason is None:
        assert (
            not any(
                r.phase is StepPhase.SUCCEEDED and wf.by_name[n].rollback is not None
                for n, r in state.steps.items()
            )
            or "cancelled" in (state.message or "")
            or "finally step" in (state.message or "")
        )
    assert len(set(sim.launched)) == len(sim.launched)
    skipped = scenario["cancel_at"] is not None and scenario["skip_finally"]
    for step in wf.steps:
        rec = state.steps[step.name]
        assert rec.final is step.final
        if step.final and not skipped and state.started_at is not None:
            assert rec.phase is not StepPhase.CANCELLED, (step.name, state.to_status())


def same_decisions(a: Plan, b: Plan) -> bool:
    """Equal plans, except that the order of transitions within one call is free.

    (A step found skippable by a restarted session may be skipped a moment
    earlier in the same call than by a session that queued it before.)
    """
    return (
        a.actions == b.actions
        and sorted(a.transitions, key=repr) == sorted(b.transitions, key=repr)
        and (a.wake_at, a.changed_steps, a.run_changed)
        == (b.wake_at, b.changed_steps, b.run_changed)
    )


@SETTINGS
@given(scenarios())
def test_reattaching_the_saved_status_gives_the_same_decisions(scenario: dict[str, Any]) -> None:
    """One session for the whole run vs a new session attached before every call.

    The second simulator reads its state back from the status it saved
    (``RunState.from_status``) and attaches it to the same compiled
    workflow before each plan call, as a runner restarted at every plan
    boundary would (fed only the new observations: its state is already
    up to date). Every plan and every saved status must be identical.
    """
    wf = resolve(scenario["spec"])
    kept, fresh = simulator(wf, scenario), simulator(wf, scenario)
    for call in range(2000):
        if fresh.saved_status is not None:
            fresh.state = RunState.from_status(fresh.saved_status)
            fresh.session = fresh.compiled.attach(fresh.state)
        for sim in (kept, fresh):
            sim.suspend = call in scenario["suspend"]
            sim.cancel = scenario["cancel_at"] is not None and call >= scenario["cancel_at"]
            sim.skip_finally = sim.cancel and scenario["skip_finally"]
        plan = kept.plan()
        assert same_decisions(fresh.plan(), plan), f"call {call}"
        assert fresh.saved_status == kept.saved_status, f"call {call}"
        if kept.state.phase.is_terminal:
            break
        moved = kept.advance(plan.wake_at)
        assert fresh.advance(plan.wake_at) == moved
        if not moved and not kept.suspend:
            break
    assert kept.state.phase.is_terminal or kept.suspend
