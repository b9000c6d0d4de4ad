"""GPU slots on a local run: discovery, assignment, waiting for free GPUs.

Covers: ``SZAL_GPUS`` and ``nvidia-smi`` discovery (a stand-in
``nvidia-smi`` script on PATH), the pool's lowest-free-first assignment,
``CUDA_VISIBLE_DEVICES`` set to exactly the assigned GPUs (empty for steps
asking for none), steps waiting until enough GPUs are free, and a request
beyond the machine's GPUs being invalid input. Pod scheduling of GPU steps
is the operator's and not covered here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.local.conftest import Result

from szal.runners.local.gpus import GpuPool, discover_gpus

Szal = Callable[..., Result]
Write = Callable[[str], Path]


def test_discovery_from_env() -> None:
    assert discover_gpus({"SZAL_GPUS": "0, 1,3"}) == ("0", "1", "3")
    assert discover_gpus({"SZAL_GPUS": ""}) == ()


def test_discovery_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf '0\\n1\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SZAL_GPUS", raising=False)
    assert discover_gpus() == ("0", "1")


def test_pool_assigns_lowest_free() -> None:
    pool = GpuPool(("0", "1", "2"))
    first = pool.acquire(2)
    assert first == ("0", "1")
    assert pool.acquire(2) is None
    assert pool.acquire(1) == ("2",)
    pool.release(("1",))
    pool.release(("0",))
    assert pool.acquire(2) == ("0", "1")


GPU_STEPS = """\
apiVersion: szal.dev/v1alpha1
kind: Workflow
metadata: {name: gpus}
spec:
  mode: Parallel
  template:
    script: |
      start=$(date +%s.%N)
      sleep 0.4
      end=$(date +%s.%N)
      echo "{\\"cuda\\": \\"$CUDA_VISIBLE_DEVICES\\", \\"start\\": $start, \\"end\\": $end}" \\
        > "$SZAL_OUTPUTS"
  steps:
  - {name: a, resources: {gpu: {count: 1}}}
  - {name: b, resources: {gpu: {count: 1}}}
  - {name: c, resources: {gpu: {count: 1}}}
  - {name: both, resources: {gpu: {count: 2}}}
  - {name: cpu-only}
"""


def test_assignment_and_waiting(
    szal_inline: Szal, workflow_file: Write, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SZAL_GPUS", "0,1")
    result = szal_inline("run", "--db", db, "--json", workflow_file(GPU_STEPS))
    assert result.code == 0, result.err
    steps = result.status["steps"]
    seen = {name: step["outputs"] for name, step in steps.items()}
    assert seen["both"]["cuda"] == "0,1"
    assert seen["cpu-only"]["cuda"] == ""
    for name in ("a", "b", "c"):
        assert seen[name]["cuda"] in ("0", "1")
    # The processes themselves (not the planner's launch times): at no moment
    # are more than two GPUs in use, and no GPU is used twice at once.
    gpu_steps = {"a": 1, "b": 1, "c": 1, "both": 2}
    for name in gpu_steps:
        moment = seen[name]["start"]
        busy = [other for other in gpu_steps if seen[other]["start"] <= moment < seen[other]["end"]]
        assert sum(gpu_steps[other] for other in busy) <= 2
        devices = [d for other in busy for d in seen[other]["cuda"].split(",")]
        assert len(devices) == len(set(devices))


def test_too_many_gpus_is_invalid(
    szal_inline: Szal, workflow_file: Write, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SZAL_GPUS", "0")
    path = workflow_file(GPU_STEPS)
    result = szal_inline("run", "--db", db, path)
    assert result.code == 2
    assert "step 'both': resources.gpu.count" in result.err
    assert str(path) in result.err
