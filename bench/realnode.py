"""Pod latency on the real test node (e2e/cluster/node-up.sh), from a watch.

    python -m bench.realnode [--pods 5] [--kubeconfig PATH]

Creates busybox pods one after another on node ``szal-real-0`` and times,
with this process's monotonic clock (object timestamps have one-second
resolution), pod create -> Running (``sleep`` pods) and create -> Succeeded
(``true`` pods), polling every 50 ms. The same figures for a kwok node are
printed beside them as the reference measured in the same run. Prints a table;
nothing is asserted (figures are for docs/testing.md).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _kubectl() -> list[str]:
    bin_dir = subprocess.run(
        ["bash", str(REPO / "e2e/cluster/build.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    return [f"{bin_dir}/kubectl"]


def _pod(name: str, command: list[str], real: bool) -> dict[str, object]:
    spec: dict[str, object] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "containers": [
            {
                "name": "c",
                "image": "localhost/szal/busybox:1.35" if real else "busybox:1.36",
                "imagePullPolicy": "Never",
                "command": command,
            }
        ],
    }
    if real:
        spec["nodeSelector"] = {"szal.dev/real-node": "true"}
        spec["tolerations"] = [{"key": "szal.dev/real-node", "operator": "Exists"}]
    else:
        spec["nodeSelector"] = {"type": "kwok"}
        spec["tolerations"] = [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _time_to(kubectl: list[str], ns: str, pod: dict[str, object], phase: str) -> float:
    name = str(pod["metadata"]["name"])  # type: ignore[index]
    started = time.monotonic()
    subprocess.run([*kubectl, "-n", ns, "create", "-f", "-"], input=json.dumps(pod),
                   text=True, capture_output=True, check=True)  # fmt: skip
    while True:
        got = subprocess.run(
            [*kubectl, "-n", ns, "get", "pod", name, "-o", "jsonpath={.status.phase}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        # kwok's stages may finish a pod before a poll sees it Running.
        if got == phase or (phase == "Running" and got == "Succeeded"):
            return time.monotonic() - started
        if time.monotonic() - started > 60:
            raise SystemExit(f"pod {name} not {phase} within 60 s (last: {got!r})")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5)
    parser.add_argument("--kubeconfig", default=os.environ.get("SZAL_E2E_KUBECONFIG",
                        "/tmp/szal-cluster/kubeconfig"))  # fmt: skip
    args = parser.parse_args()
    kubectl = [*_kubectl(), "--kubeconfig", args.kubeconfig]
    ns = f"bench-{secrets.token_hex(3)}"
    subprocess.run([*kubectl, "create", "namespace", ns], capture_output=True, check=True)
    try:
        while subprocess.run([*kubectl, "-n", ns, "get", "sa", "default"],
                             capture_output=True).returncode:  # fmt: skip
            time.sleep(0.1)
        rows = []
        for real in (True, False):
            running = [
                _time_to(kubectl, ns, _pod(f"s{int(real)}-{i}", ["sleep", "300"], real), "Running")
                for i in range(args.pods)
            ]
            done = [
                _time_to(kubectl, ns, _pod(f"t{int(real)}-{i}", ["true"], real), "Succeeded")
                for i in range(args.pods)
            ]
            rows.append(("real node" if real else "kwok node (reference)", running, done))
        print(f"{'node':<24}{'create->Running p50/max':>26}{'create->Succeeded p50/max':>28}")
        for label, running, done in rows:
            run_ms = f"{statistics.median(running) * 1000:>14.0f} /{max(running) * 1000:>6.0f} ms"
            done_ms = f"{statistics.median(done) * 1000:>16.0f} /{max(done) * 1000:>6.0f} ms"
            print(f"{label:<24}{run_ms}{done_ms}")
    finally:
        subprocess.run([*kubectl, "delete", "namespace", ns, "--wait=false"], capture_output=True)


if __name__ == "__main__":
    main()
