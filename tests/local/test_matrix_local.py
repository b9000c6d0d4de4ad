"""Matrix fan-out through ``szal validate`` and ``szal run`` (real processes).

Covers: misuse refused with exit 2 and the step and field named, by both
commands; instances getting SZAL_MATRIX_<NAME> and ``matrix`` in
SZAL_CONTEXT in a real process; a retried instance. The examples'
behaviour is in tests/local/test_examples.py; semantics in
tests/engine/test_matrix.py.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.local.conftest import Result

Szal = Callable[..., Result]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "wf.yaml"
    header = "apiVersion: szal.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\n"
    path.write_text(header + textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """
            spec:
              steps:
              - name: t
                matrix: {params: {lr: [1, 2]}}
                when: "matrix.batch > 1"
                command: ["true"]
            """,
            "step 't': when: unknown matrix param 'batch' (the matrix has: lr)",
        ),
        (
            """
            spec:
              steps:
              - {name: t, matrix: {}, command: ["true"]}
            """,
            "step 't': matrix: empty matrix",
        ),
        (
            """
            spec:
              params: [{name: xs, default: "7"}]
              steps:
              - {name: t, forEach: params.xs, command: ["true"]}
            """,
            "step 't': forEach: forEach over a non-list: 'params.xs' is 7, not a list",
        ),
        (
            """
            spec:
              mode: Hierarchical
              steps:
              - name: t
                matrix: {params: {x: [1]}}
                steps: [{name: c, command: ["true"]}]
            """,
            "step 't': matrix: a step with a matrix or forEach cannot have children",
        ),
    ],
)
def test_misuse_exits_2_from_validate_and_run(
    szal_inline: Szal, tmp_path: Path, db: Path, body: str, expected: str
) -> None:
    path = write(tmp_path, body)
    for args in (("validate", path), ("run", "--db", db, path)):
        result = szal_inline(*args)
        assert result.code == 2, (args, result.err)
        assert "wf.yaml" in result.err and expected in result.err, result.err


def test_instances_get_their_values_and_retry_on_their_own(
    szal_inline: Szal, tmp_path: Path, db: Path
) -> None:
    marker = tmp_path / "failed-once"
    path = write(
        tmp_path,
        f"""
        spec:
          retries: {{}}
          steps:
          - name: t
            matrix: {{params: {{color: [red, blue]}}, include: [{{color: green, n: 3}}]}}
            retries: {{limit: 1, delay: 0s}}
            script: |
              if [ "$SZAL_MATRIX_COLOR" = blue ] && [ ! -e {marker} ]; then
                touch {marker}; exit 1
              fi
              printf '%s' "$SZAL_CONTEXT" > "$SZAL_OUTPUTS"
        """,
    )
    path.write_text(path.read_text().replace("  retries: {}\n", ""))
    result = szal_inline("run", "--db", db, "--json", path)
    assert result.code == 0, result.err
    steps = result.status["steps"]
    assert [steps[f"t-{k}"]["attempts"] for k in range(3)] == [1, 2, 1]
    assert [steps[f"t-{k}"]["outputs"]["matrix"] for k in range(3)] == [
        {"color": "red"},
        {"color": "blue"},
        {"color": "green", "n": 3},
    ]
    assert json.loads(json.dumps(result.status))["progress"] == "4/4"
