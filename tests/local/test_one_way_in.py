"""``szal run`` and ``szal validate`` through the engine's one way in (``engine.admitting``).

Covers: a ``szal run`` validates its workflow exactly once (a Workflow file,
a WorkflowRun naming a Workflow in the file, an inline workflow, ``-p``
params), counted where every whole-workflow validation passes (the step
tree walk in ``szal.engine.checks``); and what the real command prints for
bad input: an unknown field names the closest known field, and a shape
error in one step does not hide a cycle elsewhere, both with exit 2.

Not covered here: admit's own results one by one (tests/engine/test_admitting.py)
and the other bad-input messages (test_bad_input.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
from tests.local.conftest import Result
from tests.local.test_bad_input import HEAD, invalid

Write = Callable[[str], Path]
Szal = Callable[..., Result]

WORKFLOW = HEAD + "spec: {params: [{name: n, default: 1}], steps: [{name: a, command: ['true']}]}\n"
RUN_OF_IT = "---\napiVersion: szal.dev/v1alpha1\nkind: WorkflowRun\nmetadata: {name: r}\n"
INLINE = (
    "apiVersion: szal.dev/v1alpha1\nkind: WorkflowRun\nmetadata: {name: r}\n"
    "spec: {workflow: {steps: [{name: a, command: ['true']}]}}\n"
)
BROKEN = HEAD + (
    "spec:\n"
    "  mode: Dag\n"
    "  steps:\n"
    "  - {name: a, command: ['true']}\n"
    "  - {name: b, comand: ['true']}\n"
    "  - {name: c, command: ['true'], dependsOn: [d]}\n"
    "  - {name: d, command: ['true'], dependsOn: [c]}\n"
)


@pytest.mark.parametrize(
    ("text", "args"),
    [
        (WORKFLOW, ()),
        (WORKFLOW, ("-p", "n=2")),
        (WORKFLOW + RUN_OF_IT + "spec: {workflowRef: {name: w}, params: {n: 3}}\n", ()),
        (INLINE, ()),
    ],
    ids=["workflow", "params", "workflowRef", "inline"],
)
def test_a_run_validates_its_workflow_once(
    workflow_file: Write,
    szal_inline: Szal,
    db: Path,
    validations: mock.MagicMock,
    text: str,
    args: tuple[str, ...],
) -> None:
    path = workflow_file(text)
    result = szal_inline("run", "--db", db, "--json", path, *args)
    assert result.code == 0, result.err
    assert result.status["phase"] == "Succeeded"
    assert validations.call_count == 1


def test_a_refused_run_validates_once_too(
    workflow_file: Write, szal_inline: Szal, db: Path, validations: mock.MagicMock
) -> None:
    result = szal_inline("run", "--db", db, workflow_file(BROKEN))
    assert result.code == 2
    assert validations.call_count == 1


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_unknown_field_and_a_cycle_elsewhere_are_reported_together(
    workflow_file: Write, db: Path, command: str
) -> None:
    path = workflow_file(BROKEN)
    args = ("run", "--db", db, path) if command == "run" else ("validate", path)
    lead = "szal: " if command == "run" else ""
    assert invalid(*args).splitlines() == [
        f"{lead}{path}: Workflow w: step 'b': comand: unknown field; did you mean 'command'?",
        f"{lead}{path}: Workflow w: step 'c': dependsOn: dependency cycle: c -> d -> c",
    ]
