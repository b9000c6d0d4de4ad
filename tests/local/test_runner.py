"""The local runner's process handling, through ``szal run``.

Covers: the environment a step gets (SZAL_RUN, SZAL_STEP, SZAL_ATTEMPT,
SZAL_PARAM_*, SZAL_CONTEXT, SZAL_OUTPUTS), outputs (valid, not JSON, not an
object, over 4 KiB), captured stdout and stderr, a command that does not
exist, timeouts killing the whole process group (a grandchild too),
background processes not outliving their step, and ``--max-parallel``.
Ordering and retry semantics are the planner's and tested in tests/engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from tests.local.conftest import Result, pid_alive

Szal = Callable[..., Result]
Write = Callable[[str], Path]

HEAD = """\
apiVersion: szal.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
"""


def test_environment(szal_inline: Szal, workflow_file: Write, db: Path) -> None:
    path = workflow_file(
        HEAD
        + """\
  params: [{name: target-env, default: dev}, {name: n, default: 2}]
  steps:
  - name: first
    script: |
      echo '{"k": [1, 2]}' > "$SZAL_OUTPUTS"
  - name: probe
    env: [{name: SZAL_STEP, value: forged}, {name: MINE, value: 'yes'}]
    script: |
      python3 - <<'PY'
      import json, os
      keys = ["SZAL_RUN", "SZAL_STEP", "SZAL_ATTEMPT", "SZAL_PARAM_TARGET_ENV",
              "SZAL_PARAM_N", "MINE"]
      out = {k: os.environ.get(k) for k in keys}
      out["context"] = json.loads(os.environ["SZAL_CONTEXT"])
      out["outputs_file"] = os.path.basename(os.environ["SZAL_OUTPUTS"])
      with open(os.environ["SZAL_OUTPUTS"], "w") as fh:
          json.dump(out, fh)
      PY
"""
    )
    result = szal_inline("run", "--db", db, "--json", "--name", "env-run", path)
    assert result.code == 0, result.err
    seen = result.status["steps"]["probe"]["outputs"]
    assert seen["SZAL_RUN"] == "env-run"
    assert seen["SZAL_STEP"] == "probe"  # SZAL_* cannot be forged by env
    assert seen["SZAL_ATTEMPT"] == "1"
    assert seen["SZAL_PARAM_TARGET_ENV"] == "dev"
    assert seen["SZAL_PARAM_N"] == "2"
    assert seen["MINE"] == "yes"
    assert seen["context"] == {
        "params": {"target-env": "dev", "n": 2},
        "steps": {"first": {"phase": "Succeeded", "exitCode": 0, "outputs": {"k": [1, 2]}}},
    }
    assert seen["outputs_file"] == "outputs.json"


def test_bad_outputs_fail_the_step(szal_inline: Szal, workflow_file: Write, db: Path) -> None:
    path = workflow_file(
        HEAD
        + """\
  mode: Parallel
  steps:
  - name: not-json
    script: echo 'coverage=0.9' > "$SZAL_OUTPUTS"
  - name: not-object
    script: |
      echo '[1, 2]' > "$SZAL_OUTPUTS"
  - name: too-big
    script: |
      python3 -c 'import json; print(json.dumps({"x": "a" * 5000}))' > "$SZAL_OUTPUTS"
  - name: empty
    command: ["true"]
"""
    )
    result = szal_inline("run", "--db", db, "--json", path)
    assert result.code == 1
    steps = result.status["steps"]
    assert steps["not-json"]["phase"] == "Failed"
    assert "not valid JSON" in steps["not-json"]["message"]
    assert "JSON object" in steps["not-object"]["message"]
    assert "4096-byte limit" in steps["too-big"]["message"]
    assert steps["empty"]["phase"] == "Succeeded" and "outputs" not in steps["empty"]


def test_output_captured_and_command_not_found(
    szal_inline: Szal, workflow_file: Write, db: Path
) -> None:
    path = workflow_file(
        HEAD
        + """\
  mode: Parallel
  steps:
  - name: chatty
    script: echo to-stdout; echo to-stderr >&2
  - name: missing
    command: [/no/such/program, --flag]
"""
    )
    result = szal_inline("run", "--db", db, "--json", "--name", "cap", path)
    assert result.code == 1
    missing = result.status["steps"]["missing"]
    assert missing["exitCode"] == 127
    assert "command not found: /no/such/program" in missing["message"]
    logs = szal_inline("show", "--db", db, "cap", "--logs", "chatty").out
    assert logs == "to-stdout\nto-stderr\n"


def test_timeout_kills_the_process_group(
    szal_inline: Szal, workflow_file: Write, db: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    path = workflow_file(
        HEAD
        + f"""\
  steps:
  - name: slow
    timeout: 500ms
    script: |
      sleep 60 &
      echo $! > {pids}
      wait
"""
    )
    result = szal_inline("run", "--db", db, "--json", path, "--grace-period", "5")
    assert result.code == 1
    assert result.status["steps"]["slow"]["phase"] == "TimedOut"
    grandchild = int(pids.read_text())
    deadline = time.monotonic() + 5
    while pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(grandchild)


def test_sigterm_ignored_then_sigkill_after_grace(
    szal_inline: Szal, workflow_file: Write, db: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    path = workflow_file(
        HEAD
        + f"""\
  steps:
  - name: stubborn
    timeout: 300ms
    script: |
      trap '' TERM
      echo $$ > {pids}
      while true; do sleep 0.1; done
"""
    )
    started = time.monotonic()
    result = szal_inline("run", "--db", db, "--json", path, "--grace-period", "0.5")
    assert result.code == 1
    assert time.monotonic() - started < 10
    assert not pid_alive(int(pids.read_text()))


def test_background_jobs_do_not_outlive_their_step(
    szal_inline: Szal, workflow_file: Write, db: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    path = workflow_file(
        HEAD
        + f"""\
  steps:
  - name: leaves-a-job
    script: |
      sleep 60 >/dev/null 2>&1 &
      echo $! > {pids}
"""
    )
    assert szal_inline("run", "--db", db, path).code == 0
    background = int(pids.read_text())
    deadline = time.monotonic() + 5
    while pid_alive(background) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(background)


def test_max_parallel(szal_inline: Szal, workflow_file: Write, db: Path) -> None:
    steps = "\n".join(f"  - {{name: s{i}, script: sleep 0.3}}" for i in range(4))
    path = workflow_file(HEAD + "  mode: Parallel\n  steps:\n" + steps + "\n")
    result = szal_inline("run", "--db", db, "--json", "--max-parallel", "2", path)
    assert result.code == 0
    spans = sorted((s["startedAt"], s["finishedAt"]) for s in result.status["steps"].values())
    for i, (start, _) in enumerate(spans):
        running = sum(1 for s, f in spans[:i] if f > start)
        assert running < 2
    assert szal_inline("run", "--db", db, "--max-parallel", "0", path).code == 2


def test_history_rows_for_retries(szal_inline: Szal, db: Path) -> None:
    szal_inline("run", "--db", db, "--name", "r", "examples/retries-backoff.yaml")
    shown = json.loads(szal_inline("show", "--db", db, "r", "--json").out)
    flaky = [a for a in shown["attempts"] if a["step"] == "flaky"]
    assert [(a["attempt"], a["phase"], a["exit_code"]) for a in flaky] == [
        (1, "Failed", 1),
        (2, "Failed", 1),
        (3, "Succeeded", 0),
    ]
    assert all(a["started_at"] and a["finished_at"] for a in flaky)
    events = [(e["step"], e["event"]) for e in shown["events"]]
    assert events[0] == (None, "RunStarted") and events[-1] == (None, "RunSucceeded")
    assert events.count(("flaky", "Retrying")) == 2
