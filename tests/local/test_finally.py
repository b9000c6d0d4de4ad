"""``szal run`` with finally steps (``spec.finally``): real processes, real signals.

Covers: finally steps running after a failed main step and reading
``run.phase`` and main outputs; a failed finally step failing the run and
exit code 1; SIGINT cancelling the main steps then running the finally
steps (exit 130); a second SIGINT skipping them; ``szal validate`` refusing
wiring across main and finally (exit 2). Deliberately not: planner details
(tests/engine/test_planner_finally.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.local.conftest import Result, szal_process

Write = Callable[[str], Path]
Szal = Callable[..., Result]


def test_finally_after_failure_reads_the_outcome(
    szal_inline: Szal, workflow_file: Write, db: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "cleaned"
    path = workflow_file(f"""\
        apiVersion: szal.dev/v1alpha1
        kind: Workflow
        metadata: {{name: fin}}
        spec:
          steps:
          - name: build
            script: |
              echo '{{"id": 7}}' > "$SZAL_OUTPUTS"
          - name: test
            command: ["false"]
          finally:
          - name: cleanup
            when: "run.phase == 'Failed' && steps.build.outputs.id == 7"
            script: echo "$SZAL_STEP" > {marker}
          - name: celebrate
            when: "run.phase == 'Succeeded'"
            command: ["true"]
        """)
    result = szal_inline("run", "--db", db, "--json", path)
    assert result.code == 1
    status = json.loads(result.out)
    assert status["phase"] == "Failed" and status["message"] == "step 'test' failed"
    steps = status["steps"]
    assert steps["cleanup"]["phase"] == "Succeeded" and steps["cleanup"]["finally"] is True
    assert steps["celebrate"]["phase"] == "Skipped"
    assert steps["cleanup"]["startedAt"] >= steps["test"]["finishedAt"]
    assert status["progress"] == "4/4"
    assert marker.read_text() == "cleanup\n"


def test_a_failed_finally_step_fails_a_succeeded_run(
    szal_inline: Szal, workflow_file: Write, db: Path
) -> None:
    path = workflow_file("""\
        apiVersion: szal.dev/v1alpha1
        kind: Workflow
        metadata: {name: fin}
        spec:
          steps: [{name: a, command: ["true"]}]
          finally: [{name: report, command: ["false"]}]
        """)
    result = szal_inline("run", "--db", db, "--json", path)
    assert result.code == 1
    status = json.loads(result.out)
    assert status["phase"] == "Failed"
    assert status["message"] == "finally step 'report' failed"


def test_validate_refuses_main_steps_depending_on_finally(
    szal_inline: Szal, workflow_file: Write
) -> None:
    path = workflow_file("""\
        apiVersion: szal.dev/v1alpha1
        kind: Workflow
        metadata: {name: fin}
        spec:
          mode: Dag
          steps: [{name: a, command: ["true"], dependsOn: [f]}]
          finally: [{name: f, command: ["true"]}]
        """)
    result = szal_inline("validate", path)
    assert result.code == 2
    assert "step 'a': dependsOn: step 'f' is a finally step" in result.err


def signalled_workflow(workflow_file: Write, started: Path, marker: Path) -> Path:
    return workflow_file(f"""\
        apiVersion: szal.dev/v1alpha1
        kind: Workflow
        metadata: {{name: fin}}
        spec:
          steps:
          - name: sleeper
            script: echo up > {started}; exec sleep 60
          finally:
          - name: cleanup
            when: "run.phase == 'Cancelled'"
            script: echo started > {marker}; sleep 2; echo done >> {marker}
        """)


def wait_for(path: Path, proc: subprocess.Popen[str], text: str = "", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"szal exited early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{path} never had {text!r}")


def test_sigint_runs_finally_then_exits_130(workflow_file: Write, tmp_path: Path, db: Path) -> None:
    started, marker = tmp_path / "started", tmp_path / "marker"
    proc = szal_process(
        "run", "--db", db, "--json", signalled_workflow(workflow_file, started, marker)
    )
    wait_for(started, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    status = json.loads(out)
    assert status["phase"] == "Cancelled"
    assert status["steps"]["sleeper"]["phase"] == "Cancelled"
    assert status["steps"]["cleanup"]["phase"] == "Succeeded"
    assert marker.read_text() == "started\ndone\n"


def test_a_second_sigint_skips_finally(workflow_file: Write, tmp_path: Path, db: Path) -> None:
    started, marker = tmp_path / "started", tmp_path / "marker"
    proc = szal_process(
        "run", "--db", db, "--json", signalled_workflow(workflow_file, started, marker)
    )
    wait_for(started, proc)
    proc.send_signal(signal.SIGINT)
    wait_for(marker, proc, "started")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    status = json.loads(out)
    assert status["phase"] == "Cancelled"
    assert status["steps"]["cleanup"]["phase"] == "Cancelled"
    assert "done" not in marker.read_text()
