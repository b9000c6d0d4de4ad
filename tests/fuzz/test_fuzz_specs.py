"""Fuzzing the way in: every Workflow document is either valid or refused by field.

Hypothesis builds Workflow documents (tests/fuzz/strategies.py) and writes
each to a file; ``szal validate`` (in process, through the CLI's own entry
point) must exit 0 or 2 and never raise, every problem it prints must name
the file and a field or document, and a document it calls valid must load,
resolve and run to a terminal phase in the engine (driven by the test
simulator, with random attempt outcomes). A few hundred cases run in
``make test``; ``SZAL_FUZZ_EXAMPLES=10000`` is the nightly-sized setting.

Not covered here: the admission webhook's HTTP layer (e2e/test_crds_admission.py)
and the conditions DSL on its own (test_fuzz_conditions.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.engine.simulator import Outcome, Simulator
from tests.fuzz.strategies import workflow_documents

from szal.cli import main
from szal.cli.loading import InputError, load_file

EXAMPLES = int(os.environ.get("SZAL_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
OUTCOMES = [Outcome("Succeeded", 1.0), Outcome("Failed", 2.0), Outcome("Succeeded", 0.0)]


def _validate(path: Path) -> tuple[int, list[str]]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["validate", "-q", str(path)])
    return code, [line for line in err.getvalue().splitlines() if line.strip()]


def _check(document: dict[str, Any], seed: int) -> bool:
    """Validate one document; run it when valid. True when it was valid."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wf.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        code, problems = _validate(path)
        assert code in (0, 2), (code, problems)
        if code == 2:
            assert problems, "exit 2 with nothing said"
            for problem in problems:
                assert problem.startswith(f"{path}"), problem
                assert "Traceback" not in problem
            return False
        assert not problems, problems
        try:
            loaded = load_file(str(path))
        except InputError as exc:
            # valid as a definition, not runnable as it stands: a required param
            assert str(exc).startswith(str(path)) and "param" in str(exc), str(exc)
            return True
    workflow = loaded.admitted.workflow
    rng = random.Random(seed)
    script = {s: rng.choice(OUTCOMES) for s in workflow.by_name}
    sim = Simulator(workflow, script=lambda ref: script[ref.step])
    state = sim.run(max_calls=10_000)
    assert state.phase.is_terminal, state.phase
    return True


@FUZZ
@given(document=workflow_documents(noisy=True), seed=st.integers(0, 2**16))
def test_noisy_documents_are_valid_or_refused_by_field(document: dict[str, Any], seed: int) -> None:
    _check(document, seed)


@FUZZ
@given(document=workflow_documents(noisy=False), seed=st.integers(0, 2**16))
def test_plausible_documents_validate_and_valid_ones_run(
    document: dict[str, Any], seed: int
) -> None:
    _check(document, seed)


def test_the_plausible_family_reaches_the_run_path() -> None:
    """Guard against a strategy that never produces a valid document (the run path unexercised)."""
    valid = 0

    @settings(
        max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(document=workflow_documents(noisy=False), seed=st.integers(0, 2**16))
    def count(document: dict[str, Any], seed: int) -> None:
        nonlocal valid
        valid += _check(document, seed)

    count()
    assert valid >= 5, f"only {valid} of 150 plausible documents were valid"
