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
        "versioned",
        "finally",
        "matrix-cross-product",
        "matrix-foreach",
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


def test_versioned(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", "--name", "v5", EXAMPLES / "versioned.yaml")
    assert result.code == 0 and result.status["phase"] == "Succeeded"
    assert result.status["workflow"]["version"] == 5
    assert "v5" in szal_inline("history", "--db", db, "--version", "5").out
    assert "v5" not in szal_inline("history", "--db", db, "--version", "4").out


def test_finally(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", "--name", "fin", EXAMPLES / "finally.yaml")
    assert result.code == 1
    assert result.status["phase"] == "Failed"
    assert result.status["message"] == "step 'deploy' failed"
    assert phases(result) == {
        "build": "Succeeded",
        "deploy": "Failed",
        "notify-failure": "Succeeded",
        "notify-success": "Skipped",
        "cleanup": "Succeeded",
    }
    steps = result.status["steps"]
    assert steps["notify-success"]["message"] == "condition not met"
    assert all(steps[name]["finally"] for name in ("notify-failure", "notify-success", "cleanup"))
    assert result.status["progress"] == "5/5"
    logs = szal_inline("show", "--db", db, "fin", "--logs", "notify-failure")
    assert logs.out == "failed: deploy\n"
    ok = szal_inline("run", "--db", db, "--json", EXAMPLES / "finally.yaml", "-p", "fail=no")
    assert ok.code == 0 and phases(ok)["notify-success"] == "Succeeded"
    assert phases(ok)["notify-failure"] == "Skipped"


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


def test_matrix_cross_product(szal_inline: Szal, db: Path) -> None:
    result = szal_inline(
        "run", "--db", db, "--json", "--name", "mx", EXAMPLES / "matrix-cross-product.yaml"
    )
    assert result.code == 0, result.err
    status = result.status
    steps = status["steps"]
    assert status["progress"] == "7/7"
    assert list(steps) == ["train", *(f"train-{k}" for k in range(5)), "report"]
    assert steps["train"]["attempts"] == 0
    assert steps["train"]["message"] == "fanned out to 5 instances"
    assert [steps[f"train-{k}"].get("outputs") for k in range(4)] == [
        {"lr": 0.1, "batch": 32},
        {"lr": 0.1, "batch": 64},
        {"lr": 0.01, "batch": 32},
        {"lr": 0.01, "batch": 64},
    ]
    assert (steps["train-4"]["phase"], steps["train-4"]["message"]) == (
        "Skipped",
        "condition not met",
    )
    instances = [steps[f"train-{k}"] for k in range(4)]
    # matrix.maxParallel 2: no instant has three instances running.
    for probe in instances:
        at = probe["startedAt"]
        running = [s for s in instances if s["startedAt"] <= at < s["finishedAt"]]
        assert len(running) <= 2
    assert steps["report"]["startedAt"] >= max(s["finishedAt"] for s in instances)
    logs = szal_inline("show", "--db", db, "mx", "--logs", "report")
    assert logs.out.splitlines() == [
        "lr=0.1 batch=32",
        "lr=0.1 batch=64",
        "lr=0.01 batch=32",
        "lr=0.01 batch=64",
    ]


def test_matrix_foreach(szal_inline: Szal, db: Path) -> None:
    example = EXAMPLES / "matrix-foreach.yaml"
    result = szal_inline("run", "--db", db, "--json", example)
    assert result.code == 0, result.err
    steps = result.status["steps"]
    assert phases(result) == dict.fromkeys(
        ["deploy", "deploy-0", "deploy-1", "deploy-2", "verify"], "Succeeded"
    )
    assert [steps[f"deploy-{k}"]["outputs"]["region"] for k in range(3)] == ["eu", "us", "ap"]
    # Instances run in parallel inside a Sequential workflow; verify waits for all.
    assert steps["deploy-2"]["startedAt"] < steps["deploy-0"]["finishedAt"]
    assert steps["verify"]["startedAt"] >= max(steps[f"deploy-{k}"]["finishedAt"] for k in range(3))
    broken = szal_inline("run", "--db", db, "--json", example, "-p", 'regions=["eu", "broken"]')
    assert broken.code == 1
    steps = broken.status["steps"]
    assert (steps["deploy-1"]["phase"], steps["deploy-1"]["exitCode"]) == ("Failed", 3)
    assert (steps["verify"]["phase"], steps["verify"]["message"]) == (
        "Skipped",
        "prior step failed",
    )
    assert broken.status["phase"] == "Failed"
    refused = szal_inline("run", "--db", db, example, "-p", 'regions="eu"')
    assert refused.code == 2
    assert "step 'deploy': forEach: forEach over a non-list" in refused.err


def test_training_dataset_is_refused_locally(szal_inline: Szal, db: Path) -> None:
    result = szal_inline("run", "--db", db, "--json", EXAMPLES / "training-dataset.yaml")
    assert result.code == 2
    assert result.out == ""
    assert "step 'train': env[0].valueFrom: EPOCHS: valueFrom needs a cluster" in result.err
    assert "step 'train': volumeMounts: volumeMounts need a cluster" in result.err
