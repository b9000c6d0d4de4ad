"""``szal run --retry-from RUN``: a new local run keeping the recorded run's Succeeded steps.

Covers: outputs of reused steps kept exactly (and visible to later steps
through ``SZAL_CONTEXT``), the failed step re-running and the steps after
it running, ``reusedFrom`` in ``--json``, the original's params and spec
(not the file as edited since), ``szal show`` listing the reused attempt,
a retry of the retry, and the refusals (unknown run, a Succeeded run,
FILE and --retry-from together, -p with --retry-from). The seeding rules
themselves are tested in tests/engine/test_retrying.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.local.conftest import Result

Szal = Callable[..., Result]
Write = Callable[[str], Path]

WORKFLOW = """\
apiVersion: szal.dev/v1alpha1
kind: Workflow
metadata: {{name: demo}}
spec:
  mode: Dag
  params: [{{name: word, default: plain}}]
  steps:
  - name: a
    script: 'echo "{{\\"pid\\": $$, \\"ns\\": \\"$(date +%s%N)\\"}}" > "$SZAL_OUTPUTS"'
  - name: b
    dependsOn: [a]
    script: 'echo run >> {runs}; test -f {marker}'
  - name: c
    dependsOn: [b]
    script: >-
      printf '{{"ctx": %s, "version": "{version}"}}' "$SZAL_CONTEXT" > "$SZAL_OUTPUTS"
"""


def write(workflow_file: Write, tmp_path: Path, version: str) -> Path:
    return workflow_file(
        WORKFLOW.format(runs=tmp_path / "runs", marker=tmp_path / "ok", version=version)
    )


def test_retry_keeps_outputs_reruns_the_failed_step_and_runs_the_rest(
    szal_inline: Szal, workflow_file: Write, tmp_path: Path, db: Path
) -> None:
    path = write(workflow_file, tmp_path, "v1")
    first = szal_inline("run", "--db", db, "--json", "--name", "first", path, "-p", "word=hey")
    assert first.code == 1
    assert first.status["steps"]["b"]["phase"] == "Failed"
    assert first.status["steps"]["c"]["phase"] == "Skipped"
    (tmp_path / "ok").touch()
    # The file changes after the first run: the retry runs the spec the first run pinned.
    path.write_text(path.read_text().replace('"v1"', '"v2"'))

    second = szal_inline("run", "--db", db, "--json", "--name", "second", "--retry-from", "first")

    assert second.code == 0, second.err
    status = second.status
    assert status["phase"] == "Succeeded"
    a_then, a_now = first.status["steps"]["a"], status["steps"]["a"]
    assert a_now["outputs"] == a_then["outputs"]
    for key in ("attempts", "startedAt", "finishedAt", "exitCode"):
        assert a_now[key] == a_then[key]
    assert a_now["reusedFrom"] == "first"
    assert status["steps"]["b"]["phase"] == "Succeeded" and "reusedFrom" not in status["steps"]["b"]
    c = status["steps"]["c"]["outputs"]
    assert c["version"] == "v1"
    assert c["ctx"]["params"] == {"word": "hey"}
    assert c["ctx"]["steps"]["a"]["outputs"] == a_then["outputs"]
    assert (tmp_path / "runs").read_text().splitlines() == ["run", "run"]  # b ran twice, a once
    assert status["workflow"] == first.status["workflow"]

    shown = szal_inline("show", "--db", db, "second")
    assert shown.code == 0
    assert "reused from first" in shown.out

    # A retry of a run that ended Failed again reuses what both runs did.
    (tmp_path / "ok").unlink()
    third = szal_inline("run", "--db", db, "--json", "--name", "third", "--retry-from", "first")
    assert third.code == 1
    (tmp_path / "ok").touch()
    fourth = szal_inline("run", "--db", db, "--json", "--retry-from", "third")
    assert fourth.code == 0
    assert fourth.status["steps"]["a"]["outputs"] == a_then["outputs"]
    assert fourth.status["steps"]["a"]["reusedFrom"] == "third"
    assert "reusedFrom" not in fourth.status["steps"]["b"]


def test_refusals(szal_inline: Szal, workflow_file: Write, tmp_path: Path, db: Path) -> None:
    (tmp_path / "ok").touch()
    path = write(workflow_file, tmp_path, "v1")
    assert szal_inline("run", "--db", db, "--name", "good", path).code == 0

    unknown = szal_inline("run", "--db", db, "--retry-from", "nope")
    assert unknown.code == 1
    assert f"szal: no run 'nope' in {db}" in unknown.err
    succeeded = szal_inline("run", "--db", db, "--retry-from", "good")
    assert succeeded.code == 1
    assert "run 'good' Succeeded: there is nothing to retry" in succeeded.err
    both = szal_inline("run", "--db", db, "--retry-from", "good", path)
    assert both.code == 2 and "not both" in both.err
    neither = szal_inline("run", "--db", db)
    assert neither.code == 2 and "give a FILE" in neither.err
    params = szal_inline("run", "--db", db, "--retry-from", "good", "-p", "word=x")
    assert params.code == 2 and "-p is not allowed" in params.err
