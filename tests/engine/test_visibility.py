"""Which steps a step's context covers (``szal.engine.visibility``, issue 12).

Covers: the visible sets agree with validation's rule for ``when``
(``checks._certainly_before``) on every pair of steps of random
Hierarchical trees with every group mode and random Dag edges (property
test); the sets stay compact for 5,000-step Parallel, Sequential and Dag
chain runs (shared tuples, one range per step); ``SZAL_CONTEXT`` of a
Parallel step names no other step, of a Dag step only its upstream, of a
compensation also its own step.

Not covered: delivering a long context as a file (``test_context_delivery``
in tests/local and tests/kubernetes/test_pods.py).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.engine.simulator import Outcome, Simulator, by_step, resolve, spec_of

from szal.engine import compile_workflow, deliver_context, step_environment
from szal.engine.checks import _certainly_before, _walk
from szal.engine.environment import CONTEXT_ENV_LIMIT, visible_steps
from szal.engine.visibility import merge_ranges

MODES = ["Sequential", "Parallel", "Dag"]


@st.composite
def trees(draw: st.DrawFn) -> dict[str, Any]:
    counter = [0]

    def group(depth: int, mode: str) -> list[dict[str, Any]]:
        size = draw(st.integers(1, 4))
        steps: list[dict[str, Any]] = []
        for k in range(size):
            counter[0] += 1
            step: dict[str, Any] = {"name": f"s{counter[0]}", "command": ["true"]}
            if mode == "Dag" and k:
                earlier = [s["name"] for s in steps]
                deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3))
                if deps:
                    step["dependsOn"] = deps
            if depth < 2 and draw(st.booleans()):
                child_mode = draw(st.sampled_from(MODES))
                step["mode"] = child_mode
                step["steps"] = group(depth + 1, child_mode)
            steps.append(step)
        return steps

    top = draw(st.sampled_from([*MODES, "Hierarchical"]))
    if top == "Hierarchical":
        return {"mode": top, "steps": group(0, "Sequential")}
    counter[0] = 0
    flat = group(2, top)  # nesting is Hierarchical only
    return {"mode": top, "steps": flat}


@settings(max_examples=200, deadline=None)
@given(trees())
def test_visible_sets_are_what_when_may_name(data: dict[str, Any]) -> None:
    spec = spec_of(data)
    compiled = compile_workflow(resolve(data))
    nodes = _walk(spec)
    assert [n.step.name for n in nodes] == list(compiled.names)
    for i, node in enumerate(nodes):
        seen = {k for r in compiled.visible[i] for k in r}
        expected = {k for k, target in enumerate(nodes) if _certainly_before(target, node)}
        assert seen == expected, (node.step.name, data)


def _wide(mode: str, n: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"name": f"s{i}", "command": ["true"]} for i in range(n)]
    if mode == "Dag":
        for i in range(1, n):
            steps[i]["dependsOn"] = [f"s{i - 1}"]
    return {"mode": mode, "steps": steps}


def test_sets_stay_compact_for_5000_steps() -> None:
    parallel = compile_workflow(resolve(_wide("Parallel", 5000)))
    assert all(v == () for v in parallel.visible)
    assert len({id(v) for v in parallel.visible}) == 1  # one shared tuple
    for mode in ("Sequential", "Dag"):
        compiled = compile_workflow(resolve(_wide(mode, 5000)))
        assert compiled.visible[0] == ()
        assert all(len(v) == 1 for v in compiled.visible[1:])
        assert compiled.visible[4999] == (range(0, 4999),)


def test_merge_ranges() -> None:
    assert merge_ranges([(5, 7), (0, 2), (2, 3), (6, 9), (4, 4)]) == [(0, 3), (5, 9)]


def test_parallel_step_context_names_no_step() -> None:
    wf = resolve({"mode": "Parallel", "maxParallel": 1, "steps": [
        {"name": "a", "command": ["true"]},
        {"name": "b", "command": ["true"]},
    ]})  # fmt: skip
    sim = Simulator(wf, by_step({"a": Outcome(outputs={"k": "v"})}))
    sim.plan()
    sim.advance(None)
    sim.plan()  # a finished, b launched
    env = step_environment(sim.compiled, sim.state, "b", 1, run_name="r")
    assert json.loads(env["SZAL_CONTEXT"])["steps"] == {}


def test_dag_step_sees_its_upstream_and_a_compensation_its_step() -> None:
    wf = resolve({"mode": "Dag", "maxParallel": 1, "steps": [
        {"name": "a", "command": ["true"]},
        {"name": "side", "command": ["true"]},
        {"name": "b", "command": ["true"], "dependsOn": ["a"],
         "rollback": {"command": ["undo"]}},
    ]})  # fmt: skip
    sim = Simulator(wf, by_step({"a": Outcome(outputs={"k": 1}), "b": Outcome(outputs={"id": 7})}))
    sim.run()
    assert visible_steps(sim.compiled, "b") == [0]
    env = step_environment(sim.compiled, sim.state, "b", 1, run_name="r")
    assert set(json.loads(env["SZAL_CONTEXT"])["steps"]) == {"a"}
    undo = step_environment(sim.compiled, sim.state, "b", 1, run_name="r", rollback=True)
    steps = json.loads(undo["SZAL_CONTEXT"])["steps"]
    assert set(steps) == {"a", "b"} and steps["b"]["outputs"] == {"id": 7}


def test_long_context_goes_as_a_file() -> None:
    small = {"SZAL_CONTEXT": "x" * CONTEXT_ENV_LIMIT, "A": "1"}
    assert deliver_context(small, "/p/context.json") == (small, None)
    big = {"SZAL_CONTEXT": "é" * (CONTEXT_ENV_LIMIT // 2 + 1), "A": "1"}  # bytes, not chars
    env, text = deliver_context(big, "/p/context.json")
    assert env == {"A": "1", "SZAL_CONTEXT_FILE": "/p/context.json"}
    assert text == big["SZAL_CONTEXT"]
