"""Benchmark of the operator on the test cluster (kwok nodes): latency, throughput, cost.

    python -m bench.operator [--kubeconfig PATH] [--chain 40] [--dag 200] [--json]

Needs a running cluster (``e2e/cluster/up.sh``; default kubeconfig
``$SZAL_E2E_KUBECONFIG`` or ``/tmp/szal-cluster/kubeconfig``) and starts
``szal operator`` itself, as a subprocess, in a fresh namespace.

Every time is measured from this process's own watches on pods and
WorkflowRuns, with ``time.monotonic()`` at the moment an event arrives:
Kubernetes object timestamps have one-second resolution and cannot resolve
hops of tens of milliseconds (DESIGN.md section 6). Printed:

* **hop latency** over a 40-step chain of 1 s steps: from the event that
  shows step *i*'s pod Succeeded to the event that shows step *i+1*'s pod
  created - the operator's whole reaction (watch delivery, plan, POST) plus
  one watch delivery - as p50/p95/p99;
* **run created -> first pod created**, from the same watches;
* **wall time of a 200-step DAG of 2 s steps with maxParallel 50** (five
  layers of 20/60/60/40/20 steps, each depending on two random steps of the
  layer before), against its critical path and against the makespan the
  planner's policy would reach with zero overhead (simulated);
* **API writes per step**, from the operator's own write counter
  (``szal_api_writes_total`` on its metrics port), split by kind;
* **peak RSS** of the operator process (VmHWM).

Targets (issue 5): hop p50 < 100 ms, p99 < 500 ms; <= 3 writes per step.
"""

from __future__ import annotations

import os
import sys

# Run as `python -m bench.operator`, this file's directory comes first on
# sys.path, and this module would shadow the standard library's `operator`.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from e2e.conftest import Kubectl  # noqa: E402
from e2e.operator_support import OperatorProcess, ensure_crds, run, sim, workflow  # noqa: E402

from szal.runners.kubernetes.client import (  # noqa: E402
    ApiClient,
    group_path,
    load_credentials,
)
from szal.spec import API_VERSION  # noqa: E402


async def watch_events(
    client: ApiClient, path: str, on_event: Callable[[str, dict[str, Any], float], None]
) -> None:
    """Watch ``path`` forever; call ``on_event(type, object, monotonic time
    of arrival)`` for every ADDED and MODIFIED (bench.versus uses it too).

    A dropped connection (the API server under load) is re-watched from the
    last resourceVersion seen; an ERROR event (410 Gone: events were lost)
    raises, so a benchmark fails instead of waiting for what it missed.
    """
    session = client._ensure_session()
    rv = ""
    while True:
        params = {"watch": "1", "allowWatchBookmarks": "true"}
        if rv:
            params["resourceVersion"] = rv
        try:
            async with session.get(
                client.credentials.server + path,
                params=params,
                headers=client._headers(None),
                timeout=None,
            ) as response:
                if response.status >= 500 or response.status == 429:
                    await asyncio.sleep(0.5)  # the API server is busy: retry
                    continue
                if response.status != 200:
                    raise RuntimeError(f"watch {path}: {response.status} {await response.text()}")
                async for line in response.content:
                    seen = time.monotonic()
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch {path}: {obj.get('message', obj)}")
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        on_event(event["type"], obj, seen)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionError):
            await asyncio.sleep(0.2)


@dataclass
class Watcher:
    """Records when pods and runs are first seen in each state (monotonic clock)."""

    client: ApiClient
    namespace: str
    pod_created: dict[str, float] = field(default_factory=dict)
    pod_finished: dict[str, float] = field(default_factory=dict)
    pod_step: dict[str, tuple[str, str]] = field(default_factory=dict)  # pod -> (run, step)
    run_created: dict[str, float] = field(default_factory=dict)
    run_finished: dict[str, float] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _watch(
        self, path: str, on_event: Callable[[str, dict[str, Any], float], None]
    ) -> None:
        await watch_events(self.client, path, on_event)

    def _pod(self, kind: str, pod: dict[str, Any], seen: float) -> None:
        meta = pod["metadata"]
        name = meta["name"]
        labels = meta.get("labels") or {}
        if "szal.dev/run" not in labels:
            return
        self.pod_created.setdefault(name, seen)
        self.pod_step[name] = (labels["szal.dev/run"], labels.get("szal.dev/step", ""))
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self.pod_finished.setdefault(name, seen)

    def _run(self, kind: str, obj: dict[str, Any], seen: float) -> None:
        name = obj["metadata"]["name"]
        self.run_created.setdefault(name, seen)
        if (obj.get("status") or {}).get("phase") in (
            "Succeeded",
            "Failed",
            "RolledBack",
            "Cancelled",
        ):
            self.run_finished.setdefault(name, seen)

    async def start(self) -> None:
        self.tasks = [
            asyncio.create_task(
                self._watch(f"/api/v1/namespaces/{self.namespace}/pods", self._pod)
            ),
            asyncio.create_task(
                self._watch(group_path(API_VERSION, self.namespace, "workflowruns"), self._run)
            ),
        ]
        await asyncio.sleep(0.5)  # both watches connected

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def step_times(self, run_name: str) -> dict[str, tuple[float, float | None]]:
        out: dict[str, tuple[float, float | None]] = {}
        for pod, (run_label, step) in self.pod_step.items():
            if run_label == run_name:
                out[step] = (self.pod_created[pod], self.pod_finished.get(pod))
        return out

    async def wait_finished(self, run_name: str, timeout: float) -> float:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while run_name not in self.run_finished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_name} did not finish in {timeout:g}s")
            await asyncio.sleep(0.05)
        return self.run_finished[run_name]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def chain_spec(n: int) -> dict[str, Any]:
    return {
        "mode": "Sequential",
        "template": {"image": "busybox:1.36", "command": ["true"], "pod": sim("1s")},
        "steps": [{"name": f"s{i:03d}"} for i in range(n)],
    }


def dag_layers(n: int, seed: int = 7) -> list[list[str]]:
    widths = [20, 60, 60, 40, 20]
    scale = n / sum(widths)
    sizes = [max(1, round(w * scale)) for w in widths]
    sizes[-1] += n - sum(sizes)
    layers, k = [], 0
    for size in sizes:
        layers.append([f"d{k + i:03d}" for i in range(size)])
        k += size
    return layers


def dag_spec(n: int, max_parallel: int, seed: int = 7) -> tuple[dict[str, Any], float, float]:
    """The DAG, its critical path (s) and its zero-overhead makespan under max_parallel (s)."""
    rng = random.Random(seed)
    layers = dag_layers(n, seed)
    steps: list[dict[str, Any]] = []
    for depth, layer in enumerate(layers):
        for name in layer:
            step: dict[str, Any] = {"name": name}
            if depth:
                prev = layers[depth - 1]
                step["dependsOn"] = sorted(rng.sample(prev, min(2, len(prev))))
            steps.append(step)
    spec = {
        "mode": "Dag",
        "maxParallel": max_parallel,
        "template": {"image": "busybox:1.36", "command": ["true"], "pod": sim("2s")},
        "steps": steps,
    }
    duration = 2.0
    critical = len(layers) * duration
    return spec, critical, ideal_schedule(steps, max_parallel, duration)


def ideal_schedule(steps: list[dict[str, Any]], max_parallel: int, duration: float) -> float:
    """Makespan of the planner's policy with zero overhead.

    Ready steps start in definition order while fewer than ``max_parallel``
    run; every step takes ``duration``. This is what the operator would
    achieve if pods started and finished instantly and hops cost nothing.
    """
    deps = {s["name"]: set(s.get("dependsOn", ())) for s in steps}
    order = [s["name"] for s in steps]
    done: set[str] = set()
    running: list[tuple[float, str]] = []
    started: set[str] = set()
    clock = 0.0
    while len(done) < len(order):
        for name in order:
            if len(running) >= max_parallel:
                break
            if name not in started and deps[name] <= done:
                started.add(name)
                running.append((clock + duration, name))
        running.sort()
        clock, first = running.pop(0)
        done.add(first)
        while running and running[0][0] <= clock:
            done.add(running.pop(0)[1])
    return clock


def bench_namespace(args: argparse.Namespace) -> tuple[Path, Kubectl, str]:
    """The kubeconfig, kubectl and a fresh ``bench-*`` namespace (CRDs installed)."""
    kubeconfig = Path(args.kubeconfig)
    kubectl = Kubectl(binary=Path(args.kubectl), kubeconfig=kubeconfig)
    ensure_crds(kubectl)
    namespace = f"bench-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace)
    return kubeconfig, kubectl, namespace


async def wait_default_account(kubectl: Kubectl, namespace: str) -> None:
    """Until the namespace's default ServiceAccount exists (pods are refused before)."""
    deadline = time.monotonic() + 30
    while kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode:
        if time.monotonic() > deadline:
            raise TimeoutError("no default ServiceAccount")
        await asyncio.sleep(0.2)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    kubeconfig, kubectl, namespace = bench_namespace(args)
    results: dict[str, Any] = {"namespace": namespace}
    op = OperatorProcess(kubeconfig, [namespace])
    client = ApiClient(load_credentials(kubeconfig))
    watcher = Watcher(client, namespace)
    try:
        await wait_default_account(kubectl, namespace)
        op.start()
        await watcher.start()
        await asyncio.sleep(1.0)  # the operator's watches have listed

        # 1. Chain: hop latency, and run created -> first pod.
        kubectl.apply(workflow("chain", chain_spec(args.chain)), namespace)
        writes_before = op.writes()
        kubectl.apply(run("chain", "chain"), namespace)
        await watcher.wait_finished("chain", timeout=args.chain * 10 + 60)
        writes_chain = _diff(op.writes(), writes_before)
        times = watcher.step_times("chain")
        order = [f"s{i:03d}" for i in range(args.chain)]
        hops = [
            (times[b][0] - times[a][1]) * 1000
            for a, b in itertools.pairwise(order)
            if times[a][1] is not None
        ]
        first_pod = (times[order[0]][0] - watcher.run_created["chain"]) * 1000
        # Pod created -> pod finished, minus the simulated 1 s: the cluster's
        # share (scheduler, kwok's stages, watch delivery), not the operator's.
        infra = [
            ((fin - created) - 1.0) * 1000 for created, fin in times.values() if fin is not None
        ]
        results["chain"] = {
            "steps": args.chain,
            "hop_ms": {
                "p50": percentile(hops, 0.50),
                "p95": percentile(hops, 0.95),
                "p99": percentile(hops, 0.99),
                "max": max(hops),
                "mean": statistics.fmean(hops),
            },
            "run_created_to_first_pod_ms": first_pod,
            "pod_lifecycle_overhead_ms_p50": percentile(infra, 0.5),
            "writes": writes_chain,
            "writes_per_step": sum(writes_chain.values()) / args.chain,
        }

        # 2. DAG: wall time against the critical path.
        spec, critical, best = dag_spec(args.dag, args.max_parallel)
        kubectl.apply(workflow("dag", spec), namespace)
        writes_before = op.writes()
        kubectl.apply(run("dag", "dag"), namespace)
        finished = await watcher.wait_finished("dag", timeout=600)
        writes_dag = _diff(op.writes(), writes_before)
        wall = finished - watcher.run_created["dag"]
        status = json.loads(
            kubectl("get", "workflowrun", "dag", "-n", namespace, "-o", "json").stdout
        )["status"]
        dag_times = watcher.step_times("dag")
        dag_infra = [
            ((fin - created) - 2.0) * 1000 for created, fin in dag_times.values() if fin is not None
        ]
        deps = {st["name"]: st.get("dependsOn", []) for st in spec["steps"]}
        dag_hops = [
            (dag_times[name][0] - max(dag_times[d][1] or 0.0 for d in ds)) * 1000
            for name, ds in deps.items()
            if ds and name in dag_times
        ]
        finishes = sorted(f for _, f in dag_times.values() if f is not None)
        reactions = []
        for created, _ in dag_times.values():
            before = [f for f in finishes if f <= created]
            if before:
                reactions.append((created - before[-1]) * 1000)
        results["dag"] = {
            "steps": args.dag,
            "max_parallel": args.max_parallel,
            "phase": status["phase"],
            "wall_s": wall,
            "critical_path_s": critical,
            "ideal_schedule_s": best,
            "overhead_vs_ideal_s": wall - best,
            "pod_lifecycle_overhead_ms": {
                "p50": percentile(dag_infra, 0.5),
                "p95": percentile(dag_infra, 0.95),
            },
            "latest_finish_to_pod_created_ms": {
                "p50": percentile(reactions, 0.5),
                "p95": percentile(reactions, 0.95),
            },
            "dependency_done_to_pod_created_ms": {
                "p50": percentile(dag_hops, 0.5),
                "p95": percentile(dag_hops, 0.95),
            },
            "writes": writes_dag,
            "writes_per_step": sum(writes_dag.values()) / args.dag,
        }
        results["operator_peak_rss_mib"] = op.peak_rss() / 2**20
    finally:
        await watcher.stop()
        await client.close()
        op.stop()
        if not args.keep:
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return results


def _diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def report(r: dict[str, Any]) -> str:
    c, d = r["chain"], r["dag"]
    h = c["hop_ms"]
    lines = [
        f"hop latency over a {c['steps']}-step chain of 1 s steps (watch-measured):",
        f"  p50 {h['p50']:.1f} ms   p95 {h['p95']:.1f} ms   p99 {h['p99']:.1f} ms"
        f"   max {h['max']:.1f} ms   (targets: p50 < 100 ms, p99 < 500 ms)",
        f"run created -> first pod created: {c['run_created_to_first_pod_ms']:.1f} ms",
        f"cluster's own share per pod (created -> finished, minus the 1 s run): "
        f"p50 {c['pod_lifecycle_overhead_ms_p50']:.0f} ms",
        f"{d['steps']}-step DAG of 2 s steps, maxParallel {d['max_parallel']}: "
        f"wall {d['wall_s']:.1f} s; critical path {d['critical_path_s']:.0f} s; "
        f"zero-overhead schedule under maxParallel {d['ideal_schedule_s']:.0f} s "
        f"(overhead {d['overhead_vs_ideal_s']:.1f} s); phase {d['phase']}",
        f"  DAG: latest pod-finished event -> pod created: "
        f"p50 {d['latest_finish_to_pod_created_ms']['p50']:.0f} ms, "
        f"p95 {d['latest_finish_to_pod_created_ms']['p95']:.0f} ms",
        f"  DAG: last dependency finished -> pod created (includes waiting for a maxParallel "
        f"slot): p50 {d['dependency_done_to_pod_created_ms']['p50']:.0f} ms, "
        f"p95 {d['dependency_done_to_pod_created_ms']['p95']:.0f} ms; cluster's share per pod: "
        f"p50 {d['pod_lifecycle_overhead_ms']['p50']:.0f} ms, "
        f"p95 {d['pod_lifecycle_overhead_ms']['p95']:.0f} ms",
        f"API writes per step: chain {c['writes_per_step']:.2f} {c['writes']}",
        f"                     dag   {d['writes_per_step']:.2f} {d['writes']}  (target <= 3)",
        f"operator peak RSS: {r['operator_peak_rss_mib']:.1f} MiB",
    ]
    return "\n".join(lines)


def find_kubectl(kubectl: str) -> str:
    """``kubectl`` from PATH, else the one the cluster build cached (the benchmarks' default)."""
    if kubectl == "kubectl":
        found = subprocess.run(["which", "kubectl"], capture_output=True, text=True).stdout
        if not found.strip():
            cache = sorted(Path.home().glob(".cache/szal/k8s-*/bin/kubectl"))
            if cache:
                return str(cache[-1])
    return kubectl


def main() -> int:
    default_kubeconfig = os.environ.get("SZAL_E2E_KUBECONFIG", "/tmp/szal-cluster/kubeconfig")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--kubeconfig", default=default_kubeconfig)
    parser.add_argument("--kubectl", default=os.environ.get("SZAL_KUBECTL", "kubectl"))
    parser.add_argument("--chain", type=int, default=40)
    parser.add_argument("--dag", type=int, default=200)
    parser.add_argument("--max-parallel", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the namespace")
    args = parser.parse_args()
    args.kubectl = find_kubectl(args.kubectl)
    results = asyncio.run(bench(args))
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
