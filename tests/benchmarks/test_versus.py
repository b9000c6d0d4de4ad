"""The pure parts of bench.versus: workloads, the floor's plan, statistics, the table.

The manifests each engine gets are checked the way each engine would: Szál's
through ``szal validate``'s own code (``validate_file``), Argo's for the
structure its controller needs (every step's template exists, every
dependency is a task, names unique and DNS-safe). e2e/test_versus.py sends
Argo's to a real API server with Argo's CRDs installed (server-side dry-run).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench import versus_workloads as w

from szal.cli.loading import validate_file

SIZES = [w.Sizes(), w.Sizes.quick()]


def _szal_docs(sizes: w.Sizes) -> list[dict[str, Any]]:
    chain = w.chain_steps(sizes.chain)
    dag, _ = w.dag_steps(sizes.dag, sizes.max_parallel)
    return [
        w.szal_workflow("chain", chain, 1.0, dag=False),
        w.szal_run("chain", "chain"),
        w.szal_workflow("dag", dag, 2.0, dag=True, max_parallel=sizes.max_parallel),
        w.szal_run("dag", "dag"),
        w.szal_workflow("one", [w.Step("only")], 1.0, dag=False),
        w.szal_run("b000", "one"),
    ]


@pytest.mark.parametrize("sizes", SIZES)
def test_szal_manifests_pass_szal_validate(tmp_path: Path, sizes: w.Sizes) -> None:
    path = tmp_path / "versus.yaml"
    path.write_text(yaml.safe_dump_all(_szal_docs(sizes)))
    assert validate_file(str(path)) == []


def test_szal_validate_would_catch_a_broken_workload(tmp_path: Path) -> None:
    broken = w.szal_workflow("dag", [w.Step("a", ("missing",))], 1.0, dag=True, max_parallel=5)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    problems = validate_file(str(path))
    assert problems and "missing" in problems[0]


DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_argo(wf: dict[str, Any], steps: list[w.Step]) -> None:
    assert wf["apiVersion"] == "argoproj.io/v1alpha1" and wf["kind"] == "Workflow"
    spec = wf["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    assert len(templates) == len(spec["templates"])
    main = templates[spec["entrypoint"]]
    for t in templates.values():
        kinds = [k for k in ("container", "steps", "dag") if k in t]
        assert len(kinds) == 1, t["name"]
        if "container" in t:
            assert t["metadata"]["annotations"][w.SIM].endswith("s")
    if "dag" in main:
        tasks = main["dag"]["tasks"]
        names = [t["name"] for t in tasks]
        assert names == [s.name for s in steps]
        for t in tasks:
            assert t["template"] in templates and DNS.match(t["name"])
            assert set(t.get("dependencies", ())) <= set(names)
    elif "steps" in main:
        groups = main["steps"]
        assert [g[0]["name"] for g in groups] == [s.name for s in steps]
        assert all(len(g) == 1 and g[0]["template"] in templates for g in groups)
    else:
        assert len(steps) == 1


@pytest.mark.parametrize("sizes", SIZES)
def test_argo_manifests_are_well_formed(sizes: w.Sizes) -> None:
    chain = w.chain_steps(sizes.chain)
    _check_argo(w.argo_workflow("chain", chain, 1.0, dag=False), chain)
    dag, _ = w.dag_steps(sizes.dag, sizes.max_parallel)
    wf = w.argo_workflow("dag", dag, 2.0, dag=True, max_parallel=sizes.max_parallel)
    _check_argo(wf, dag)
    assert wf["spec"]["parallelism"] == sizes.max_parallel
    one = w.argo_workflow("b001", [w.Step("only")], 1.0, dag=False)
    _check_argo(one, [w.Step("only")])
    assert one["spec"]["templates"][0]["metadata"]["annotations"][w.SIM] == "1s"


def test_the_three_spellings_run_the_same_dag() -> None:
    dag, _ = w.dag_steps(200, 50)
    szal = w.szal_workflow("dag", dag, 2.0, dag=True, max_parallel=50)["spec"]
    argo = w.argo_workflow("dag", dag, 2.0, dag=True, max_parallel=50)["spec"]
    szal_deps = {s["name"]: sorted(s.get("dependsOn", [])) for s in szal["steps"]}
    argo_deps = {
        t["name"]: sorted(t.get("dependencies", [])) for t in argo["templates"][0]["dag"]["tasks"]
    }
    assert szal_deps == argo_deps == {s.name: sorted(s.after) for s in dag}
    assert len(dag) == 200 and sum(1 for s in dag if not s.after) == 20


def test_argo_pods_are_told_apart_by_node_name() -> None:
    def pod(node: str | None, wf: str | None = "chain") -> dict[str, Any]:
        return {
            "metadata": {
                "labels": {w.ARGO_WORKFLOW_LABEL: wf} if wf else {},
                "annotations": {w.ARGO_NODE_NAME: node} if node else {},
            }
        }

    assert w.argo_step_of(pod("chain[3].s003")) == ("chain", "s003")
    assert w.argo_step_of(pod("dag.d042", "dag")) == ("dag", "d042")
    assert w.argo_step_of(pod("b007", "b007")) == ("b007", "b007")
    assert w.argo_step_of(pod(None)) is None
    assert w.argo_step_of(pod("x.y", None)) is None


def test_floor_pod_is_a_bare_kwok_pod() -> None:
    p = w.floor_pod("dag", "d007", 2.0)
    assert p["metadata"]["name"] == "dag-d007"
    assert p["metadata"]["annotations"] == {w.SIM: "2s"}
    assert p["spec"]["restartPolicy"] == "Never"
    assert p["metadata"]["labels"] == {w.FLOOR_RUN: "dag", w.FLOOR_STEP: "d007"}


def test_floor_follows_the_planner_policy() -> None:
    steps = [w.Step("a"), w.Step("b"), w.Step("c", ("a",)), w.Step("d", ("a", "b"))]
    assert w.floor_ready(steps, set(), set(), 0, 0) == ["a", "b"]
    assert w.floor_ready(steps, set(), set(), 0, 1) == ["a"]
    assert w.floor_ready(steps, {"a"}, {"a", "b"}, 1, 2) == ["c"]
    assert w.floor_ready(steps, {"a", "b"}, {"a", "b"}, 0, 0) == ["c", "d"]


def test_floor_schedule_simulated_matches_the_ideal_makespan() -> None:
    """Driving floor_ready with zero overhead gives bench.operator's ideal schedule."""
    dag, ideal = w.dag_steps(200, 50)
    done: set[str] = set()
    started: set[str] = set()
    running: list[tuple[float, str]] = []
    clock = 0.0
    while len(done) < len(dag):
        for name in w.floor_ready(dag, done, started, len(running), 50):
            started.add(name)
            running.append((clock + 1.0, name))
        running.sort()
        clock, first = running.pop(0)
        done.add(first)
        while running and running[0][0] <= clock:
            done.add(running.pop(0)[1])
    assert clock == ideal


def test_summary_and_hops() -> None:
    s = w.summary([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["p50"] == 3.0 and s["max"] == 100.0 and s["n"] == 5
    assert s["p99"] == pytest.approx(96.16)
    assert w.summary([]) == {}
    steps = [w.Step("a"), w.Step("b", ("a",)), w.Step("c", ("a", "b")), w.Step("d", ("x",))]
    times = {"a": (0.0, 1.0), "b": (1.010, 2.0), "c": (2.050, None), "d": (5.0, None)}
    assert w.hops(steps, times) == pytest.approx([10.0, 50.0])


def test_ratio_is_times_worse() -> None:
    assert w.ratio(200.0, 10.0, True) == 20.0  # ms: 20x slower
    assert w.ratio(500.0, 1000.0, False) == 2.0  # runs/min: half the throughput
    assert w.ratio(None, 1.0, True) is None and w.ratio(1.0, 0.0, True) is None


def test_table_has_every_column_and_skips_empty_measures() -> None:
    figures: dict[str, dict[str, float | None]] = {
        "argo_default": {"hop_p50_ms": 9000.0, "burst_runs_per_min": 300.0},
        "argo_tuned": {"hop_p50_ms": 1000.0, "burst_runs_per_min": 600.0},
        "szal": {"hop_p50_ms": 9.0, "burst_runs_per_min": 1500.0, "cpu_s": 12.5},
        "floor": {"hop_p50_ms": 4.5, "burst_runs_per_min": 3000.0, "cpu_s": None},
    }
    table = w.render_table(figures)
    lines = table.splitlines()
    assert (
        lines[0].startswith("| measure") and "Argo default" in lines[0] and "Szál/floor" in lines[0]
    )
    assert set(lines[1]) <= {"|", "-", " "}
    hop = next(line for line in lines if line.startswith("| hop p50"))
    assert "9,000" in hop and "1000.00x" in hop and "111.11x" in hop and "2.00x" in hop
    burst = next(line for line in lines if "burst throughput" in line)
    assert "5.00x" in burst and "2.50x" in burst and "2.00x" in burst
    cpu = next(line for line in lines if "controller CPU" in line)
    assert cpu.count(" - ") >= 3
    assert not any("hop p99" in line for line in lines)
    assert len({len(line) for line in lines}) == 1
