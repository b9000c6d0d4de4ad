"""Szál against Argo Workflows and against the cluster's own floor, side by side.

    python -m bench.versus [--quick] [--rounds 1] [--json PATH] [--kubeconfig PATH]
    make bench-versus

Runs the same workloads (``bench.versus_workloads``) on the test cluster
(kwok nodes) through four engines, alternating sessions (Szál, Argo default,
Argo tuned, floor, and again for ``--rounds`` > 1):

* **Szál**: ``szal operator`` as a subprocess, like ``bench.operator``;
* **Argo default / Argo tuned**: Argo Workflows' workflow-controller, built
  from its Go module at a pinned version by ``bench/argo/build.sh`` into the
  cache outside the repo, run as a local process against the cluster with
  its own kubeconfig (whose context namespace is the session's namespace,
  where its ConfigMap lives), ``--namespaced``. "Tuned" changes only
  documented settings, listed in ``ARGO_TUNED`` and in docs/benchmarks.md;
* **floor**: no controller: this process creates bare pods itself, in the
  ideal order, the moment its watch shows what they wait for finished.

Every figure comes from this process's own watches (pods, the engine's run
objects, Events), stamped with ``time.monotonic()`` when the event arrives,
so all engines are timed by the same clock. Pods of all engines carry the
same kwok annotation and are finished by the cluster's one pod-complete
stage. Writes are counted as the object versions the namespace's watches
see (pods, runs, Events) per step: namespace-scoped, so other sessions on
the shared cluster cannot inflate them (the API server's own
``apiserver_request_total`` is cluster-wide and would count them). kwok's
own pod status writes and the scheduler's Events are in every column, the
floor's included.

Each session gets a fresh ``versus-*`` namespace, deleted at the end
(``--keep`` keeps them). The load average is recorded with every session:
the machine is shared, and the figures are under that load.
"""

from __future__ import annotations

import os
import sys

# Run as `python -m bench.versus`, bench/ must not shadow the standard library.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import yaml  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import versus_workloads as w  # noqa: E402
from bench.operator import find_kubectl, watch_events  # noqa: E402
from e2e.conftest import Kubectl  # noqa: E402
from e2e.operator_support import OperatorProcess, ensure_crds, free_port  # noqa: E402

from szal.runners.kubernetes.client import ApiClient, core_path, group_path, load_credentials  # noqa: E402

# Every setting "Argo tuned" changes from Argo's defaults, each documented by
# Argo (docs/scaling.md, docs/environment-variables.md in the module).
ARGO_TUNED_ENV = {
    # The workflow queue's requeue delay (default 10s); 1s is the floor its
    # source comments allow ("otherwise informers are unlikely to be up to date").
    "DEFAULT_REQUEUE_TIME": "1s",
    # Write the updated workflow back into the informer instead of sleeping
    # 1 s after every workflow write (the v4 default).
    "INFORMER_WRITE_BACK": "true",
}
ARGO_TUNED_ARGS = ["--qps=50", "--burst=75"]  # client rate limits (default 20/30), docs/scaling.md
ARGO_ENGINES = ("argo_default", "argo_tuned")


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Watch:
    """Pods, runs and Events of one namespace, as this process sees them."""

    client: ApiClient
    namespace: str
    run_path: str | None  # the engine's run objects; None for the floor
    step_of: Callable[[dict[str, Any]], tuple[str, str] | None]
    pod_created: dict[tuple[str, str], float] = field(default_factory=dict)
    pod_finished: dict[tuple[str, str], float] = field(default_factory=dict)
    run_created: dict[str, float] = field(default_factory=dict)
    run_finished: dict[str, float] = field(default_factory=dict)
    run_phase: dict[str, str] = field(default_factory=dict)
    finished_order: list[tuple[str, str]] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=lambda: {"pods": 0, "runs": 0, "events": 0})
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _watch(self, path: str, kind: str) -> None:
        def counted(_: str, obj: dict[str, Any], seen: float) -> None:
            self.versions[kind] += 1
            self._on(kind, obj, seen)

        await watch_events(self.client, path, counted)

    def _on(self, kind: str, obj: dict[str, Any], seen: float) -> None:
        phase = (obj.get("status") or {}).get("phase")
        if kind == "pods":
            key = self.step_of(obj)
            if key is None:
                return
            self.pod_created.setdefault(key, seen)
            if phase in ("Succeeded", "Failed") and key not in self.pod_finished:
                self.pod_finished[key] = seen
                self.finished_order.append(key)
                self._notify()
        elif kind == "runs":
            name = obj["metadata"]["name"]
            self.run_created.setdefault(name, seen)
            if phase in ("Succeeded", "Failed", "Error", "RolledBack", "Cancelled"):
                self.run_phase[name] = phase
                self.run_finished.setdefault(name, seen)
                self._notify()

    def _notify(self) -> None:
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)
        self.waiters.clear()

    def waiter(self) -> asyncio.Future[None]:
        """A future resolved at the next pod or run finishing: take it before
        looking at the state, then await it (no wake-up is lost)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        return fut

    @staticmethod
    async def wait(fut: asyncio.Future[None], timeout: float) -> None:  # noqa: ASYNC109
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(fut), timeout)

    async def start(self) -> None:
        paths = {
            "pods": core_path(self.namespace, "pods"),
            "events": core_path(self.namespace, "events"),
        }
        if self.run_path:
            paths["runs"] = self.run_path
        self.tasks = [asyncio.create_task(self._watch(p, k)) for k, p in paths.items()]
        await asyncio.sleep(0.5)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def times(self, run: str) -> dict[str, tuple[float, float | None]]:
        return {
            step: (created, self.pod_finished.get((r, step)))
            for (r, step), created in self.pod_created.items()
            if r == run
        }

    async def until(self, done: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            fut = self.waiter()
            if done():
                return
            for task in self.tasks:
                if task.done():  # a watch died: its error, not a silent hang
                    task.result()
                    raise RuntimeError(f"a watch of {self.namespace} ended")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} did not finish in {timeout:g}s")
            await self.wait(fut, min(left, 0.5))


class Engine:
    """One engine's session in one namespace: start, run workloads, stop."""

    key = ""
    run_path_plural = ""

    def __init__(self, kubectl: Kubectl, client: ApiClient, namespace: str) -> None:
        self.kubectl, self.client, self.namespace = kubectl, client, namespace
        self.pid: int | None = None
        self.watch: Watch | None = None  # set by session()

    def step_of(self, pod: dict[str, Any]) -> tuple[str, str] | None:
        raise NotImplementedError

    def run_path(self) -> str | None:
        return None

    async def start(self) -> None:
        """Start the controller (none for the floor)."""

    def stop(self) -> None:
        """Stop the controller."""

    async def submit(
        self, name: str, steps: list[w.Step], seconds: float, max_parallel: int
    ) -> None:
        raise NotImplementedError

    async def burst(self, names: list[str], steps: list[w.Step], seconds: float) -> None:
        """Start one run of the chain ``steps`` per name, all at once."""
        raise NotImplementedError

    def finished(self, watch: Watch, name: str, steps: list[w.Step]) -> bool:
        return name in watch.run_finished

    async def drive(
        self, watch: Watch, name: str, steps: list[w.Step], seconds: float, max_parallel: int
    ) -> None:
        """Only the floor does anything while a run goes."""

    async def _create_all(self, path: str, bodies: list[dict[str, Any]], resource: str) -> None:
        gate = asyncio.Semaphore(50)

        async def one(body: dict[str, Any]) -> None:
            async with gate:
                await self.client.create(path, body, resource=resource)

        await asyncio.gather(*(one(b) for b in bodies))


class Szal(Engine):
    key = "szal"

    def __init__(self, kubectl: Kubectl, client: ApiClient, namespace: str) -> None:
        super().__init__(kubectl, client, namespace)
        self.op = OperatorProcess(kubectl.kubeconfig, [namespace])

    def step_of(self, pod: dict[str, Any]) -> tuple[str, str] | None:
        labels = pod["metadata"].get("labels") or {}
        if "szal.dev/run" not in labels:
            return None
        return labels["szal.dev/run"], labels.get("szal.dev/step", "")

    def run_path(self) -> str | None:
        return group_path(w.SZAL_API, self.namespace, "workflowruns")

    async def start(self) -> None:
        self.op.start()
        assert self.op.proc is not None
        self.pid = self.op.proc.pid
        await asyncio.sleep(1.0)  # its watches have listed

    def stop(self) -> None:
        self.op.stop()

    async def submit(
        self, name: str, steps: list[w.Step], seconds: float, max_parallel: int
    ) -> None:
        dag = max_parallel > 0
        wf = w.szal_workflow(name, steps, seconds, dag=dag, max_parallel=max_parallel)
        await self.client.create(
            group_path(w.SZAL_API, self.namespace, "workflows"), wf, resource="workflows"
        )
        await self.client.create(
            self.run_path() or "", w.szal_run(name, name), resource="workflowruns"
        )

    async def burst(self, names: list[str], steps: list[w.Step], seconds: float) -> None:
        wf = w.szal_workflow("one", steps, seconds, dag=False)
        await self.client.create(
            group_path(w.SZAL_API, self.namespace, "workflows"), wf, resource="workflows"
        )
        await self._create_all(
            self.run_path() or "", [w.szal_run(n, "one") for n in names], "workflowruns"
        )


class Argo(Engine):
    def __init__(
        self, kubectl: Kubectl, client: ApiClient, namespace: str, *, binary: Path, tuned: bool
    ) -> None:
        super().__init__(kubectl, client, namespace)
        self.key = "argo_tuned" if tuned else "argo_default"
        self.binary, self.tuned = binary, tuned
        self.proc: subprocess.Popen[bytes] | None = None
        fd, log = tempfile.mkstemp(prefix=f"versus-{self.key}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log)

    def step_of(self, pod: dict[str, Any]) -> tuple[str, str] | None:
        return w.argo_step_of(pod)

    def run_path(self) -> str | None:
        return group_path(w.ARGO_API, self.namespace, "workflows")

    def _kubeconfig(self) -> Path:
        """A copy of the cluster's kubeconfig whose context namespace is ours:
        the controller reads its ConfigMap from there."""
        config = yaml.safe_load(self.kubectl.kubeconfig.read_text())
        current = config.get("current-context") or config["contexts"][0]["name"]
        for ctx in config["contexts"]:
            if ctx["name"] == current:
                ctx["context"]["namespace"] = self.namespace
        path = self.log_path.with_suffix(".kubeconfig")
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    async def start(self) -> None:
        # Its metrics server on a port of its own (default 9090: two sessions
        # on one machine would collide); not a performance setting.
        config: dict[str, str] = {"metricsConfig": f"port: {free_port()}\n"}
        if self.tuned:
            # Pod creation rate limit (default unlimited: nothing to tune).
            config["resourceRateLimit"] = "limit: 1000\nburst: 1000\n"
        self.kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "workflow-controller-configmap"},
                "data": config,
            },
            self.namespace,
        )
        env = {**os.environ, "LEADER_ELECTION_DISABLE": "true"}
        args = [
            str(self.binary),
            "--kubeconfig",
            str(self._kubeconfig()),
            "--namespaced",
            "--managed-namespace",
            self.namespace,
            "--executor-image",
            "argoexec:v4.0.5",  # never pulled: kwok runs no containers
            "--loglevel",
            "warn",
        ]
        if self.tuned:
            env.update(ARGO_TUNED_ENV)
            args += ARGO_TUNED_ARGS
        with self.log_path.open("ab") as log:
            # a long-lived child, started once per session: blocking is fine
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                args, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self.pid = self.proc.pid
        await asyncio.sleep(3.0)  # informers synced
        if self.proc.poll() is not None:
            raise RuntimeError(f"workflow-controller exited: see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def submit(
        self, name: str, steps: list[w.Step], seconds: float, max_parallel: int
    ) -> None:
        dag = max_parallel > 0
        wf = w.argo_workflow(name, steps, seconds, dag=dag, max_parallel=max_parallel)
        await self.client.create(self.run_path() or "", wf, resource="workflows")

    async def burst(self, names: list[str], steps: list[w.Step], seconds: float) -> None:
        bodies = [w.argo_workflow(n, steps, seconds, dag=False) for n in names]
        await self._create_all(self.run_path() or "", bodies, "workflows")


class Floor(Engine):
    key = "floor"

    def step_of(self, pod: dict[str, Any]) -> tuple[str, str] | None:
        labels = pod["metadata"].get("labels") or {}
        if w.FLOOR_RUN not in labels:
            return None
        return labels[w.FLOOR_RUN], labels.get(w.FLOOR_STEP, "")

    def finished(self, watch: Watch, name: str, steps: list[w.Step]) -> bool:
        return all((name, s.name) in watch.pod_finished for s in steps)

    async def submit(
        self, name: str, steps: list[w.Step], seconds: float, max_parallel: int
    ) -> None:
        """Nothing to submit: drive() creates the pods."""

    async def _create(self, run: str, step: str, seconds: float) -> None:
        await self.client.create(
            core_path(self.namespace, "pods"), w.floor_pod(run, step, seconds), resource="pods"
        )

    async def drive(
        self, watch: Watch, name: str, steps: list[w.Step], seconds: float, max_parallel: int
    ) -> None:
        started: set[str] = set()
        pending: set[asyncio.Task[None]] = set()
        while True:
            fut = watch.waiter()
            if self.finished(watch, name, steps):
                break
            done = {s for (r, s) in watch.pod_finished if r == name}
            for step in w.floor_ready(steps, done, started, len(started - done), max_parallel):
                started.add(step)
                task = asyncio.create_task(self._create(name, step, seconds))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await watch.wait(fut, 1.0)
        await asyncio.gather(*pending)

    async def burst(self, names: list[str], steps: list[w.Step], seconds: float) -> None:
        """The first pod of every run at once; with more than one step, each
        next pod the moment the watch shows the one before finished."""
        bodies = [w.floor_pod(n, steps[0].name, seconds) for n in names]
        await self._create_all(core_path(self.namespace, "pods"), bodies, "pods")
        if len(steps) == 1:
            return
        following = {a.name: b.name for a, b in itertools.pairwise(steps)}
        wanted, seen = set(names), 0
        last = steps[-1].name
        pending: set[asyncio.Task[None]] = set()
        watch, left = self.watch, len(names)
        assert watch is not None
        while left:
            fut = watch.waiter()
            for run, step in watch.finished_order[seen:]:
                if run in wanted and step == last:
                    left -= 1
                elif run in wanted and step in following:
                    task = asyncio.create_task(self._create(run, following[step], seconds))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            seen = len(watch.finished_order)
            if left:
                await watch.wait(fut, 1.0)
        await asyncio.gather(*pending)


async def session(engine: Engine, sizes: w.Sizes) -> dict[str, Any]:
    """Chain, DAG and burst through one engine; its figures for the table."""
    watch = engine.watch = Watch(engine.client, engine.namespace, engine.run_path(), engine.step_of)
    out: dict[str, Any] = {
        "engine": engine.key,
        "namespace": engine.namespace,
        "load_before": load_average(),
    }
    await watch.start()
    await engine.start()
    cpu0 = cpu_seconds(engine.pid) if engine.pid else None
    try:
        # 1. the chain
        chain = w.chain_steps(sizes.chain)
        versions0 = dict(watch.versions)
        t0 = time.monotonic()
        await engine.submit("chain", chain, sizes.chain_step_s, 0)
        await asyncio.gather(
            engine.drive(watch, "chain", chain, sizes.chain_step_s, 0),
            watch.until(
                lambda: engine.finished(watch, "chain", chain), sizes.chain * 30 + 120, "chain"
            ),
        )
        end = watch.run_finished.get("chain") or max(
            f for _, f in watch.times("chain").values() if f
        )
        hop = w.hops(chain, watch.times("chain"))
        versions = {k: watch.versions[k] - versions0[k] for k in watch.versions}
        out["chain"] = {
            "steps": sizes.chain,
            "wall_s": end - t0,
            "hop_ms": w.summary(hop),
            "versions": versions,
            "versions_per_step": sum(versions.values()) / sizes.chain,
            "phase": watch.run_phase.get("chain", "Succeeded"),
            "load": load_average(),
        }
        # 2. the DAG
        dag, ideal_units = w.dag_steps(sizes.dag, sizes.max_parallel)
        t0 = time.monotonic()
        await engine.submit("dag", dag, sizes.dag_step_s, sizes.max_parallel)
        await asyncio.gather(
            engine.drive(watch, "dag", dag, sizes.dag_step_s, sizes.max_parallel),
            watch.until(lambda: engine.finished(watch, "dag", dag), 900, "dag"),
        )
        end = watch.run_finished.get("dag") or max(f for _, f in watch.times("dag").values() if f)
        out["dag"] = {
            "steps": sizes.dag,
            "max_parallel": sizes.max_parallel,
            "wall_s": end - t0,
            "ideal_schedule_s": ideal_units * sizes.dag_step_s,
            "hop_ms": w.summary(w.hops(dag, watch.times("dag"))),
            "phase": watch.run_phase.get("dag", "Succeeded"),
            "load": load_average(),
        }
        # 3. the burst
        names = [f"b{i:03d}" for i in range(sizes.burst)]
        out["burst"] = await _burst(engine, watch, names, [w.Step("only")], sizes.burst_step_s)
        if engine.pid:
            out["cpu_s"] = cpu_seconds(engine.pid) - (cpu0 or 0.0)
            out["peak_rss_mib"] = peak_rss_mib(engine.pid)
        if isinstance(engine, Szal):
            out["szal_api_writes"] = engine.op.writes()
    finally:
        engine.stop()
        await watch.stop()
    return out


async def _burst(
    engine: Engine, watch: Watch, names: list[str], steps: list[w.Step], seconds: float
) -> dict[str, Any]:
    """Start a run of ``steps`` per name at once; throughput and latencies.

    A run's latency is its run object seen created to seen finished; the
    floor's, its first pod seen created to its last pod seen finished.
    """
    versions0 = dict(watch.versions)
    t0 = time.monotonic()
    await engine.burst(names, steps, seconds)
    first, last = steps[0].name, steps[-1].name
    if isinstance(engine, Floor):
        done = lambda: all((n, last) in watch.pod_finished for n in names)  # noqa: E731
        await watch.until(done, 1800, "burst")
        finish = {n: watch.pod_finished[(n, last)] for n in names}
        start = {n: watch.pod_created[(n, first)] for n in names}
    else:
        await watch.until(lambda: all(n in watch.run_finished for n in names), 1800, "burst")
        finish = {n: watch.run_finished[n] for n in names}
        start = {n: watch.run_created[n] for n in names}
    end = max(finish.values())
    versions = {k: watch.versions[k] - versions0[k] for k in watch.versions}
    by_run: dict[str, dict[str, tuple[float, float | None]]] = {}
    for (run, step), created in watch.pod_created.items():
        by_run.setdefault(run, {})[step] = (created, watch.pod_finished.get((run, step)))
    hop = [h for n in names for h in w.hops(steps, by_run.get(n, {}))]
    return {
        "runs": len(names),
        "steps_per_run": len(steps),
        "wall_s": end - t0,
        "runs_per_min": len(names) / (end - t0) * 60,
        "latency_s": w.summary([finish[n] - start[n] for n in names]),
        "hop_ms": w.summary(hop),
        "versions_per_step": sum(versions.values()) / (len(names) * len(steps)),
        "failed": sorted(n for n in names if watch.run_phase.get(n, "Succeeded") != "Succeeded"),
        "load": load_average(),
    }


async def scale_session(engine: Engine, runs: int, steps: int) -> dict[str, Any]:
    """``runs`` concurrent runs of a ``steps``-step chain of 1 s steps through one engine."""
    watch = engine.watch = Watch(engine.client, engine.namespace, engine.run_path(), engine.step_of)
    out: dict[str, Any] = {"engine": engine.key, "namespace": engine.namespace}
    await watch.start()
    await engine.start()
    cpu0 = cpu_seconds(engine.pid) if engine.pid else None
    try:
        names = [f"r{i:04d}" for i in range(runs)]
        out["scale"] = await _burst(engine, watch, names, w.chain_steps(steps), 1.0)
        if engine.pid:
            out["cpu_s"] = cpu_seconds(engine.pid) - (cpu0 or 0.0)
            out["peak_rss_mib"] = peak_rss_mib(engine.pid)
    finally:
        engine.stop()
        await watch.stop()
    return out


def figures(sessions: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """The table's cells: per engine, the median over its sessions of each measure."""
    per: dict[str, list[dict[str, float | None]]] = {}
    for s in sessions:
        per.setdefault(s["engine"], []).append(
            {
                "hop_p50_ms": s["chain"]["hop_ms"].get("p50"),
                "hop_p99_ms": s["chain"]["hop_ms"].get("p99"),
                "chain_wall_s": s["chain"]["wall_s"],
                "dag_wall_s": s["dag"]["wall_s"],
                "burst_runs_per_min": s["burst"]["runs_per_min"],
                "burst_latency_p50_s": s["burst"]["latency_s"].get("p50"),
                "burst_latency_p95_s": s["burst"]["latency_s"].get("p95"),
                "writes_per_step": s["chain"]["versions_per_step"],
                "cpu_s": s.get("cpu_s"),
                "peak_rss_mib": s.get("peak_rss_mib"),
            }
        )
    out: dict[str, dict[str, float | None]] = {}
    for engine, rows in per.items():
        out[engine] = {}
        for key in rows[0]:
            vals = [v for r in rows if (v := r[key]) is not None]
            out[engine][key] = statistics.median(vals) if vals else None
    return out


def build_argo() -> tuple[Path, Path]:
    proc = subprocess.run(
        ["bash", str(REPO / "bench/argo/build.sh"), "--crds"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"bench/argo/build.sh failed:\n{proc.stderr[-3000:]}")
    bin_dir, crds = proc.stdout.split()[-2:]
    return Path(bin_dir) / "workflow-controller", Path(crds)


def install_argo_crds(kubectl: Kubectl, crds: Path) -> None:
    kubectl("apply", "-k", str(crds))  # its kustomization.yaml lists them
    kubectl("wait", "--for=condition=Established", "crd/workflows.argoproj.io", "--timeout=60s")


def make_engine(key: str, kubectl: Kubectl, client: ApiClient, ns: str, argo: Path) -> Engine:
    if key == "szal":
        return Szal(kubectl, client, ns)
    if key in ARGO_ENGINES:
        return Argo(kubectl, client, ns, binary=argo, tuned=key == "argo_tuned")
    if key == "floor":
        return Floor(kubectl, client, ns)
    raise SystemExit(f"--engines: unknown engine {key!r} (szal, argo_default, argo_tuned, floor)")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    sizes = w.Sizes.quick() if args.quick else w.Sizes()
    kubeconfig = Path(args.kubeconfig)
    deadline = time.monotonic() + 600
    while not kubeconfig.exists():  # noqa: ASYNC240 (before anything runs)
        if time.monotonic() > deadline:
            raise SystemExit(f"no kubeconfig at {kubeconfig}: is the test cluster up?")
        await asyncio.sleep(2)
    kubectl = Kubectl(binary=Path(args.kubectl), kubeconfig=kubeconfig)
    order = [e for e in args.engines.split(",") if e]
    binary, version = Path("/nonexistent"), ""
    if any(e in ARGO_ENGINES for e in order + args.scale_engines.split(",") * args.scale):
        binary, crds = build_argo()
        version = _argo_version(binary)
        install_argo_crds(kubectl, crds)
    ensure_crds(kubectl)
    client = ApiClient(load_credentials(kubeconfig))
    tag = secrets.token_hex(3)
    sessions: list[dict[str, Any]] = []
    scale: list[dict[str, Any]] = []
    namespaces: list[str] = []
    try:
        plan = [(f"round {r + 1}", key) for r in range(args.rounds) for key in order]
        if args.scale:
            plan += [("scale", key) for key in args.scale_engines.split(",") if key]
        for label, key in plan:
            ns = f"versus-{tag}-{key.replace('_', '-')}-{len(namespaces) + 1}"
            kubectl("create", "namespace", ns)
            namespaces.append(ns)
            await _default_sa(kubectl, ns)
            engine = make_engine(key, kubectl, client, ns, binary)
            print(f"[versus] {label}: {key} in {ns} (load {load_average()})", file=sys.stderr)
            if label == "scale":
                scale.append(await scale_session(engine, args.scale_runs, 5))
            else:
                result = await session(engine, sizes)
                result["round"] = int(label.split()[1])
                sessions.append(result)
            if not args.keep:
                kubectl("delete", "namespace", ns, "--wait=false", check=False)
            # so far, in case the rest is interrupted
            partial = json.dumps({"sessions": sessions, "scale": scale}, indent=2)
            Path(args.json).write_text(partial)  # noqa: ASYNC240 (between sessions)
    finally:
        await client.close()
        await asyncio.sleep(0.25)  # aiohttp: let the TLS transports close
        if not args.keep:
            for ns in namespaces:
                kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "sizes": sizes.__dict__,
        "versions": {"argo_workflows": version or "-", "szal": _szal_version()},
        "argo_tuned": {
            "env": ARGO_TUNED_ENV,
            "args": ARGO_TUNED_ARGS,
            "configmap": "resourceRateLimit 1000/1000",
        },
        "load_average_end": load_average(),
        "sessions": sessions,
        "figures": figures(sessions),
        "scale": scale,
    }


def _argo_version(binary: Path) -> str:
    out = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        if line.strip().startswith("workflow-controller:"):
            return line.split(":", 1)[1].strip()
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def _szal_version() -> str:
    from importlib.metadata import version

    return version("szal")


async def _default_sa(kubectl: Kubectl, ns: str) -> None:
    deadline = time.monotonic() + 30
    while kubectl("get", "serviceaccount", "default", "-n", ns, check=False).returncode:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default ServiceAccount in {ns}")
        await asyncio.sleep(0.2)


def goals(fig: dict[str, dict[str, float | None]]) -> list[str]:
    """Issue 17's goals for Szál against the floor, each met or not."""
    sz, fl = fig.get("szal") or {}, fig.get("floor") or {}
    out = []
    checks = [
        ("DAG wall within 5% of the floor's", "dag_wall_s", lambda a, b: a <= b * 1.05),
        (
            "burst throughput at least 80% of the floor's",
            "burst_runs_per_min",
            lambda a, b: a >= 0.8 * b,
        ),
    ]
    for label, key, ok in checks:
        a, b = sz.get(key), fl.get(key)
        if a is not None and b is not None:
            out.append(f"goal: {label}: {'met' if ok(a, b) else 'NOT met'} ({a:.1f} vs {b:.1f})")
    p99 = sz.get("hop_p99_ms")
    if p99 is not None:
        out.append(f"goal: hop p99 under 50 ms: {'met' if p99 < 50 else 'NOT met'} ({p99:.0f} ms)")
    return out


def report(r: dict[str, Any]) -> str:
    loads = ", ".join(f"{s['engine']} {s['chain']['load'][0]:.1f}" for s in r["sessions"])
    lines = [
        f"Szál {r['versions']['szal']} against Argo Workflows {r['versions']['argo_workflows']}, "
        f"{r['date']}, sizes {r['sizes']}",
        f"load average (1 min) after each chain: {loads} - the figures are under that load",
        "",
        w.render_table(r["figures"]),
        "",
    ]
    if r["sessions"]:
        lines.append(
            f"DAG ideal schedule: {r['sessions'][0]['dag']['ideal_schedule_s']:.0f} s;"
            " ratios are 'times worse' (> 1: the first is slower or costlier)"
        )
    lines += goals(r["figures"])
    for sc in r.get("scale", []):
        x = sc["scale"]
        lines.append(
            f"scale, {sc['engine']}: {x['runs']} concurrent runs of {x['steps_per_run']} 1 s steps"
            f" in {x['wall_s']:.1f} s ({x['runs_per_min']:.0f} runs/min), hop p50"
            f" {x['hop_ms'].get('p50', 0):.0f} ms p99 {x['hop_ms'].get('p99', 0):.0f} ms,"
            f" {x['versions_per_step']:.2f} versions/step, CPU {sc.get('cpu_s', 0):.1f} s,"
            f" peak RSS {sc.get('peak_rss_mib', 0):.0f} MiB, failed {len(x['failed'])},"
            f" load {x['load'][0]:.1f}"
        )
    return "\n".join(lines)


def main() -> int:
    default_kubeconfig = os.environ.get("SZAL_E2E_KUBECONFIG", "/tmp/szal-cluster/kubeconfig")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--kubeconfig", default=default_kubeconfig)
    parser.add_argument("--kubectl", default=os.environ.get("SZAL_KUBECTL", "kubectl"))
    parser.add_argument("--quick", action="store_true", help="small workloads, for development")
    parser.add_argument("--rounds", type=int, default=1, help="alternating sessions per engine")
    parser.add_argument(
        "--engines",
        default="szal,argo_default,argo_tuned,floor",
        help="comma-separated, in session order (szal, argo_default, argo_tuned, floor)",
    )
    parser.add_argument(
        "--scale", action="store_true", help="also: many concurrent 5-step runs per engine"
    )
    parser.add_argument("--scale-runs", type=int, default=1000)
    parser.add_argument(
        "--scale-engines", default="szal,argo_default", help="engines of the scale scenario"
    )
    parser.add_argument("--json", default="bench-versus.json", help="where the raw results go")
    parser.add_argument("--keep", action="store_true", help="keep the namespaces")
    args = parser.parse_args()
    args.kubectl = find_kubectl(args.kubectl)
    results = asyncio.run(bench(args))
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(report(results))
    print(f"raw results: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
