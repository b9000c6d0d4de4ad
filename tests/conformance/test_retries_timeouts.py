"""Conformance: retries with backoff, per-attempt timeouts and the run deadline.

Covers DESIGN.md section 4 "Retries" (attempts = limit + 1; delay before
attempt n+1 is Fixed = delay, Linear = delay*n, Exponential = delay*2^(n-1),
capped by maxDelay; a TimedOut attempt is retried like a failed one; the
Waiting phase between attempts) and "Timeouts" (per attempt: the attempt is
stopped and the step ends TimedOut with a message naming the limit; per run:
remaining steps Cancelled, run Failed with reason DeadlineExceeded), in
virtual time through the simulated executor. Each attempt's exit code and
outputs belong to that attempt (a later attempt never shows an earlier one's).
Deliberately not: how runners kill processes or delete pods (tests/local, e2e).
"""

from __future__ import annotations

import pytest
from tests.conformance.support import (
    FAIL,
    HANG,
    OK,
    T0,
    Outcome,
    doc,
    launch_times,
    messages,
    phases,
    run,
    simulator,
    step,
)

from szal.engine import Stop


def retried(limit: int, **retries: str) -> dict[str, object]:
    return doc([step("a", retries={"limit": limit, **retries})])


def test_attempts_are_limit_plus_one() -> None:
    status, sim = run(retried(2), {"a": FAIL})
    assert status["steps"]["a"]["attempts"] == 3
    assert status["steps"]["a"]["phase"] == "Failed"
    assert status["phase"] == "Failed"
    assert len(launch_times(sim, "a")) == 3


def test_no_retries_means_one_attempt() -> None:
    status, _ = run(doc([step("a")]), {"a": FAIL})
    assert status["steps"]["a"]["attempts"] == 1


def test_success_on_a_later_attempt_succeeds() -> None:
    status, _ = run(retried(3), {"a": [FAIL, OK]})
    assert status["steps"]["a"]["phase"] == "Succeeded"
    assert status["steps"]["a"]["attempts"] == 2
    assert status["phase"] == "Succeeded"


@pytest.mark.parametrize(
    ("retries", "launches"),
    [
        # each attempt takes 1s; the delay follows its end
        ({"backoff": "Fixed", "delay": "2s"}, [0, 3, 6, 9]),
        ({"backoff": "Linear", "delay": "2s"}, [0, 3, 8, 15]),
        ({"backoff": "Exponential", "delay": "1s"}, [0, 2, 5, 10]),
        ({"backoff": "Exponential", "delay": "1s", "maxDelay": "3s"}, [0, 2, 5, 9]),
        ({"backoff": "Linear", "delay": "2s", "maxDelay": "3s"}, [0, 3, 7, 11]),
        ({"backoff": "Fixed", "delay": "500ms"}, [0, 1.5, 3, 4.5]),
    ],
)
def test_backoff_delays(retries: dict[str, str], launches: list[float]) -> None:
    _, sim = run(retried(3, **retries), {"a": FAIL})
    assert launch_times(sim, "a") == pytest.approx(launches)


def test_default_backoff_is_fixed_one_second() -> None:
    _, sim = run(retried(2), {"a": FAIL})
    assert launch_times(sim, "a") == [0, 2, 4]


def test_waiting_between_attempts() -> None:
    sim = simulator(retried(1, delay="10s"), {"a": FAIL})
    sim.plan()
    sim.advance(None)
    sim.plan()  # the first attempt failed at T0+1
    status = sim.state.to_status()
    a = status["steps"]["a"]
    assert a["phase"] == "Waiting"
    assert a["attempts"] == 1
    assert a["retryAt"] == "2027-01-15T08:00:11.000Z"
    assert status["phase"] == "Running"
    assert status["progress"] == "0/1"


def test_attempt_timeout_stops_the_attempt_and_names_the_limit() -> None:
    status, sim = run(doc([step("a", timeout="90s")]), {"a": HANG})
    a = status["steps"]["a"]
    assert a["phase"] == "TimedOut"
    assert a["attempts"] == 1
    assert "90s" in a["message"]
    assert "timed out" in a["message"]
    assert [(at - T0, s.reason) for at, s in sim.stops] == [(90.0, "timeout")]
    assert status["phase"] == "Failed"
    assert "'a'" in status["message"]


@pytest.mark.parametrize("limit", ["1.5s", "250ms", "1m30s", "2h"])
def test_timeout_message_names_the_limit_as_written(limit: str) -> None:
    status, _ = run(doc([step("a", timeout=limit)]), {"a": HANG})
    assert limit in status["steps"]["a"]["message"]


def test_timeout_from_the_template() -> None:
    status, _ = run(doc([step("a")], template={"timeout": "3s"}), {"a": HANG})
    assert status["steps"]["a"]["phase"] == "TimedOut"


def test_timed_out_attempt_is_retried_like_a_failure() -> None:
    status, sim = run(
        doc([step("a", timeout="2s", retries={"limit": 2, "delay": "1s"})]), {"a": HANG}
    )
    assert status["steps"]["a"]["phase"] == "TimedOut"
    assert status["steps"]["a"]["attempts"] == 3
    assert launch_times(sim, "a") == [0, 3, 6]


def test_timed_out_then_succeeded() -> None:
    status, _ = run(doc([step("a", timeout="2s", retries={"limit": 1})]), {"a": [HANG, OK]})
    assert status["steps"]["a"]["phase"] == "Succeeded"
    assert status["steps"]["a"]["attempts"] == 2


def test_final_failure_after_timeouts_is_failed() -> None:
    status, _ = run(doc([step("a", timeout="2s", retries={"limit": 1})]), {"a": [HANG, FAIL]})
    assert status["steps"]["a"]["phase"] == "Failed"


def test_a_retry_does_not_keep_the_previous_attempts_exit_code_or_outputs() -> None:
    status, _ = run(
        doc([step("a", timeout="2s", retries={"limit": 1})]),
        {"a": [Outcome("Failed", exit_code=3, outputs={"partial": True}), HANG]},
    )
    a = status["steps"]["a"]
    assert a["phase"] == "TimedOut"
    assert "exitCode" not in a
    assert "partial" not in (a.get("outputs") or {})
    status, _ = run(
        doc([step("a", retries={"limit": 1})]),
        {"a": [Outcome("Failed", exit_code=3, outputs={"partial": True}), OK]},
    )
    a = status["steps"]["a"]
    assert a["exitCode"] == 0
    assert "partial" not in (a.get("outputs") or {})


def test_exit_code_of_a_failed_step() -> None:
    status, _ = run(doc([step("a")]), {"a": Outcome("Failed", exit_code=7)})
    assert status["steps"]["a"]["exitCode"] == 7
    assert "7" in status["steps"]["a"]["message"]


# -- the run deadline ---------------------------------------------------------------


def test_run_deadline_cancels_the_rest_and_fails_with_deadline_exceeded() -> None:
    document = doc([step("a"), step("b"), step("c")], timeout="5s")
    status, sim = run(document, {"b": HANG})
    assert phases(status) == {"a": "Succeeded", "b": "Cancelled", "c": "Cancelled"}
    assert status["steps"]["c"]["attempts"] == 0
    assert status["steps"]["b"]["attempts"] == 1
    assert status["phase"] == "Failed"
    condition = status["conditions"][0]
    assert condition["type"] == "Succeeded"
    assert condition["status"] == "False"
    assert condition["reason"] == "DeadlineExceeded"
    assert "5s" in status["message"]
    assert status["finishedAt"] == "2027-01-15T08:00:05.000Z"
    assert status["duration"] == "5s"
    assert status["progress"] == "3/3"
    assert [s.ref.step for _, s in sim.stops if isinstance(s, Stop)] == ["b"]


def test_run_deadline_cancels_waiting_steps_too() -> None:
    document = doc([step("a", retries={"limit": 5, "delay": "1m"})], timeout="30s")
    status, _ = run(document, {"a": FAIL})
    assert status["steps"]["a"]["phase"] == "Cancelled"
    assert status["conditions"][0]["reason"] == "DeadlineExceeded"


def test_run_deadline_does_not_roll_back() -> None:
    document = doc(
        [step("a", rollback={"command": ["undo"]}), step("b")],
        timeout="5s",
        rollbackOnFailure=True,
    )
    status, sim = run(document, {"b": HANG})
    assert status["phase"] == "Failed"
    assert status["conditions"][0]["reason"] == "DeadlineExceeded"
    assert not [ref for ref in sim.launched if ref.rollback]


def test_run_within_its_deadline_succeeds() -> None:
    status, _ = run(doc([step("a"), step("b")], timeout="1h"))
    assert status["phase"] == "Succeeded"
    assert messages(status) == {"a": None, "b": None}
