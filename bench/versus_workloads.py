"""The pure half of ``bench.versus``: workloads, statistics and the table.

``bench.versus`` runs the same workloads through Szál, through Argo
Workflows' workflow-controller and as bare pods (the floor). Everything here
is free of I/O so ``tests/benchmarks`` can check it fast: the manifests each
engine gets for each workload, the floor's plan (which pod to create when),
the summary statistics and the rendered table.

Decisions:

* One workload, three spellings. The chain and the DAG are generated once
  (``bench.operator``'s generators, so ``bench.operator`` and this benchmark
  measure the same DAG) and then written as a Szál Workflow, an Argo
  Workflow (``steps`` for the chain, ``dag`` for the DAG) and a list of pods
  with their dependencies for the floor.
* Every pod of every engine carries the same kwok annotation
  (``szal.dev/sim-duration``), so the cluster's one pod-complete stage ends
  them all the same way: Argo's through its template ``metadata``, the
  floor's directly.
* Argo pods are told apart by the ``workflows.argoproj.io/node-name``
  annotation (``chain[3].s003``, ``dag.d042``): the step is the part after
  the last dot.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.operator import chain_spec, dag_spec, ideal_schedule, percentile

SIM = "szal.dev/sim-duration"
IMAGE = "busybox:1.36"
ARGO_API = "argoproj.io/v1alpha1"
SZAL_API = "szal.dev/v1alpha1"
FLOOR_RUN = "versus.szal.dev/run"
FLOOR_STEP = "versus.szal.dev/step"
ARGO_NODE_NAME = "workflows.argoproj.io/node-name"
ARGO_WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
ARGO_DONE = ("Succeeded", "Failed", "Error")


@dataclass(frozen=True)
class Sizes:
    """How big each workload is (``--quick`` shrinks them)."""

    chain: int = 40
    chain_step_s: float = 1.0
    dag: int = 200
    dag_step_s: float = 2.0
    max_parallel: int = 50
    burst: int = 200
    burst_step_s: float = 1.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(chain=10, dag=40, max_parallel=10, burst=40)


@dataclass(frozen=True)
class Step:
    """One step of a workload: its name and the steps it waits for."""

    name: str
    after: tuple[str, ...] = ()


def _dur(seconds: float) -> str:
    return f"{seconds:g}s"


def chain_steps(n: int) -> list[Step]:
    names = [s["name"] for s in chain_spec(n)["steps"]]
    return [Step(name, (names[i - 1],) if i else ()) for i, name in enumerate(names)]


def dag_steps(n: int, max_parallel: int) -> tuple[list[Step], float]:
    """The DAG's steps and its zero-overhead makespan in units of one step."""
    spec, _, _ = dag_spec(n, max_parallel)
    steps = [Step(s["name"], tuple(s.get("dependsOn", ()))) for s in spec["steps"]]
    return steps, ideal_schedule(spec["steps"], max_parallel, 1.0)


# --- Szál -------------------------------------------------------------------


def szal_workflow(
    name: str, steps: Sequence[Step], seconds: float, *, dag: bool, max_parallel: int = 0
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mode": "Dag" if dag else "Sequential",
        "template": {
            "image": IMAGE,
            "command": ["true"],
            "pod": {"metadata": {"annotations": {SIM: _dur(seconds)}}},
        },
        "steps": [
            {"name": s.name, **({"dependsOn": list(s.after)} if dag and s.after else {})}
            for s in steps
        ],
    }
    if dag and max_parallel:
        spec["maxParallel"] = max_parallel
    return {"apiVersion": SZAL_API, "kind": "Workflow", "metadata": {"name": name}, "spec": spec}


def szal_run(name: str, workflow: str) -> dict[str, Any]:
    return {
        "apiVersion": SZAL_API,
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": workflow}},
    }


# --- Argo Workflows -----------------------------------------------------------


def _argo_step_template(seconds: float) -> dict[str, Any]:
    return {
        "name": "step",
        "metadata": {"annotations": {SIM: _dur(seconds)}},
        "container": {"image": IMAGE, "command": ["true"]},
    }


def argo_workflow(
    name: str, steps: Sequence[Step], seconds: float, *, dag: bool, max_parallel: int = 0
) -> dict[str, Any]:
    """An Argo Workflow running ``steps``: a ``steps`` template (one group per
    step) for a chain, a ``dag`` template for a DAG, a bare container for one step."""
    step = _argo_step_template(seconds)
    spec: dict[str, Any] = {"entrypoint": "main", "serviceAccountName": "default"}
    if len(steps) == 1 and not steps[0].after:
        spec["templates"] = [{**step, "name": "main"}]
    elif dag:
        tasks = [
            {
                "name": s.name,
                "template": "step",
                **({"dependencies": list(s.after)} if s.after else {}),
            }
            for s in steps
        ]
        spec["templates"] = [{"name": "main", "dag": {"tasks": tasks}}, step]
        if max_parallel:
            spec["parallelism"] = max_parallel
    else:
        groups = [[{"name": s.name, "template": "step"}] for s in steps]
        spec["templates"] = [{"name": "main", "steps": groups}, step]
    return {"apiVersion": ARGO_API, "kind": "Workflow", "metadata": {"name": name}, "spec": spec}


def argo_step_of(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(workflow, step) of an Argo pod, or None for a pod that is not Argo's."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    node = (meta.get("annotations") or {}).get(ARGO_NODE_NAME)
    workflow = labels.get(ARGO_WORKFLOW_LABEL)
    if not workflow or not node:
        return None
    return workflow, str(node).rsplit(".", 1)[-1]


# --- The floor: bare pods ------------------------------------------------------


def floor_pod(run: str, step: str, seconds: float) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{run}-{step}".lower(),
            "labels": {FLOOR_RUN: run, FLOOR_STEP: step},
            "annotations": {SIM: _dur(seconds)},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": IMAGE, "command": ["true"]}],
        },
    }


def floor_ready(
    steps: Sequence[Step], done: set[str], started: set[str], running: int, max_parallel: int
) -> list[str]:
    """The steps the floor starts now: ready ones in definition order, while
    fewer than ``max_parallel`` run (0: no limit), like Szál's planner."""
    out: list[str] = []
    for s in steps:
        if max_parallel and running + len(out) >= max_parallel:
            break
        if s.name not in started and set(s.after) <= done:
            out.append(s.name)
    return out


# --- Statistics and the table ----------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of ``values`` (empty: an empty dict)."""
    if not values:
        return {}
    vals = list(values)
    return {
        "n": float(len(vals)),
        "p50": percentile(vals, 0.50),
        "p95": percentile(vals, 0.95),
        "p99": percentile(vals, 0.99),
        "max": max(vals),
        "mean": statistics.fmean(vals),
    }


def hops(steps: Sequence[Step], times: Mapping[str, tuple[float, float | None]]) -> list[float]:
    """Per step with dependencies: its pod created minus its latest
    dependency's pod finished, in ms (steps or finishes not seen are skipped)."""
    out: list[float] = []
    for s in steps:
        if not s.after or s.name not in times:
            continue
        ends = [times[a][1] for a in s.after if a in times]
        if len(ends) != len(s.after) or any(e is None for e in ends):
            continue
        out.append((times[s.name][0] - max(e for e in ends if e is not None)) * 1000)
    return out


# (key in the results, label, unit, lower is better)
MEASURES: tuple[tuple[str, str, str, bool], ...] = (
    ("hop_p50_ms", "hop p50", "ms", True),
    ("hop_p99_ms", "hop p99", "ms", True),
    ("chain_wall_s", "chain wall", "s", True),
    ("dag_wall_s", "DAG wall", "s", True),
    ("burst_runs_per_min", "burst throughput", "runs/min", False),
    ("burst_latency_p50_s", "burst run latency p50", "s", True),
    ("burst_latency_p95_s", "burst run latency p95", "s", True),
    ("writes_per_step", "object versions per step (chain)", "", True),
    ("cpu_s", "controller CPU", "s", True),
    ("peak_rss_mib", "controller peak RSS", "MiB", True),
)
COLUMNS = (
    ("argo_default", "Argo default"),
    ("argo_tuned", "Argo tuned"),
    ("szal", "Szál"),
    ("floor", "floor"),
)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(value: float | None, base: float | None, lower_is_better: bool) -> float | None:
    """How many times worse ``value`` is than ``base`` (1.0 = equal, > 1 worse)."""
    if value is None or base is None or value == 0 or base == 0:
        return None
    return value / base if lower_is_better else base / value


def render_table(figures: Mapping[str, Mapping[str, float | None]]) -> str:
    """The Markdown table: one row per measure, one column per engine, then
    Argo default / Szál, Argo tuned / Szál and Szál / floor (each "times worse")."""
    head = [
        "measure",
        *(label for _, label in COLUMNS),
        "Argo def./Szál",
        "Argo tuned/Szál",
        "Szál/floor",
    ]
    rows = [head, ["---"] * len(head)]
    for key, label, unit, lower in MEASURES:
        vals = {col: (figures.get(col) or {}).get(key) for col, _ in COLUMNS}
        if all(v is None for v in vals.values()):
            continue
        ratios = [
            ratio(vals["argo_default"], vals["szal"], lower),
            ratio(vals["argo_tuned"], vals["szal"], lower),
            ratio(vals["szal"], vals["floor"], lower),
        ]
        rows.append(
            [f"{label} ({unit})" if unit else label]
            + [_fmt(vals[col]) for col, _ in COLUMNS]
            + ["-" if r is None else f"{r:.2f}x" for r in ratios]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for r in rows:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        if r[0] == "---":
            cells = ["-" * w for w in widths]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
