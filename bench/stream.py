"""Benchmark of the run event streams: many SSE clients on one run of the test cluster.

    python -m bench.stream [--kubeconfig PATH] [--clients 1000] [--chain 20] [--json]

Needs the test cluster (``e2e/cluster/up.sh``) and Postgres (``$SZAL_TEST_PG_DSN``,
else the test server ``tests/postgres/pg.sh`` starts). Starts ``szal operator``
itself with ``--history-dsn`` and ``--api-port`` (``--api-no-auth``: one token
for every client would cost one TokenReview and one SubjectAccessReview, cached;
auth is not what is measured) in a fresh namespace, then runs the same chain of
1 s kwok steps twice:

1. **without clients**: hop latency (step *i*'s pod seen Succeeded -> step
   *i+1*'s pod seen created, from this process's own watches, as bench.operator);
2. **with N SSE clients** connected to the second run's stream before it
   starts: the same hop latency, and the **delivery latency** of every event
   to every client - the client's receive time minus the event's ``at`` (the
   operator's wall clock when the planner made the transition, which is
   before the status write and the history commit; one machine, one clock),
   so it bounds "commit -> client" from above.

Printed: hop p50/p95/p99 for both runs, delivery p50/p99/max, events per
client, and the operator's peak RSS. Goal (issue 15): delivery p99 < 100 ms,
hop latency unchanged within noise.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.operator import (  # noqa: E402
    Watcher,
    bench_namespace,
    chain_spec,
    percentile,
    wait_default_account,
)
from e2e.operator_support import OperatorProcess, free_port, run, workflow  # noqa: E402
from tests.postgres.server import shared_dsn  # noqa: E402

from szal.engine.timestamps import parse_timestamp  # noqa: E402
from szal.runners.kubernetes.client import ApiClient, load_credentials  # noqa: E402


def hops_ms(watcher: Watcher, name: str, steps: int) -> list[float]:
    times = watcher.step_times(name)
    order = [f"s{i:03d}" for i in range(steps)]
    return [
        (times[b][0] - times[a][1]) * 1000
        for a, b in itertools.pairwise(order)
        if times[a][1] is not None and b in times
    ]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


async def client(
    http: aiohttp.ClientSession, url: str, latencies: list[float], ready: list[int]
) -> int:
    """One SSE client until the stream ends; returns how many events it got."""
    received = 0
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        ready.append(1)
        data = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                data = line[6:]
            elif line.startswith("event: end"):
                return received
            elif not line and data:
                event = json.loads(data)
                if "at" in event and event.get("id"):
                    latencies.append((time.time() - parse_timestamp(event["at"])) * 1000)
                    received += 1
                data = ""
    return received


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    kubeconfig, kubectl, namespace = bench_namespace(args)
    port = free_port()
    op = OperatorProcess(
        kubeconfig,
        [namespace],
        "--history-dsn",
        shared_dsn(),
        "--api-port",
        str(port),
        "--api-host",
        "127.0.0.1",
        "--api-no-auth",
        "--max-stream-clients",
        str(args.clients + 10),
        "-q",
    )
    api = ApiClient(load_credentials(kubeconfig))
    watcher = Watcher(api, namespace)
    results: dict[str, Any] = {"namespace": namespace, "clients": args.clients}
    try:
        await wait_default_account(kubectl, namespace)
        op.start()
        await watcher.start()
        await asyncio.sleep(1.0)
        kubectl.apply(workflow("chain", chain_spec(args.chain)), namespace)

        kubectl.apply(run("quiet", "chain"), namespace)
        await watcher.wait_finished("quiet", timeout=args.chain * 10 + 60)
        results["hop_ms_without_clients"] = summary(hops_ms(watcher, "quiet", args.chain))

        run_object = run("watched", "chain")
        run_object["spec"]["suspend"] = True  # exists (and is streamable) before it starts
        kubectl.apply(run_object, namespace)
        await asyncio.sleep(1.0)
        latencies: list[float] = []
        ready: list[int] = []
        url = f"http://127.0.0.1:{port}/api/v1/namespaces/{namespace}/workflowruns/watched/events"
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            clients = [
                asyncio.create_task(client(http, url, latencies, ready))
                for _ in range(args.clients)
            ]
            started = time.monotonic()
            while len(ready) < args.clients:
                if time.monotonic() - started > 120:
                    raise TimeoutError(f"only {len(ready)} clients connected")
                await asyncio.sleep(0.1)
            results["connect_s"] = time.monotonic() - started
            before = len(latencies)  # the suspended run's first events, replayed on connect
            del latencies[:before]
            kubectl(
                "patch",
                "workflowrun",
                "watched",
                "-n",
                namespace,
                "--type=merge",
                "-p",
                '{"spec":{"suspend":false}}',
            )
            await watcher.wait_finished("watched", timeout=args.chain * 10 + 120)
            counts = await asyncio.wait_for(asyncio.gather(*clients), 120)
        results["hop_ms_with_clients"] = summary(hops_ms(watcher, "watched", args.chain))
        results["delivery_ms"] = summary(latencies)
        results["events_per_client"] = {"min": min(counts), "max": max(counts)}
        results["operator_peak_rss_mib"] = op.peak_rss() / 1048576
        results["operator_metrics"] = {
            k: v for k, v in op.metrics().items() if k.startswith("szal_stream")
        }
    finally:
        await watcher.stop()
        await api.close()
        op.stop()
        if not args.keep:
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return results


def main() -> None:
    default_kubeconfig = os.environ.get("SZAL_E2E_KUBECONFIG", "/tmp/szal-cluster/kubeconfig")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", default=default_kubeconfig)
    parser.add_argument("--kubectl", default=os.environ.get("SZAL_KUBECTL", "kubectl"))
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the namespace")
    args = parser.parse_args()
    results = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for key in ("hop_ms_without_clients", "hop_ms_with_clients", "delivery_ms"):
        s = results[key]
        print(
            f"{key:24} n={s['n']:<6} p50={s['p50']:.1f} p95={s['p95']:.1f}"
            f" p99={s['p99']:.1f} max={s['max']:.1f}"
        )
    print(
        f"clients {results['clients']} connected in {results['connect_s']:.1f}s;"
        f" events per client {results['events_per_client']};"
        f" operator peak RSS {results['operator_peak_rss_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
