"""The ``szal`` command's contract: exit codes, messages, output formats.

Covers: invalid input exits 2 with a message naming file, step and field
(validate and run), params from ``-p`` (typed by the default), WorkflowRun
files (inline workflow, workflowRef in the same file), ``--json`` printing
exactly the status object, ``--help`` on every subcommand, ``python -m
szal``, ``history`` and ``show`` output. Signals and the runner's process
handling are in test_signals.py and test_runner.py.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.local.conftest import Result

from szal.cli import SUBCOMMANDS, build_parser
from szal.spec.status import status_document

Szal = Callable[..., Result]
Write = Callable[[str], Path]

BAD = """\
apiVersion: szal.dev/v1alpha1
kind: Workflow
metadata: {name: bad}
spec:
  mode: Dag
  steps:
  - name: build
    command: ["true"]
    dependsOn: [nowhere]
  - name: test
    command: ["true"]
    when: "steps.ghost.phase == 'Succeeded'"
"""


def test_validate_valid_and_invalid(szal_inline: Szal, workflow_file: Write) -> None:
    good = workflow_file("""\
        apiVersion: szal.dev/v1alpha1
        kind: Workflow
        metadata: {name: ok}
        spec: {steps: [{name: a, command: ["true"]}]}
        """)
    bad = workflow_file(BAD)
    result = szal_inline("validate", good, bad)
    assert result.code == 2
    assert f"{good}: valid" in result.out
    lines = result.err.splitlines()
    assert any(str(bad) in line and "'build'" in line and "dependsOn" in line for line in lines)
    assert any(str(bad) in line and "'test'" in line and "when" in line for line in lines)
    assert szal_inline("validate", good).code == 0


def test_run_invalid_file_exits_2_naming_file_step_field(
    szal_inline: Szal, workflow_file: Write, db: Path
) -> None:
    bad = workflow_file(BAD)
    result = szal_inline("run", "--db", db, bad)
    assert result.code == 2
    assert str(bad) in result.err
    assert "step 'build'" in result.err and "dependsOn" in result.err
    assert "step 'test'" in result.err and "when" in result.err
    assert not db.exists() or szal_inline("history", "--db", db).out == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Workflow\n", "apiVersion"),
        ("a: [unclosed\n", "invalid YAML"),
        ("apiVersion: szal.dev/v1alpha1\nkind: Pod\n", "kind"),
        (
            "apiVersion: szal.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\n"
            "spec: {steps: [{name: s, command: [x], timeout: 10parsecs}]}\n",
            "step 's': timeout: invalid duration",
        ),
    ],
)
def test_run_malformed_documents(
    szal_inline: Szal, workflow_file: Write, db: Path, text: str, expected: str
) -> None:
    path = workflow_file(text)
    result = szal_inline("run", "--db", db, path)
    assert result.code == 2
    assert str(path) in result.err and expected in result.err


def test_missing_file_is_invalid_input(szal_inline: Szal, tmp_path: Path, db: Path) -> None:
    result = szal_inline("run", "--db", db, tmp_path / "nope.yaml")
    assert result.code == 2 and "nope.yaml" in result.err


PARAMS = """\
apiVersion: szal.dev/v1alpha1
kind: Workflow
metadata: {name: params}
spec:
  params: [{name: n, default: 1}, {name: who}]
  steps:
  - name: big
    when: "params.n > 2"
    command: ["true"]
"""


def test_params_typed_and_checked(szal_inline: Szal, workflow_file: Write, db: Path) -> None:
    path = workflow_file(PARAMS)
    missing = szal_inline("run", "--db", db, path)
    assert missing.code == 2 and "params.who" in missing.err and "missing" in missing.err
    unknown = szal_inline("run", "--db", db, path, "-p", "who=x", "-p", "color=red")
    assert unknown.code == 2 and "params.color" in unknown.err
    not_int = szal_inline("run", "--db", db, path, "-p", "who=x", "-p", "n=three")
    assert not_int.code == 2 and "params.n" in not_int.err
    ran = szal_inline("run", "--db", db, "--json", path, "-p", "who=x", "-p", "n=3")
    assert ran.code == 0
    assert ran.status["steps"]["big"]["phase"] == "Succeeded"  # 3 > 2 as a number
    small = szal_inline("run", "--db", db, "--json", path, "-p", "who=x")
    assert small.status["steps"]["big"]["message"] == "condition not met"


def test_workflowrun_with_ref_and_inline(szal_inline: Szal, workflow_file: Write, db: Path) -> None:
    with_ref = workflow_file("""\
        apiVersion: szal.dev/v1alpha1
        kind: WorkflowRun
        metadata: {name: r1}
        spec: {workflowRef: {name: wf}, params: {word: hi}}
        ---
        apiVersion: szal.dev/v1alpha1
        kind: Workflow
        metadata: {name: wf}
        spec:
          params: [{name: word}]
          steps: [{name: say, script: 'echo "{\\"w\\": \\"$SZAL_PARAM_WORD\\"}" > $SZAL_OUTPUTS'}]
        """)
    result = szal_inline("run", "--db", db, "--json", with_ref)
    assert result.code == 0, result.err
    assert result.status["steps"]["say"]["outputs"] == {"w": "hi"}
    assert result.status["workflow"]["name"] == "wf"
    inline = workflow_file("""\
        apiVersion: szal.dev/v1alpha1
        kind: WorkflowRun
        metadata: {name: r2}
        spec:
          workflow: {steps: [{name: a, command: ["false"]}]}
        """)
    failed = szal_inline("run", "--db", db, "--json", inline)
    assert failed.code == 1
    assert failed.status["phase"] == "Failed"
    dangling = workflow_file("""\
        apiVersion: szal.dev/v1alpha1
        kind: WorkflowRun
        metadata: {name: r3}
        spec: {workflowRef: {name: missing}}
        """)
    bad = szal_inline("run", "--db", db, dangling)
    assert bad.code == 2 and "spec.workflowRef.name" in bad.err and "missing" in bad.err
    assert szal_inline("validate", dangling).code == 2


def test_json_is_exactly_the_status(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", Path("examples/sequential-pipeline.yaml"))
    assert result.code == 0
    status = result.status
    assert set(status) == {
        "phase",
        "conditions",
        "progress",
        "startedAt",
        "finishedAt",
        "duration",
        "workflow",
        "steps",
    }
    assert status["conditions"][0]["type"] == "Succeeded"
    assert status["conditions"][0]["status"] == "True"
    assert status["progress"] == "4/4"
    assert status["startedAt"].endswith("Z") and len(status["startedAt"]) == 24
    # The status model's shape and key order, the same as a cluster run's status.
    assert status_document(status) == status and list(status_document(status)) == list(status)
    # Progress went to stderr, so stdout is only the JSON.
    assert "fetch" in result.err


def test_plain_progress_one_line_per_transition(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, Path("examples/sequential-pipeline.yaml"))
    assert result.code == 0
    lines = result.out.splitlines()
    assert any("fetch  Pending -> Running" in line for line in lines)
    assert any("publish  Running -> Succeeded" in line for line in lines)
    assert "Succeeded" in lines[-2]


def test_live_tree_on_a_terminal(db: Path) -> None:
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "szal", "run", "--db", str(db), "examples/hierarchical.yaml"],
        stdout=child_fd,
        stderr=child_fd,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(child_fd)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # EIO: the child side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    assert proc.wait(timeout=60) == 0
    screen = b"".join(chunks).decode("utf-8", errors="replace")
    assert "\x1b[" in screen  # drawn with terminal control sequences
    assert "✓" in screen and "build-api" in screen and "7/7" in screen
    assert "run hierarchical-" in screen and "Succeeded" in screen


def test_history_and_show(szal_inline: Szal, db: Path) -> None:
    szal_inline("run", "--db", db, Path("examples/workflowrun.yaml"))
    szal_inline("run", "--db", db, Path("examples/retries-backoff.yaml"), "--name", "flaky-run")
    history = szal_inline("history", "--db", db)
    assert history.code == 0
    lines = history.out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "UID", "WORKFLOW", "PHASE"]
    assert lines[1].startswith("flaky-run") and lines[2].startswith("greet-1")
    only = szal_inline("history", "--db", db, "--workflow", "greet")
    assert "flaky-run" not in only.out and "greet-1" in only.out
    show = szal_inline("show", "--db", db, "flaky-run")
    assert show.code == 0
    attempts = [line for line in show.out.splitlines() if line.startswith("flaky ")]
    assert [line.split()[1:4] for line in attempts] == [
        ["1", "Failed", "1"],
        ["2", "Failed", "1"],
        ["3", "Succeeded", "0"],
    ]
    logs = szal_inline("show", "--db", db, "flaky-run", "--logs", "flaky", "--attempt", "2")
    assert logs.out == "attempt 2\n"
    assert szal_inline("show", "--db", db, "greet-1", "--logs", "hello").out.count("hello") == 3
    missing = szal_inline("show", "--db", db, "no-such-run")
    assert missing.code == 1 and "no-such-run" in missing.err
    as_json = szal_inline("show", "--db", db, "greet-1", "--json")
    assert '"phase": "Succeeded"' in as_json.out


NAMESPACED_RUN = """\
    apiVersion: szal.dev/v1alpha1
    kind: WorkflowRun
    metadata: {{name: nightly, namespace: {namespace}}}
    spec:
      workflow:
        steps:
        - {{name: quiet, command: ["true"]}}
    """


def test_history_and_show_across_namespaces(
    szal_inline: Szal, db: Path, workflow_file: Write
) -> None:
    for namespace in ("team-a", "team-b"):
        ran = szal_inline(
            "run", "--db", db, workflow_file(NAMESPACED_RUN.format(namespace=namespace))
        )
        assert ran.code == 0, ran.err
    history = szal_inline("history", "--db", db)
    lines = history.out.splitlines()
    assert lines[0].split()[:3] == ["NAMESPACE", "NAME", "UID"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["team-a", "team-b"]
    team_b = next(line.split()[2] for line in lines[1:] if line.startswith("team-b"))
    only = szal_inline("history", "--db", db, "-n", "team-b")  # one namespace: no column
    assert [line.split()[:2] for line in only.out.splitlines()[1:]] == [["nightly", team_b]]

    ambiguous = szal_inline("show", "--db", db, "nightly")
    assert ambiguous.code == 2
    assert "team-a/nightly" in ambiguous.err and "team-b/nightly" in ambiguous.err
    assert "-n" in ambiguous.err
    picked = szal_inline("show", "--db", db, "nightly", "-n", "team-a")
    assert picked.code == 0 and "Succeeded" in picked.out

    # A step that printed nothing: the note says so and where an operator's run keeps output.
    quiet = szal_inline("show", "--db", db, "nightly", "-n", "team-a", "--logs", "quiet")
    assert quiet.code == 0 and quiet.out == ""
    assert "printed nothing" in quiet.err
    assert "szal logs nightly quiet -n team-a" in quiet.err
    assert "kubectl logs nightly-quiet-" in quiet.err


@pytest.mark.parametrize("name", [c.name for c in SUBCOMMANDS])
def test_help_on_every_subcommand(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([name, "--help"])
    assert exit_info.value.code == 0
    assert name in capsys.readouterr().out


def test_python_dash_m(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "szal", "validate", "examples/dag-diamond.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout
