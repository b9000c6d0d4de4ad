"""Bad input to the real ``szal`` command: exit 2 and a message that says where and what.

Covers, by running ``python -m szal`` as a subprocess (what an outsider
sees): unreadable files (missing, a directory, no permission, binary, too
deeply nested), YAML syntax errors (line and column), duplicate keys, empty
files and documents that are not mappings, multi-document files (two
Workflows and no run, two runs, a dangling ``workflowRef``, two Workflows of
one name, a WorkflowRun's params checked against its Workflow), wrong
``apiVersion``/``kind`` (with the hint an Argo user needs), shape errors
named by step and wire field with the refused value (``image: 3``,
``retries.backoff: exponential``, ``dependson``, ``steps: []``, unnamed and
duplicate nested steps), durations (no unit, negative), empty commands,
``when`` errors, ``-p`` errors, out-of-range option values, ``--db`` that
is not a SQLite file (run, history, show), and GPU counts beyond the machine's.
Every example in ``examples/`` still validates.

Not covered here: the engine's semantic checks one by one (cycles,
``when`` reachability: tests/engine/test_validation.py), the admission
webhook (tests/kubernetes), and what a valid run does (test_cli.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.local.conftest import EXAMPLES, REPO

Write = Callable[..., Path]

HEAD = "apiVersion: szal.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\n"


def start(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "szal", *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def szal(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return finish(start(*args, env=env))


def checked(done: subprocess.CompletedProcess[str]) -> str:
    """Assert exit 2, no traceback, nothing on stdout; return stderr."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""  # `--json` readers get no half output
    return done.stderr


def invalid(*args: str | Path, env: dict[str, str] | None = None) -> str:
    """Run szal, assert exit 2 and no traceback; return stderr."""
    return checked(szal(*args, env=env))


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def make(text: str | bytes, name: str = "wf.yaml") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text))
        return path

    return make


def both(path: Path, db: Path) -> list[str]:
    """stderr of ``szal validate`` and ``szal run --json`` on path; both must exit 2."""
    procs = [start("validate", path), start("run", "--json", "--db", db, path)]
    return [checked(finish(proc)) for proc in procs]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


# --- files that cannot be read as YAML -------------------------------------


def test_missing_file_and_directory(tmp_path: Path, db: Path) -> None:
    for err in both(tmp_path / "nope.yaml", db):
        assert "nope.yaml: cannot read: No such file or directory" in err
    for err in both(tmp_path, db):
        assert f"{tmp_path}: cannot read: Is a directory" in err


def test_unreadable_file(write: Write, db: Path) -> None:
    """A file the OS refuses to read; works as root too (no skip in CI)."""
    if os.geteuid() == 0:
        # Root reads any mode-0 file; /proc/self/mem refuses a read at offset 0.
        path = Path("/proc/self/mem")
        expected = f"{path}: cannot read: Input/output error"
    else:
        path = write(HEAD + "spec: {steps: [{name: a, command: ['true']}]}\n")
        path.chmod(0)
        expected = f"{path}: cannot read: Permission denied"
    for err in both(path, db):
        assert expected in err


def test_binary_garbage(write: Write, db: Path) -> None:
    path = write(b"\xff\xfe\x00\x89PNG garbage")
    for err in both(path, db):
        assert f"{path}: not a UTF-8 text file (byte 0xff at offset 0)" in err


def test_nested_too_deeply(write: Write, db: Path) -> None:
    path = write("[" * 5000 + "]" * 5000 + "\n")
    for err in both(path, db):
        assert f"{path}: invalid YAML: nested too deeply" in err


def test_yaml_syntax_error_has_line_and_column(write: Write, db: Path) -> None:
    path = write(HEAD + 'spec:\n  steps:\n  - name: a\n    command: ["true"\n  - name: b\n')
    for err in both(path, db):
        assert f"{path}: line 8, column 3: invalid YAML: expected ',' or ']'" in err
        assert "while parsing a flow sequence at line 7, column 14" in err
        assert "<unicode string>" not in err


def test_tab_indentation(write: Write, db: Path) -> None:
    path = write(HEAD + "spec:\n\tsteps: []\n")
    for err in both(path, db):
        assert f"{path}: line 5, column 1: invalid YAML: found character '\\t'" in err


def test_duplicate_key_is_refused(write: Write, db: Path) -> None:
    # PyYAML would keep the last value silently; kubectl refuses the file.
    path = write(HEAD + "spec:\n  steps:\n  - name: a\n    name: b\n    command: ['true']\n")
    for err in both(path, db):
        assert f"{path}: line 7, column 5: invalid YAML: found duplicate key 'name'" in err


def test_merge_keys_may_override(write: Write, db: Path) -> None:
    path = write(
        HEAD + "spec:\n  steps:\n  - &base {name: a, command: ['true']}\n"
        "  - <<: *base\n    name: b\n"
    )
    assert szal("validate", path).returncode == 0


@pytest.mark.parametrize(
    ("text", "got"),
    [("- a\n- b\n", "a list"), ("hello\n", "a string 'hello'"), ("42\n", "int 42")],
)
def test_document_not_a_mapping(write: Write, db: Path, text: str, got: str) -> None:
    path = write(text)
    for err in both(path, db):
        assert f"{path}: document 1: expected a mapping with apiVersion, kind" in err
        assert f"got {got}" in err


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n---\n"])
def test_empty_file(write: Write, db: Path, text: str) -> None:
    path = write(text)
    for err in both(path, db):
        assert f"{path}: no YAML documents (expected a Workflow or WorkflowRun)" in err


# --- apiVersion and kind -----------------------------------------------------

ARGO = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: hello-}
spec:
  entrypoint: main
  templates:
  - name: main
    container: {image: busybox, command: [echo, hi]}
"""


def test_argo_workflow_gets_a_hint(write: Write, db: Path) -> None:
    path = write(ARGO)
    for err in both(path, db):
        assert (
            f"{path}: Workflow document 1: apiVersion: expected 'szal.dev/v1alpha1',"
            " got 'argoproj.io/v1alpha1' (this is an Argo Workflows manifest" in err
        )
        assert "spec.steps" in err and "examples/" in err
        assert len(err.splitlines()) == 1  # not a list of Argo fields we do not know


def test_argo_spec_under_our_api_version(write: Write, db: Path) -> None:
    path = write(HEAD + "".join(ARGO.splitlines(keepends=True)[3:]))
    for err in both(path, db):
        assert f"{path}: Workflow w: steps: required field is missing" in err
        assert "Workflow w: templates: unknown field (an Argo Workflows field" in err
        assert "Workflow w: entrypoint: unknown field (an Argo Workflows field" in err


def test_wrong_api_version_says_what_is_expected(write: Write, db: Path) -> None:
    path = write(HEAD.replace("v1alpha1", "v1") + "spec: {steps: [{name: a, command: [x]}]}\n")
    for err in both(path, db):
        assert (
            f"{path}: Workflow w: apiVersion: expected 'szal.dev/v1alpha1', got 'szal.dev/v1'"
            in err
        )


def test_missing_and_wrong_kind(write: Write, db: Path) -> None:
    missing = write("apiVersion: szal.dev/v1alpha1\nmetadata: {name: w}\n", "missing.yaml")
    for err in both(missing, db):
        assert f"{missing}: document 1: kind: missing (expected Workflow or WorkflowRun)" in err
    lower = write(HEAD.replace("kind: Workflow", "kind: workflow"), "lower.yaml")
    for err in both(lower, db):
        assert "kind: expected Workflow or WorkflowRun, got 'workflow'" in err
        assert "did you mean Workflow?" in err
    pod = write("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "pod.yaml")
    for err in both(pod, db):
        assert "kind: expected Workflow or WorkflowRun, got 'Pod'" in err
        assert "apiVersion: expected 'szal.dev/v1alpha1', got 'v1'" in err


def test_metadata_not_a_mapping(write: Write, db: Path) -> None:
    path = write(HEAD.replace("metadata: {name: w}", "metadata: w") + "spec: {steps: []}\n")
    for err in both(path, db):
        assert f"{path}: Workflow document 1: metadata: Input should be a mapping, got 'w'" in err


# --- several documents -------------------------------------------------------

RUN = "apiVersion: szal.dev/v1alpha1\nkind: WorkflowRun\n"
OK = HEAD + "spec: {steps: [{name: a, command: ['true']}]}\n"


def test_two_workflows_and_no_run(write: Write, db: Path) -> None:
    path = write(OK + "---\n" + OK.replace("name: w}", "name: w2}"))
    err = invalid("run", "--db", db, path)
    assert f"{path}: holds 2 Workflows (w, w2) and no WorkflowRun" in err
    assert "workflowRef" in err
    assert szal("validate", path).returncode == 0  # fine for kubectl apply


def test_two_runs(write: Write, db: Path) -> None:
    runs = "".join(
        f"---\n{RUN}metadata: {{name: {n}}}\nspec: {{workflowRef: {{name: w}}}}\n"
        for n in ("r1", "r2")
    )
    path = write(OK + runs)
    err = invalid("run", "--db", db, path)
    assert f"{path}: holds 2 WorkflowRuns (r1, r2); szal run runs one per file" in err


def test_workflow_ref_names_no_workflow(write: Write, db: Path) -> None:
    path = write(OK + f"---\n{RUN}metadata: {{name: r}}\nspec: {{workflowRef: {{name: nope}}}}\n")
    for err in both(path, db):
        assert (
            f"{path}: WorkflowRun r: spec.workflowRef.name: no Workflow 'nope' in this file" in err
        )


def test_two_workflows_with_one_name(write: Write, db: Path) -> None:
    path = write(OK + "---\n" + OK)
    for err in both(path, db):
        assert f"{path}: Workflow w: metadata.name: another Workflow 'w' is in this file" in err


def test_run_params_checked_against_the_referenced_workflow(write: Write, db: Path) -> None:
    path = write(
        HEAD + "spec:\n  params: [{name: n, default: 1}, {name: who}]\n"
        "  steps: [{name: a, command: ['true']}]\n"
        f"---\n{RUN}metadata: {{name: r}}\n"
        "spec: {workflowRef: {name: w}, params: {extra: 1}}\n"
    )
    for err in both(path, db):
        assert "params.extra: unknown param 'extra' (the workflow declares: n, who)" in err
        assert "params.who: missing required param 'who'" in err


def test_inline_workflow_errors_name_step_and_field(write: Write, db: Path) -> None:
    path = write(
        RUN + "metadata: {name: r}\nspec:\n  workflow:\n    mode: Dag\n    steps:\n"
        "    - {name: a, command: ['true'], dependsOn: [zz]}\n"
        "    - {name: b, command: ['true'], timeout: 10}\n"
    )
    for err in both(path, db):
        assert f"{path}: WorkflowRun r: step 'a': dependsOn: unknown step 'zz'" in err
        assert f"{path}: WorkflowRun r: step 'b': timeout: invalid duration 10" in err


# --- shape: step, wire field, refused value ----------------------------------


def steps(body: str, spec: str = "") -> str:
    return HEAD + "spec:\n" + spec + "  steps:\n" + textwrap.indent(textwrap.dedent(body), "  ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEAD, "Workflow w: spec: required field is missing"),
        (HEAD + "spec:\n", "Workflow w: spec: Input should be a mapping, got null"),
        (HEAD + "spec: {steps: []}\n", "Workflow w: steps: at least one step is required"),
        (HEAD + "spec: {mode: Dag}\n", "Workflow w: steps: required field is missing"),
        (
            HEAD + "spec: {steps: {a: {command: [x]}}}\n",
            "Workflow w: steps: Input should be a valid list, got a mapping",
        ),
        (
            steps("- {name: a, image: 3, command: [x]}\n"),
            "step 'a': image: Input should be a valid string, got 3",
        ),
        (
            steps("- {name: a, command: echo hi}\n"),
            "step 'a': command: Input should be a valid list, got 'echo hi'",
        ),
        (
            steps("- {name: a, command: [x], retries: {limit: -1}}\n"),
            "step 'a': retries.limit: Input should be greater than or equal to 0, got -1",
        ),
        (
            steps("- {name: a, command: [x], retries: {limit: 1.5}}\n"),
            "step 'a': retries.limit: Input should be a valid integer, got 1.5",
        ),
        (
            steps("- {name: a, command: [x], retries: {backoff: exponential}}\n"),
            "step 'a': retries.backoff: Input should be 'Fixed', 'Linear' or 'Exponential',"
            " got 'exponential'",
        ),
        (
            steps("- {name: a, command: [x], trigger: any}\n"),
            "step 'a': trigger: Input should be 'All' or 'Any', got 'any'",
        ),
        (
            HEAD + "spec: {mode: dag, steps: [{name: a, command: [x]}]}\n",
            "Workflow w: mode: Input should be 'Sequential', 'Parallel', 'Dag' or"
            " 'Hierarchical', got 'dag'",
        ),
        (
            steps("- {name: a, command: [x]}\n- {name: b, dependson: [a], command: [x]}\n"),
            "step 'b': dependson: unknown field",
        ),
        (
            HEAD + "spec: {maxparallel: 3, steps: [{name: a, command: [x]}]}\n",
            "Workflow w: maxparallel: unknown field",
        ),
        (
            steps("- {name: a, command: [x], resources: {gpu: {count: two}}}\n"),
            "step 'a': resources.gpu.count: Input should be a valid integer, got 'two'",
        ),
        (
            steps("- {name: a, command: [x], env: [{name: X, value: 3}]}\n"),
            "step 'a': env[0].value: Input should be a valid string, got 3",
        ),
        (
            steps("- {command: [x]}\n- {name: b, command: [x]}\n"),
            "step '#0': name: required field is missing",
        ),
        (
            steps("- {name: Build, command: [x]}\n"),
            "step 'Build': name: invalid name 'Build': use a DNS-1123 label",
        ),
        (
            steps(
                """\
                - name: a
                  command: [x]
                  steps: [{name: x, command: [x]}]
                - name: b
                  command: [x]
                  steps: [{name: x, command: [x]}]
                """,
                spec="  mode: Hierarchical\n",
            ),
            "step 'x': name: duplicate name 'x': step names must be unique in the whole"
            " workflow (first at spec.steps[a].steps[x])",
        ),
        (
            steps("- {name: a, command: [x]}\n- {name: b, command: [x], dependsOn: [a]}\n"),
            "step 'b': dependsOn: dependsOn is allowed only in Dag mode",
        ),
        (
            HEAD + "spec: {maxParallel: 0, steps: [{name: a, command: [x]}]}\n",
            "Workflow w: maxParallel: Input should be greater than or equal to 1, got 0",
        ),
    ],
)
def test_shape_errors(write: Write, db: Path, text: str, expected: str) -> None:
    path = write(text)
    for err in both(path, db):
        assert f"{path}: " in err
        assert expected in err, err


# --- durations, commands, conditions -----------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("timeout", "10", "step 'a': timeout: invalid duration 10: a number needs a unit"),
        ("timeout", "'10'", "step 'a': timeout: invalid duration '10': a number needs a unit"),
        ("timeout", "-1s", "step 'a': timeout: invalid duration '-1s': must not be negative"),
        ("timeout", "1d", "step 'a': timeout: invalid duration '1d': use Go-style units"),
        ("retries", "{maxDelay: 10}", "step 'a': retries.maxDelay: invalid duration 10"),
    ],
)
def test_durations(write: Write, db: Path, field: str, value: str, expected: str) -> None:
    path = write(steps(f"- {{name: a, command: [x], {field}: {value}}}\n"))
    for err in both(path, db):
        assert expected in err
        assert "e.g." in err or "negative" in err


def test_workflow_timeout_without_unit(write: Write, db: Path) -> None:
    path = write(HEAD + "spec: {timeout: 5, steps: [{name: a, command: [x]}]}\n")
    for err in both(path, db):
        assert f"{path}: Workflow w: timeout: invalid duration 5: a number needs a unit" in err
        assert "'5s'" in err


def test_empty_command(write: Write, db: Path) -> None:
    # `command: []` ran nothing and Succeeded; `['']` failed only at exec.
    path = write(steps("- {name: a, command: []}\n- {name: b, command: ['']}\n"))
    for err in both(path, db):
        assert "step 'a': command: empty: give the program and its arguments" in err
        assert "step 'b': command[0]: the program name is empty" in err


def test_when_syntax_error_has_position(write: Write, db: Path) -> None:
    path = write(
        steps(
            "- {name: a, command: [x], when: 'params.env == '}\n",
            spec="  params: [{name: env, default: x}]\n",
        )
    )
    for err in both(path, db):
        assert "step 'a': when: unexpected end of condition at line 1, column 14" in err


def test_when_unknown_step_and_param(write: Write, db: Path) -> None:
    path = write(
        steps(
            "- {name: a, command: [x]}\n"
            "- {name: b, command: [x], when: \"params.nope == 1 && steps.ghost.phase == 'x'\"}\n"
        )
    )
    for err in both(path, db):
        assert "step 'b': when: unknown param 'nope'" in err
        assert "step 'b': when: unknown step 'ghost'" in err


def test_when_not_a_string(write: Write, db: Path) -> None:
    path = write(steps("- {name: a, command: [x], when: 5}\n"))
    for err in both(path, db):
        assert "step 'a': when: Input should be a valid string, got 5" in err


# --- command-line options ------------------------------------------------------

PARAMS = (
    HEAD
    + """\
spec:
  params: [{name: n, default: 1}, {name: flag, default: false}, {name: who}]
  steps: [{name: a, command: ['true']}]
"""
)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["-p", "n"], "-p n: expected name=value"),
        (["-p", "=x"], "-p =x: expected name=value"),
        (["-p", "who=x", "-p", "color=red"], "params.color: unknown param 'color'"),
        ([], "params.who: missing required param 'who'"),
        (
            ["-p", "who=x", "-p", "n=abc"],
            "-p n=abc: params.n: expected an integer, as JSON (type integer), got 'abc'",
        ),
        (["-p", "who=x", "-p", "n=1.5"], "params.n: expected an integer"),
        (
            ["-p", "who=x", "-p", "flag=yes"],
            "params.flag: expected true or false (type boolean), got 'yes'",
        ),
        (["-p", "who=x", "--max-parallel", "0"], "--max-parallel 0: must be at least 1"),
        (["-p", "who=x", "--max-parallel", "-3"], "--max-parallel -3: must be at least 1"),
        (["-p", "who=x", "--max-parallel", "abc"], "--max-parallel: invalid int value: 'abc'"),
    ],
)
def test_run_options(write: Write, db: Path, options: list[str], expected: str) -> None:
    path = write(PARAMS)
    err = invalid("run", "--db", db, path, *options)
    assert expected in err
    assert not db.exists()  # nothing ran, nothing recorded


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "examples/dag-diamond.yaml", "--grace-period", "-1"], "--grace-period -1: must"),
        (["history", "--limit", "0"], "--limit 0: must be at least 1"),
        (["history", "--phase", "Done"], "--phase Done: expected one of Pending, Running,"),
        (["show", "some-run", "--logs", "a", "--attempt", "0"], "--attempt 0: must be at least 1"),
    ],
)
def test_bad_option_values(db: Path, args: list[str], expected: str) -> None:
    assert expected in invalid(*args, "--db", db)
    assert not db.exists()


def test_db_not_a_sqlite_file(write: Write, tmp_path: Path) -> None:
    path = write(OK)
    text = write("not a database\n", "notes.txt")
    before = text.read_bytes()
    for command in (["run", path], ["history"], ["show", "some-run"]):
        err = invalid(*command, "--db", text)
        assert f"--db {text}: not a SQLite database" in err
        err = invalid(*command, "--db", tmp_path)
        assert f"--db {tmp_path}: is a directory" in err
    assert text.read_bytes() == before  # loses nothing


def test_run_db_postgres_url_is_refused(write: Write) -> None:
    err = invalid("run", write(OK), "--db", "postgres://me:secret@localhost:1/szal")
    assert "--db postgres://me:***@localhost:1/szal: szal run records to a local SQLite" in err
    assert "secret" not in err


def test_history_store_unreachable_is_a_failure_not_a_traceback() -> None:
    done = szal("history", "--db", "postgres://me:secret@127.0.0.1:1/szal")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "secret" not in done.stderr
    assert "cannot reach the history store" in done.stderr


# --- GPUs ------------------------------------------------------------------------

GPU = HEAD + "spec: {steps: [{name: train, command: ['true'], resources: {gpu: {count: 4}}}]}\n"


@pytest.mark.parametrize(
    ("gpus", "has", "source"),
    [
        ("", "0", "SZAL_GPUS='' lists 0"),
        ("0", "1", "SZAL_GPUS='0' lists 1: it is a comma-separated list of GPU ids"),
        ("0,1", "2", "SZAL_GPUS='0,1' lists 2"),
    ],
)
def test_more_gpus_than_the_machine_has(
    write: Write, db: Path, gpus: str, has: str, source: str
) -> None:
    path = write(GPU)
    err = invalid("run", "--db", db, path, env={"SZAL_GPUS": gpus})
    assert (
        f"{path}: Workflow w: step 'train': resources.gpu.count: requests 4 GPU(s) but this"
        f" machine has {has} ({source}" in err
    )
    # A manifest for a cluster stays valid on a laptop without GPUs.
    assert szal("validate", path, env={"SZAL_GPUS": ""}).returncode == 0


# --- the examples ---------------------------------------------------------------


def test_every_example_validates() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert files
    done = szal("validate", *files)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": valid") == len(files)


@pytest.mark.parametrize("value", ["lots", "1GB", "-1", "true"])
def test_bad_resource_quantity(write: Write, db: Path, value: str) -> None:
    path = write(
        HEAD + f"spec: {{steps: [{{name: a, command: ['true'], resources: {{cpu: {value}}}}}]}}\n"
    )
    for err in both(path, db):
        assert "step 'a': resources.cpu: invalid quantity" in err
        assert "500m" in err


def test_numeric_quantities_are_accepted(write: Write) -> None:
    """``cpu: 2`` and ``memory: 0.5`` are what Kubernetes users write."""
    path = write(
        HEAD + "spec: {steps: [{name: a, command: ['true'], resources: {cpu: 2, memory: 1Gi}},"
        " {name: b, command: ['true'], resources: {cpu: 0.5}}]}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "szal", "validate", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
