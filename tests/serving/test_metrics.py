"""Run, step and stream metrics, and the Grafana dashboard that reads them.

Covers: counters and histograms from one run's transitions (started,
finished by phase, steps by phase, step and run durations, hop latency from
Dag dependencies and Sequential order, no hop when a predecessor's finish was
not seen), runs-in-flight by phase, per-run tracking dropped at the end;
the reconciler observer hook's adapter; the stream collector; and that every
query of charts/szal/dashboards/szal.json names a sample the operator or
``szal serve`` really exports (scraped from real registries). The served
/metrics of ``szal serve`` is in test_serve_cmd.py, the operator's in
e2e/test_live_api.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from szal.engine.actions import Transition
from szal.engine.state import PinnedWorkflow, RunState
from szal.engine.workflow import resolve_workflow
from szal.history.sqlite import SqliteStore
from szal.runners.kubernetes.client import ApiClient, Credentials
from szal.runners.kubernetes.events import EventPoster, RunRef
from szal.runners.kubernetes.metrics import OperatorCollector
from szal.serving.hub import StreamHub
from szal.serving.metrics import RunMetrics, StreamCollector, operator_observer, predecessors
from szal.spec.models import WorkflowSpec

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "szal" / "dashboards" / "szal.json"
LABELS = {"namespace": "ns", "workflow": "wf"}


def step(name: str, new: str, at: float, attempt: int = 1, old: str = "Pending") -> Transition:
    return Transition(name, old, new, at, "Step" + new, attempt=attempt)


def run_change(new: str, at: float) -> Transition:
    return Transition(None, "Pending", new, at, "Run" + new)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {**LABELS, **labels} if labels != {"": ""} else {})


def test_one_run_counts_and_durations() -> None:
    metrics = RunMetrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    graph = {"b": ("a",), "c": ("a", "b")}
    metrics.observe(
        "u1", "ns", "wf", [run_change("Running", 100.0), step("a", "Running", 100.0)], graph
    )
    assert registry.get_sample_value("szal_runs", {"namespace": "ns", "phase": "Running"}) == 1
    metrics.observe("u1", "ns", "wf", [step("a", "Succeeded", 102.0), step("b", "Running", 102.25)])
    metrics.observe(
        "u1",
        "ns",
        "wf",
        [
            step("b", "Waiting", 103.0),  # a retry: not finished
            step("b", "Running", 104.0, attempt=2, old="Waiting"),
            step("b", "Failed", 105.0, attempt=2),
            step("c", "Skipped", 105.0),
            run_change("Failed", 106.0),
        ],
    )
    assert value(registry, "szal_runs_started_total") == 1
    assert value(registry, "szal_runs_finished_total", phase="Failed") == 1
    assert value(registry, "szal_steps_finished_total", phase="Succeeded") == 1
    assert value(registry, "szal_steps_finished_total", phase="Failed") == 1
    assert value(registry, "szal_steps_finished_total", phase="Skipped") == 1
    # b: first start 102.25 to Failed at 105 (its retry included).
    assert value(registry, "szal_step_duration_seconds_sum", phase="Failed") == 2.75
    assert value(registry, "szal_step_duration_seconds_sum", phase="Succeeded") == 2.0
    assert value(registry, "szal_run_duration_seconds_sum", phase="Failed") == 6.0
    # One hop (a -> b, 0.25 s): c never started; b's second attempt is not a hop.
    assert value(registry, "szal_hop_latency_seconds_count") == 1
    assert value(registry, "szal_hop_latency_seconds_sum") == 0.25
    assert registry.get_sample_value("szal_runs", {"namespace": "ns", "phase": "Running"}) is None
    assert not metrics.tracking("u1")


def test_no_hop_without_the_predecessors_finish() -> None:
    metrics = RunMetrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    # A restarted operator: a finished before this process saw it.
    metrics.observe("u1", "ns", "wf", [step("b", "Running", 5.0)], {"b": ("a",)})
    assert value(registry, "szal_hop_latency_seconds_count") is None


def test_predecessors_of_dag_and_sequential_groups() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "mode": "Hierarchical",
            "steps": [
                {"name": "one", "command": ["true"]},
                {
                    "name": "two",
                    "mode": "Dag",
                    "steps": [
                        {"name": "x", "command": ["true"]},
                        {"name": "y", "command": ["true"], "dependsOn": ["x"]},
                    ],
                },
                {"name": "three", "command": ["true"]},
            ],
        }
    )
    graph = predecessors(resolve_workflow(spec, name="wf", params={}))
    assert graph["two"] == ("one",) and graph["three"] == ("two",)
    assert graph["y"] == ("x",) and graph["x"] == ()
    assert "one" not in graph


def test_operator_observer_names_the_pinned_workflow() -> None:
    metrics = RunMetrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    observe = operator_observer(metrics)
    state = RunState(workflow=PinnedWorkflow("wf", 1, "h"))
    observe(RunRef("ns", "run-1", "u1"), None, state, (run_change("Running", 1.0),))
    assert value(registry, "szal_runs_started_total") == 1


async def exported_samples(tmp_path: Path) -> set[str]:
    """Every sample name the operator's and szal serve's registries export."""
    metrics = RunMetrics()
    for phase in ("Succeeded", "Failed"):
        metrics.observe(
            f"u-{phase}",
            "ns",
            "wf",
            [
                run_change("Running", 0.0),
                step("a", "Running", 0.0),
                step("a", "Succeeded", 1.0),
                step("b", "Running", 1.1),
                step("b", phase, 2.0),
                run_change(phase, 2.0),
            ],
            {"b": ("a",)},
        )
    metrics.observe("u-live", "ns", "wf", [run_change("Running", 3.0)])
    store = SqliteStore(tmp_path / "h.db")
    client = ApiClient(Credentials(server="http://127.0.0.1:9"))
    client.writes[("create", "pods")] += 1  # a family has samples once something happened
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    registry.register(StreamCollector(StreamHub(store)))
    registry.register(
        OperatorCollector(client, EventPoster(client), passes=lambda: 0, active_runs=lambda: 0)
    )
    names = {sample.name for family in registry.collect() for sample in family.samples}
    await client.close()
    await store.close()
    return names


async def test_every_dashboard_query_names_an_exported_metric(tmp_path: Path) -> None:
    exported = await exported_samples(tmp_path)
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    assert len(queries) > 15
    named: set[str] = set()
    for query in queries:
        found = set(re.findall(r"\bszal_[a-z0-9_]+\b", query))
        assert found, f"query names no szal metric: {query}"
        assert found <= exported, f"{sorted(found - exported)} in {query!r} are not exported"
        named |= found
    # The dashboard shows every family the issue asks for.
    for family in (
        "runs_started",
        "runs_finished",
        "steps_finished",
        "step_duration_seconds",
        "run_duration_seconds",
        "hop_latency_seconds",
        "stream_events",
        "stream_clients",
    ):
        assert any(name.startswith(f"szal_{family}") for name in named), family


def test_chart_ships_the_dashboard_file() -> None:
    template = (DASHBOARD.parents[1] / "templates" / "dashboard.yaml").read_text()
    assert '.Files.Get "dashboards/szal.json"' in template
