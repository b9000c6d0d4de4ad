"""Every example in examples/ runs with ``szal run`` and does what its comment says.

One test per example, each checking the outcome promised in the file's
header comment (phase, exit code, per-step phases and messages). The
timing of the examples is not asserted beyond ordering, except that
retries wait (phase Waiting between attempts).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.local.conftest import EXAMPLES, Result

Szal = Callable[..., Result]


def phases(result: Result) -> dict[str, str]:
    return {name: step["phase"] for name, step in result.status["steps"].items()}


def test_every_example_is_tested() -> None:
    tested = {
        "dag-diamond",
        "sequential-pipeline",
        "retries-backoff",
        "rollback",
        "timeout",
        "hierarchical",
        "gpu-step",
        "workflowrun",
        "training-dataset",
    }
    assert {p.stem for p in EXAMPLES.glob("*.yaml")} == tested


def test_every_example_validates(szal_inline: Szal) -> None:
    assert szal_inline("validate", *sorted(EXAMPLES.glob("*.yaml"))).code == 0


def test_dag_diamond(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", EXAMPLES / "dag-diamond.yaml")
    assert result.code == 0
    steps = result.status["steps"]
    assert phases(result) == {
        "checkout": "Succeeded",
        "unit-test": "Succeeded",
        "lint": "Succeeded",
        "package": "Succeeded",
        "deploy": "Skipped",
    }
    assert steps["deploy"]["message"] == "condition not met"
    assert steps["unit-test"]["outputs"] == {"coverage": 0.92, "tests": 128}
    # unit-test and lint overlap: lint started before unit-test finished.
    assert steps["lint"]["startedAt"] < steps["unit-test"]["finishedAt"]
    assert steps["package"]["startedAt"] >= steps["unit-test"]["finishedAt"]
    prod = szal_inline("run", "--db", db, "--json", EXAMPLES / "dag-diamond.yaml", "-p", "env=prod")
    assert prod.code == 0 and phases(prod)["deploy"] == "Succeeded"


def test_sequential_pipeline(szal_inline: Szal, db: Path) -> None:
    result = szal_inline(
        "run", "--db", db, "--json", "--name", "seq", EXAMPLES / "sequential-pipeline.yaml"
    )
    assert result.code == 0
    steps = result.status["steps"]
    order = sorted(steps, key=lambda name: steps[name]["startedAt"])
    assert order == ["fetch", "build", "test", "publish"]
    logs = szal_inline("show", "--db", db, "seq", "--logs", "publish")
    assert logs.out == "publishing version 1.2.3 for greeting hello\n"


def test_retries_backoff(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", EXAMPLES / "retries-backoff.yaml")
    assert result.code == 0
    flaky = result.status["steps"]["flaky"]
    assert flaky["attempts"] == 3 and flaky["phase"] == "Succeeded"
    assert "Waiting" in result.err  # it waited between attempts


def test_rollback(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", EXAMPLES / "rollback.yaml")
    assert result.code == 1
    status = result.status
    assert status["phase"] == "RolledBack"
    steps = status["steps"]
    assert steps["deploy"]["phase"] == "Failed" and steps["deploy"]["exitCode"] == 3
    notify = steps["notify"]
    assert (notify["phase"], notify["attempts"], notify["message"]) == (
        "Skipped",
        0,
        "prior step failed",
    )
    migrate, bucket = steps["migrate-db"]["rollback"], steps["create-bucket"]["rollback"]
    assert migrate["phase"] == bucket["phase"] == "Succeeded"
    assert migrate["finishedAt"] <= bucket["startedAt"]  # reverse order, one at a time
    assert "RollingBack" in result.err


def test_timeout(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", EXAMPLES / "timeout.yaml")
    assert result.code == 1
    status = result.status
    assert status["phase"] == "Failed"
    assert status["steps"]["slow"]["phase"] == "TimedOut"
    assert "1s" in status["steps"]["slow"]["message"]
    assert status["steps"]["cleanup"]["phase"] == "Skipped"


def test_hierarchical(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", EXAMPLES / "hierarchical.yaml")
    assert result.code == 0
    steps = result.status["steps"]
    assert set(phases(result).values()) == {"Succeeded"}
    assert steps["build-api"]["startedAt"] >= steps["build"]["finishedAt"]
    assert steps["build-api"]["startedAt"] < steps["build-web"]["finishedAt"]  # Parallel
    assert steps["tag"]["finishedAt"] <= steps["announce"]["startedAt"]
    assert steps["release"]["startedAt"] >= steps["build-web"]["finishedAt"]


def test_workflowrun(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", EXAMPLES / "workflowrun.yaml")
    assert result.code == 0
    assert phases(result) == {"hello": "Succeeded", "shout": "Skipped"}
    assert szal_inline("show", "--db", db, "greet-1", "--logs", "hello").out == (
        "hello, world\n" * 3
    )
    loud = szal_inline(
        "run", "--db", db, "--json", EXAMPLES / "workflowrun.yaml", "-p", "loud=true"
    )
    assert phases(loud)["shout"] == "Succeeded"


def test_gpu_step_with_gpus(szal_inline: Szal, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SZAL_GPUS", "0,1")
    result = szal_inline("run", "--db", db, "--json", EXAMPLES / "gpu-step.yaml")
    assert result.code == 0, result.err
    assert result.status["steps"]["train"]["outputs"] == {"devices": "0"}


def test_gpu_step_without_gpus(
    szal_inline: Szal, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SZAL_GPUS", "")
    result = szal_inline("run", "--db", db, "--json", EXAMPLES / "gpu-step.yaml")
    assert result.code == 2
    assert result.out == ""
    assert "gpu-step.yaml" in result.err
    assert "step 'train': resources.gpu.count" in result.err


def test_training_dataset_is_refused_locally(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", EXAMPLES / "training-dataset.yaml")
    assert result.code == 2
    assert result.out == ""
    assert "step 'train': env[0].valueFrom: EPOCHS: valueFrom needs a cluster" in result.err
    assert "step 'train': volumeMounts: volumeMounts need a cluster" in result.err
