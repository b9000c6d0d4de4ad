"""Cost per step of big runs on the test cluster: bytes, object sizes, steps/s.

    python -m bench.scale [--sizes 100,1000] [--max-parallel 250] [--json]

Issue 12 asks that a run's cost per step stay flat as the run grows. This
script runs one Parallel workflow of N zero-second steps (kwok nodes finish
each pod as soon as it runs) per size, through ``szal operator`` started as
a subprocess in a fresh namespace, and reports per size:

* **bytes written, per step**, as this process's watches on the namespace
  see them: every version of every pod, of the WorkflowRun and of every
  Event, summed as compact JSON. The API server writes each version once to
  etcd (CRs and Events as JSON, pods as protobuf, which is smaller), so this
  is a namespace-scoped estimate that other tenants of the cluster cannot
  disturb;
* **etcd's own figures**: the change of ``etcd_debugging_mvcc_total_put_size_in_bytes``
  and ``etcd_mvcc_db_total_size_in_bytes`` over the run. These count every
  writer on the cluster: exact when the benchmark runs alone, an upper bound
  otherwise (the load average is printed with them);
* **object sizes**: the run object at the end, the largest pod, and the
  largest context a pod carried (``SZAL_CONTEXT``, or the
  ``szal.dev/context`` annotation a long one goes in);
* **throughput**: steps per second from the run's creation to its end, and
  the operator's API writes per step (``szal_api_writes_total``).

Targets (issue 12): at most 20 KiB to etcd per step on average, at least 20
steps/s, and a 1,000-step run's per-step cost within 1.5x of a 100-step
run's. Sizes above 1,000 steps on a shared cluster can fill etcd's quota
today (a 5,000-step run did): use ``--sizes 5000`` only on a cluster of your own.
"""

from __future__ import annotations

import os
import sys

# Run as `python -m bench.scale`, bench/ must not shadow the standard library.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import secrets  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.operator import Watcher, _diff, find_kubectl  # noqa: E402
from e2e.conftest import Kubectl  # noqa: E402
from e2e.operator_support import OperatorProcess, ensure_crds, run, sim, workflow  # noqa: E402

from szal.runners.kubernetes.client import ApiClient, load_credentials  # noqa: E402

_ETCD_METRICS = ("etcd_debugging_mvcc_total_put_size_in_bytes", "etcd_mvcc_db_total_size_in_bytes")


def _size(obj: dict[str, Any]) -> int:
    return len(json.dumps(obj, separators=(",", ":")))


@dataclass
class Tally:
    """Bytes and versions seen per kind of object, and the largest of each."""

    bytes: dict[str, int] = field(default_factory=lambda: {"pods": 0, "run": 0, "events": 0})
    versions: dict[str, int] = field(default_factory=lambda: {"pods": 0, "run": 0, "events": 0})
    largest_pod: int = 0
    largest_context: int = 0
    last_run_size: int = 0

    def add(self, kind: str, obj: dict[str, Any]) -> int:
        size = _size(obj)
        self.bytes[kind] += size
        self.versions[kind] += 1
        return size


class SizingWatcher(Watcher):
    """bench.operator's Watcher, also tallying the size of every version it sees."""

    def __init__(self, client: ApiClient, namespace: str) -> None:
        super().__init__(client, namespace)
        self.tally = Tally()

    def _pod(self, kind: str, pod: dict[str, Any], seen: float) -> None:
        size = self.tally.add("pods", pod)
        self.tally.largest_pod = max(self.tally.largest_pod, size)
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        self.tally.largest_context = max(
            self.tally.largest_context, len(annotations.get("szal.dev/context") or "")
        )
        for container in (pod.get("spec") or {}).get("containers") or []:
            for env in container.get("env") or []:
                if env.get("name") == "SZAL_CONTEXT":
                    self.tally.largest_context = max(
                        self.tally.largest_context, len(env.get("value") or "")
                    )
        super()._pod(kind, pod, seen)

    def _run(self, kind: str, obj: dict[str, Any], seen: float) -> None:
        self.tally.last_run_size = self.tally.add("run", obj)
        super()._run(kind, obj, seen)

    def _event(self, kind: str, obj: dict[str, Any], seen: float) -> None:
        self.tally.add("events", obj)

    async def start(self) -> None:
        await super().start()
        self.tasks.append(
            asyncio.create_task(
                self._watch(f"/api/v1/namespaces/{self.namespace}/events", self._event)
            )
        )
        await asyncio.sleep(0.3)


def etcd_metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in _ETCD_METRICS:
            out[name] = float(value)
    return out


def parallel_spec(n: int, max_parallel: int) -> dict[str, Any]:
    return {
        "mode": "Parallel",
        "maxParallel": max_parallel,
        "template": {"image": "busybox:1.36", "command": ["true"], "pod": sim("0s")},
        "steps": [{"name": f"s{i:05d}"} for i in range(n)],
    }


async def one_size(
    kubectl: Kubectl, kubeconfig: Path, etcd_url: str, n: int, max_parallel: int, keep: bool
) -> dict[str, Any]:
    namespace = f"scale-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace)
    op = OperatorProcess(kubeconfig, [namespace])
    client = ApiClient(load_credentials(kubeconfig))
    watcher = SizingWatcher(client, namespace)
    try:
        op.start()
        await watcher.start()
        await asyncio.sleep(1.0)  # the operator's watches have listed
        kubectl.apply(workflow("wide", parallel_spec(n, max_parallel)), namespace)
        etcd_before = etcd_metrics(etcd_url)
        writes_before = op.writes()
        load_before = os.getloadavg()[0]
        kubectl.apply(run("wide", "wide"), namespace)
        finished = await watcher.wait_finished("wide", timeout=max(600.0, n * 0.5))
        await asyncio.sleep(1.0)  # late Events and the final status reach the watches
        wall = finished - watcher.run_created["wide"]
        writes = _diff(op.writes(), writes_before)
        etcd = _diff(etcd_metrics(etcd_url), etcd_before)
        phase = json.loads(
            kubectl("get", "workflowrun", "wide", "-n", namespace, "-o", "json").stdout
        )["status"]["phase"]
        t = watcher.tally
        total = sum(t.bytes.values())
        return {
            "steps": n,
            "phase": phase,
            "wall_s": wall,
            "steps_per_s": n / wall,
            "watched_bytes_per_step": {k: v / n for k, v in t.bytes.items()} | {"all": total / n},
            "versions_per_step": {k: v / n for k, v in t.versions.items()},
            "etcd_put_bytes_per_step": etcd.get(_ETCD_METRICS[0], 0.0) / n,
            "etcd_db_growth_bytes": etcd.get(_ETCD_METRICS[1], 0.0),
            "run_object_bytes_at_end": t.last_run_size,
            "largest_pod_bytes": t.largest_pod,
            "largest_szal_context_bytes": t.largest_context,
            "api_writes_per_step": sum(writes.values()) / n,
            "load_average": [load_before, os.getloadavg()[0]],
        }
    finally:
        await watcher.stop()
        await client.close()
        op.stop()
        if not keep:
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def report(results: list[dict[str, Any]]) -> str:
    kib = 1024.0
    lines = [
        f"{'steps':>6} {'phase':>9} {'steps/s':>8} {'KiB/step':>9} {'pods':>7} {'run':>7} "
        f"{'events':>7} {'etcd KiB/step':>13} {'run obj KiB':>11} {'pod KiB':>8} "
        f"{'context KiB':>11} {'writes/step':>11} {'load':>9}"
    ]
    for r in results:
        w = r["watched_bytes_per_step"]
        etcd, run_obj = r["etcd_put_bytes_per_step"] / kib, r["run_object_bytes_at_end"] / kib
        pod, context = r["largest_pod_bytes"] / kib, r["largest_szal_context_bytes"] / kib
        load = f"{r['load_average'][0]:.1f}-{r['load_average'][1]:.1f}"
        lines.append(
            f"{r['steps']:>6} {r['phase']:>9} {r['steps_per_s']:>8.1f} {w['all'] / kib:>9.1f} "
            f"{w['pods'] / kib:>7.1f} {w['run'] / kib:>7.1f} {w['events'] / kib:>7.1f} "
            f"{etcd:>13.1f} {run_obj:>11.1f} {pod:>8.1f} {context:>11.1f} "
            f"{r['api_writes_per_step']:>11.2f} {load:>9}"
        )
    if len(results) >= 2:
        small, big = results[0], results[-1]
        ratio = big["watched_bytes_per_step"]["all"] / small["watched_bytes_per_step"]["all"]
        lines.append(
            f"per-step bytes, {big['steps']} vs {small['steps']} steps: {ratio:.2f}x "
            "(target <= 1.5x)"
        )
    lines.append(
        "KiB/step: every version of every object in the namespace as compact JSON (pods, the "
        "run, Events); etcd KiB/step counts every writer on the cluster (exact only when alone)"
    )
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    kubeconfig = Path(args.kubeconfig)
    kubectl = Kubectl(binary=Path(args.kubectl), kubeconfig=kubeconfig)
    ensure_crds(kubectl)
    return [
        await one_size(kubectl, kubeconfig, args.etcd_metrics, n, args.max_parallel, args.keep)
        for n in args.sizes
    ]


def main() -> int:
    default_kubeconfig = os.environ.get("SZAL_E2E_KUBECONFIG", "/tmp/szal-cluster/kubeconfig")
    etcd_port = os.environ.get("SZAL_ETCD_PORT", "12379")  # e2e/cluster/env.sh
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--kubeconfig", default=default_kubeconfig)
    parser.add_argument("--kubectl", default=os.environ.get("SZAL_KUBECTL", "kubectl"))
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000]
    )
    parser.add_argument("--max-parallel", type=int, default=250)
    parser.add_argument(
        "--etcd-metrics",
        default=f"http://127.0.0.1:{etcd_port}/metrics",
        help="etcd's metrics URL (the test cluster serves it on the client port)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the namespaces")
    args = parser.parse_args()
    args.kubectl = find_kubectl(args.kubectl)
    start = time.monotonic()
    results = asyncio.run(bench(args))
    print(json.dumps(results, indent=2) if args.json else report(results))
    print(f"({time.monotonic() - start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
