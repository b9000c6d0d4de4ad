"""Kubernetes' container fields in local runs: honoured or refused, never ignored.

Covers: ``workingDir`` (absolute, relative to the run's directory, the
template's, a missing directory's message) and the exit-2 refusals of
``valueFrom``, ``envFrom`` and ``volumeMounts`` in a step, a rollback and
the template, each naming the step and field. Not covered: the Pod these
fields make on a cluster (tests/kubernetes/test_pods.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from tests.local.conftest import Result

Szal = Callable[..., Result]


def _write(tmp_path: Path, spec: dict[str, Any]) -> Path:
    path = tmp_path / "wf.yaml"
    doc = {"apiVersion": "szal.dev/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"}}
    path.write_text(yaml.safe_dump({**doc, "spec": spec}))
    return path


def _pwd_step(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "script": 'echo "{\\"pwd\\": \\"$PWD\\"}" > "$SZAL_OUTPUTS"', **fields}


def test_working_dir_is_the_step_process_directory(
    szal_inline: Szal, db: Path, tmp_path: Path
) -> None:
    absolute = tmp_path / "abs"
    absolute.mkdir()
    (tmp_path / "rel").mkdir()
    path = _write(
        tmp_path,
        {
            "template": {"workingDir": str(absolute)},
            "steps": [_pwd_step("inherits"), _pwd_step("own", workingDir=str(tmp_path / "rel"))],
        },
    )
    result = szal_inline("run", "--db", db, "--json", path)
    assert result.code == 0, result.err
    steps = result.status["steps"]
    assert Path(steps["inherits"]["outputs"]["pwd"]).resolve() == absolute.resolve()
    assert Path(steps["own"]["outputs"]["pwd"]).resolve() == (tmp_path / "rel").resolve()


def test_a_missing_working_dir_fails_the_step_saying_so(
    szal_inline: Szal, db: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    path = _write(tmp_path, {"steps": [_pwd_step("s", workingDir=str(missing))]})
    result = szal_inline("run", "--db", db, "--json", path)
    assert result.code == 1
    step = result.status["steps"]["s"]
    assert step["phase"] == "Failed"
    assert step["message"] == f"workingDir does not exist: {missing}"


def test_cluster_only_container_fields_are_refused_with_exit_2(
    szal_inline: Szal, db: Path, tmp_path: Path
) -> None:
    secret = {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    path = _write(
        tmp_path,
        {
            "template": {"envFrom": [{"configMapRef": {"name": "settings"}}]},
            "steps": [
                {
                    "name": "deploy",
                    "command": ["true"],
                    "env": [{"name": "A", "value": "1"}, secret],
                    "rollback": {
                        "command": ["true"],
                        "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                    },
                }
            ],
        },
    )
    result = szal_inline("run", "--db", db, "--json", path)
    assert result.code == 2
    assert result.out == ""
    err = result.err
    assert "step 'deploy': env[1].valueFrom: TOKEN: valueFrom needs a cluster" in err
    assert "give a plain value" in err
    assert "step 'deploy': rollback.volumeMounts: volumeMounts need a cluster" in err
    assert "template.envFrom: envFrom needs a cluster" in err and "list the variables" in err


def test_validate_accepts_what_only_a_local_run_refuses(szal_inline: Szal, tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"steps": [{"name": "s", "command": ["true"], "envFrom": [{"secretRef": {"name": "x"}}]}]},
    )
    assert szal_inline("validate", path).code == 0
