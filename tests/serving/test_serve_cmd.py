"""``szal serve`` as a real process over the history a real ``szal run`` wrote.

Covers: the served address is loopback, a finished local run is listed and
readable (attempts, logs) over HTTP and counted in /metrics (run, hops),
SIGTERM stops the server with exit 0, and bad flags (of ``szal serve``, and
``szal operator``'s API flags) exit 2 naming the flag. Does not cover the
API's details (test_rest.py) or streams (test_streams.py).
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from tests.local.conftest import EXAMPLES


def scraped(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text as {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def start_serve(db: Path) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "szal",
        "serve",
        "--db",
        str(db),
        "--port",
        "0",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
    match = re.match(r"szal serve: (http://127\.0\.0\.1:\d+)/ \(history: ", line)
    assert match, line
    return process, match.group(1)


async def test_serves_a_local_run(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "szal",
        "run",
        "--db",
        str(db),
        str(EXAMPLES / "dag-diamond.yaml"),
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(run.wait(), 120) == 0
    process, url = await start_serve(db)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/api/v1/workflowruns") as response:
                assert response.status == 200
                runs = (await response.json())["items"]
            assert len(runs) == 1 and runs[0]["phase"] == "Succeeded"
            run = runs[0]
            path = f"/api/v1/namespaces/{run['namespace']}/workflowruns/{run['name']}"
            async with http.get(url + path) as response:
                detail = await response.json()
            steps = {a["step"] for a in detail["attempts"]}
            assert len(steps) >= 3 and all(a["phase"] == "Succeeded" for a in detail["attempts"])
            assert detail["events"][-1]["new"] == "Succeeded"
            step = sorted(steps)[0]
            async with http.get(url + f"{path}/steps/{step}/logs") as response:
                assert response.status == 200
                assert await response.text()
            # /metrics: the same run metrics as the operator's, from the event log.
            labels = {"namespace": run["namespace"], "workflow": run["workflow"]}
            deadline = time.monotonic() + 20
            while True:
                async with http.get(url + "/metrics") as response:
                    found = scraped(await response.text())
                finished = (
                    "szal_runs_finished_total",
                    frozenset({**labels, "phase": "Succeeded"}.items()),
                )
                if found.get(finished) == 1:
                    break
                assert time.monotonic() < deadline, found
                await asyncio.sleep(0.1)
            assert found[("szal_hop_latency_seconds_count", frozenset(labels.items()))] >= 3
            assert found[("szal_stream_clients", frozenset())] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


def test_bad_flags_exit_2(tmp_path: Path) -> None:
    for flags, named in (
        (["--port", "70000"], "--port 70000"),
        (["--max-stream-clients", "0"], "--max-stream-clients"),
        (["--stream-heartbeat", "0"], "--stream-heartbeat"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "szal", "serve", "--db", str(tmp_path / "h.db"), *flags],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert named in result.stderr


def test_operator_api_flags_exit_2() -> None:
    for flags, named in (
        (["--api-port", "70000"], "--api-port 70000"),
        (["--api-port", "8090", "--api-auth-cache-ttl", "-1"], "--api-auth-cache-ttl"),
        (["--api-port", "8090", "--stream-client-buffer", "0"], "--stream-client-buffer"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "szal", "operator", *flags],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert named in result.stderr
