"""``szal run`` as a real process: signals, SIGKILL, and two runs on one database.

Covers: SIGINT exits 130 and SIGTERM 143 after stopping running steps (their
process groups are gone), the run recorded Cancelled, ``--json`` still
printing the status; a run whose ``szal run`` is SIGKILLed shows as
Interrupted in ``szal history``; two ``szal run`` processes writing one
history database at once both succeed and both runs are complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.local.conftest import pid_alive, szal_process

Write = Callable[[str], Path]


def wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise AssertionError(f"szal exited early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{path} never written")


def wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def long_workflow(workflow_file: Write, pids: Path) -> Path:
    return workflow_file(f"""\
        apiVersion: szal.dev/v1alpha1
        kind: Workflow
        metadata: {{name: long}}
        spec:
          mode: Dag
          steps:
          - name: sleeper
            script: |
              sleep 60 &
              echo $! > {pids}
              wait
          - name: after
            dependsOn: [sleeper]
            command: ["true"]
        """)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_cancels_the_run(
    workflow_file: Write, tmp_path: Path, db: Path, signum: signal.Signals, code: int
) -> None:
    pids = tmp_path / "pids"
    path = long_workflow(workflow_file, pids)
    proc = szal_process("run", "--db", db, "--json", "--name", "sig", path)
    grandchild = int(wait_for_file(pids, proc))
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    status = json.loads(out)
    assert status["phase"] == "Cancelled"
    assert status["steps"]["sleeper"]["phase"] == "Cancelled"
    assert status["steps"]["after"]["phase"] == "Cancelled"
    assert wait_dead(grandchild)
    history = szal_process("history", "--db", db)
    listed, _ = history.communicate(timeout=30)
    assert "Cancelled" in listed and "Interrupted" not in listed


def test_sigkill_leaves_an_interrupted_run(workflow_file: Write, tmp_path: Path, db: Path) -> None:
    pids = tmp_path / "pids"
    path = workflow_file(f"""\
        apiVersion: szal.dev/v1alpha1
        kind: Workflow
        metadata: {{name: doomed}}
        spec:
          steps:
          - name: first
            command: ["true"]
          - name: sleeper
            script: echo $$ > {pids}; exec sleep 60
        """)
    proc = szal_process("run", "--db", db, "--name", "doomed-1", path)
    step_pid = int(wait_for_file(pids, proc))
    proc.kill()
    proc.communicate(timeout=10)
    try:
        history = szal_process("history", "--db", db)
        out, err = history.communicate(timeout=30)
        assert history.returncode == 0, err
        row = next(line for line in out.splitlines() if line.startswith("doomed-1"))
        assert "Interrupted (Running)" in row
        show = szal_process("show", "--db", db, "doomed-1")
        shown, _ = show.communicate(timeout=30)
        assert "Interrupted (Running)" in shown
        assert "first" in shown and "Succeeded" in shown
    finally:
        # The step was in its own session; SIGKILL of szal cannot take it along.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(step_pid, signal.SIGKILL)


def test_two_runs_share_one_database(workflow_file: Write, db: Path) -> None:
    # Each run takes about a second, so the two overlap and contend for the lock.
    steps = "\n".join(f'  - {{name: s{i}, command: [sleep, "0.03"]}}' for i in range(25))
    path = workflow_file(
        "apiVersion: szal.dev/v1alpha1\nkind: Workflow\nmetadata: {name: chain}\n"
        "spec:\n  steps:\n" + steps + "\n"
    )
    procs = [szal_process("run", "--db", db, "--name", f"par-{i}", path) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    history = szal_process("history", "--db", db)
    out, _ = history.communicate(timeout=30)
    rows = [line for line in out.splitlines() if line.startswith("par-")]
    assert len(rows) == 2
    assert all("Succeeded" in row and "25/25" in row for row in rows)
    for i in range(2):
        show = szal_process("show", "--db", db, f"par-{i}", "--json")
        shown, _ = show.communicate(timeout=30)
        assert len(json.loads(shown)["attempts"]) == 25
