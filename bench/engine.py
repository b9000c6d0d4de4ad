"""Engine overhead benchmark (a script, not a test): ``python -m bench.engine``.

Drives the planner to completion with a no-op simulated executor that, like
an event-driven operator, feeds back ONE observation per plan call: each
launched attempt completes (Succeeded) in launch order. Shapes: Sequential
mode, Parallel mode (every step launched at once), a Dag chain, a
fan-out/fan-in (one root, N parallel steps, one join) and a random DAG (each
step depends on up to 3 earlier steps), and matrices (a root, one matrix of
1,000 instances, or ten of them, and a join; uncapped, and each matrix with
its own ``maxParallel: 10``), at 1,000 and at the full size, to
show the cost per step stays flat (linear total). The time measured is the
whole drive loop (planner calls plus the executor's bookkeeping), divided by
the number of steps; resolving the workflow is timed separately, and so is
compiling it (once per workflow); attaching the run's state is timed.

Also times a 3-clause condition: evaluation of a compiled (cached)
condition, and compiling it afresh each time (cache cleared).

Issue 2's targets: <= 20 µs per step on every shape, 1k vs 10k within 2x,
cached condition <= 2 µs. The seed's Rust engine: 27.5 µs per step
(2.75 ms for a 100-step chain); measured per shape for issue 11: 0.5 µs/step
Sequential, 1.5 Parallel, 2-9 fan-out/fan-in, 12-16 Dag chain
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections import deque
from typing import Any

from szal.dsl import compile_condition
from szal.engine import (
    Launch,
    Observation,
    ResolvedWorkflow,
    compile_workflow,
    new_run_state,
    resolve_workflow,
)
from szal.spec import WorkflowSpec

SEED_RUST_US_PER_STEP = 27.5
TARGET_US_PER_STEP = 20.0


def chain(n: int) -> dict[str, Any]:
    steps = [{"name": "s0", "command": ["true"]}]
    steps += [
        {"name": f"s{i}", "command": ["true"], "dependsOn": [f"s{i - 1}"]} for i in range(1, n)
    ]
    return {"mode": "Dag", "steps": steps}


def sequential(n: int) -> dict[str, Any]:
    return {
        "mode": "Sequential",
        "steps": [{"name": f"s{i}", "command": ["true"]} for i in range(n)],
    }


def parallel(n: int) -> dict[str, Any]:
    return {"mode": "Parallel", "steps": [{"name": f"s{i}", "command": ["true"]} for i in range(n)]}


def fan(n: int) -> dict[str, Any]:
    width = n - 2
    steps = [{"name": "root", "command": ["true"]}]
    steps += [{"name": f"w{i}", "command": ["true"], "dependsOn": ["root"]} for i in range(width)]
    steps.append(
        {"name": "join", "command": ["true"], "dependsOn": [f"w{i}" for i in range(width)]}
    )
    return {"mode": "Dag", "steps": steps}


def random_dag(n: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    steps: list[dict[str, Any]] = []
    for i in range(n):
        deps = sorted({f"s{rng.randrange(i)}" for _ in range(rng.randint(0, 3))}) if i else []
        steps.append({"name": f"s{i}", "command": ["true"], "dependsOn": deps})
    return {"mode": "Dag", "steps": steps}


def matrices(n: int, limit: int | None = None) -> dict[str, Any]:
    """A Dag: a root, ``n // 1000`` matrices of 1,000 instances each (or one of ``n``), a join.

    ``limit`` sets every matrix's own ``maxParallel``.
    """
    count, width = (n // 1000, 1000) if n >= 1000 else (1, n)
    matrix: dict[str, Any] = {"params": {"x": list(range(width))}}
    if limit is not None:
        matrix["maxParallel"] = limit
    steps: list[dict[str, Any]] = [{"name": "root", "command": ["true"]}]
    steps += [
        {"name": f"m{k}", "command": ["true"], "dependsOn": ["root"], "matrix": matrix}
        for k in range(count)
    ]
    steps.append(
        {"name": "join", "command": ["true"], "dependsOn": [f"m{k}" for k in range(count)]}
    )
    return {"mode": "Dag", "steps": steps}


def matrices_capped(n: int) -> dict[str, Any]:
    """:func:`matrices` with each matrix's own ``maxParallel: 10``."""
    return matrices(n, limit=10)


def drive(workflow: ResolvedWorkflow) -> tuple[float, int]:
    """Run to completion, one observation per plan call; return (seconds, plan calls)."""
    compiled = compile_workflow(workflow)  # once per workflow: not part of a run's cost
    state = new_run_state(workflow)
    inflight: deque[Observation] = deque()
    now = 1_800_000_000.0
    calls = 0
    gc.collect()
    start = time.perf_counter()
    session = compiled.attach(state)  # indexing the state is
    observations: list[Observation] = []
    while True:
        plan = session.plan(observations, now)
        calls += 1
        for action in plan.actions:
            if isinstance(action, Launch):
                inflight.append(Observation(action.ref, "Succeeded", now, exit_code=0))
        if state.phase.is_terminal or not inflight:
            break
        now += 0.001
        observations = [inflight.popleft()]
    elapsed = time.perf_counter() - start
    assert state.phase.value == "Succeeded", state.phase
    assert state.finished_count == len(workflow.steps)
    return elapsed, calls


def bench_shape(name: str, build: Any, n: int, repeat: int) -> float:
    data = build(n)
    t0 = time.perf_counter()
    workflow = resolve_workflow(WorkflowSpec.model_validate(data), name=name, params={})
    resolve_s = time.perf_counter() - t0
    best = min(drive(workflow)[0] for _ in range(repeat))
    n = len(workflow.steps)  # a matrix's instances are steps (and its fan-out step)
    per_step = best / n * 1e6
    print(
        f"{name:<18} {n:>6} steps  {per_step:7.2f} µs/step  "
        f"(run {best * 1e3:8.1f} ms; validate+resolve {resolve_s * 1e3:7.1f} ms)"
    )
    return per_step


def bench_condition(iterations: int) -> tuple[float, float]:
    source = "params.env == 'prod' && steps.test.exitCode == 0 || steps.build.outputs.force == true"
    context = {
        "params": {"env": "prod"},
        "steps": {
            "test": {"phase": "Succeeded", "exitCode": 0, "attempts": 1, "outputs": {}},
            "build": {
                "phase": "Succeeded",
                "exitCode": 0,
                "attempts": 1,
                "outputs": {"force": True},
            },
        },
        "run": {"name": "r", "namespace": ""},
    }
    condition = compile_condition(source)
    assert condition is not None and condition.evaluate(context)
    start = time.perf_counter()
    for _ in range(iterations):
        condition.evaluate(context)
    cached = (time.perf_counter() - start) / iterations * 1e6
    cache_clear = getattr(compile_condition, "cache_clear", None)
    rounds = max(1, iterations // 100)
    start = time.perf_counter()
    for _ in range(rounds):
        if cache_clear is not None:
            cache_clear()
        fresh = compile_condition(source)
        assert fresh is not None
        fresh.evaluate(context)
    uncached = (time.perf_counter() - start) / rounds * 1e6
    return cached, uncached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per shape; the best counts")
    parser.add_argument("--small", type=int, default=1_000, help="the small size")
    parser.add_argument(
        "--only", default="", help="run only the shapes whose name contains this text"
    )
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}; seed Rust engine {SEED_RUST_US_PER_STEP} µs/step")
    shapes = [
        ("Sequential", sequential, 10_000),
        ("Parallel", parallel, 10_000),
        ("chain (Dag)", chain, 10_000),
        ("fan-out/fan-in", fan, 10_000),
        ("random DAG", random_dag, 5_000),
        ("matrix 1,000 each", matrices, 10_000),
        ("matrix, maxPar 10", matrices_capped, 10_000),
    ]
    ok = True
    for name, build, big in shapes:
        if args.only not in name:
            continue
        small = bench_shape(name, build, args.small, args.repeat)
        large = bench_shape(name, build, big, args.repeat)
        ratio = large / small
        verdict = "ok" if large <= TARGET_US_PER_STEP and ratio <= 2.0 else "MISSED"
        ok = ok and verdict == "ok"
        print(f"{'':<18} large/small per-step ratio {ratio:.2f}  [{verdict}]")
    cached, uncached = bench_condition(200_000)
    verdict = "ok" if cached <= 2.0 else "MISSED"
    ok = ok and verdict == "ok"
    print(f"condition (3 clauses): cached {cached:.2f} µs, uncached {uncached:.1f} µs  [{verdict}]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
