"""Schedule semantics in virtual time: :func:`szal.engine.scheduling.decide`.

Covers: the next time in a time zone (DST included); a due time starts once
(the state moves on); an outage never bursts (only the latest missed time,
and only within startingDeadlineSeconds); Allow, Forbid and Replace with an
active run; suspend; history limits (oldest deleted first); invalid cron
expressions and zones named by field; deterministic run names.

Not covered here: creating the runs on a cluster (e2e/test_schedules.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from szal.engine.scheduling import (
    ScheduledRun,
    ScheduleInvalid,
    ScheduleState,
    check,
    decide,
    next_after,
    run_name,
)
from szal.spec.schedules import WorkflowScheduleSpec

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def spec(schedule: str = "*/5 * * * *", **fields: Any) -> WorkflowScheduleSpec:
    return WorkflowScheduleSpec.model_validate(
        {"schedule": schedule, "workflowRef": {"name": "w"}, **fields}
    )


def test_next_time_in_a_time_zone_across_dst() -> None:
    budapest = spec("0 9 * * *", timeZone="Europe/Budapest")
    # Winter: 09:00 CET is 08:00 UTC; summer: 09:00 CEST is 07:00 UTC.
    assert next_after(budapest, at("2026-03-28T12:00:00")) == at("2026-03-29T07:00:00")
    assert next_after(budapest, at("2026-03-27T12:00:00")) == at("2026-03-28T08:00:00")
    assert next_after(spec("@hourly"), at("2026-01-01T10:30:00")) == at("2026-01-01T11:00:00")


def test_a_due_time_starts_once() -> None:
    s = spec()
    state = ScheduleState(created_at=at("2026-01-01T10:01:00"))
    first = decide(s, state, at("2026-01-01T10:05:02"))
    assert (first.start, first.missed, first.next_time) == (
        at("2026-01-01T10:05:00"),
        0,
        at("2026-01-01T10:10:00"),
    )
    started = ScheduleState(
        created_at=state.created_at,
        last_scheduled=first.last_scheduled,
        runs=(ScheduledRun("w-1", at("2026-01-01T10:05:00"), "Running"),),
    )
    again = decide(s, started, at("2026-01-01T10:07:00"))
    assert again.start is None and again.next_time == at("2026-01-01T10:10:00")
    assert decide(s, state, at("2026-01-01T10:04:59")).start is None


def test_an_outage_never_bursts() -> None:
    s = spec(startingDeadlineSeconds=120)
    state = ScheduleState(
        created_at=at("2026-01-01T00:00:00"), last_scheduled=at("2026-01-01T10:00:00")
    )
    # Down from 10:00 to 11:01: twelve times were due; only 11:00 starts (61 s late).
    back = decide(s, state, at("2026-01-01T11:01:01"))
    assert (back.start, back.missed) == (at("2026-01-01T11:00:00"), 11)
    # Back at 11:03: even the latest (11:00) is past the deadline: none starts.
    late = decide(s, state, at("2026-01-01T11:03:00"))
    assert (
        late.start is None
        and late.missed == 12
        and "startingDeadlineSeconds 120" in str(late.skipped)
    )
    assert late.last_scheduled == at("2026-01-01T11:00:00")  # never reconsidered
    # Without a deadline the latest missed time starts, once.
    assert decide(spec(), state, at("2026-01-01T11:03:00")).start == at("2026-01-01T11:00:00")
    # Years idle: bounded work, still one start.
    idle = decide(spec(), state, at("2030-01-01T00:02:00"))
    assert idle.start == at("2030-01-01T00:00:00") and idle.missed >= 999


@pytest.mark.parametrize(
    ("policy", "start", "cancel"),
    [("Allow", True, ()), ("Forbid", False, ()), ("Replace", True, ("w-old",))],
)
def test_concurrency_policies(policy: str, start: bool, cancel: tuple[str, ...]) -> None:
    s = spec(concurrencyPolicy=policy)
    state = ScheduleState(
        created_at=at("2026-01-01T00:00:00"),
        last_scheduled=at("2026-01-01T10:00:00"),
        runs=(ScheduledRun("w-old", at("2026-01-01T10:00:00"), "Running"),),
    )
    decision = decide(s, state, at("2026-01-01T10:05:01"))
    assert (decision.start is not None, decision.cancel) == (start, cancel)
    if not start:
        assert decision.skipped == "Forbid: w-old is still active"
        assert decision.last_scheduled == at("2026-01-01T10:05:00")  # not retried later


def test_suspend_starts_nothing_and_resuming_keeps_the_deadline() -> None:
    state = ScheduleState(
        created_at=at("2026-01-01T00:00:00"), last_scheduled=at("2026-01-01T10:00:00")
    )
    suspended = decide(spec(suspend=True), state, at("2026-01-01T12:00:30"))
    assert (suspended.start, suspended.next_time, suspended.skipped) == (None, None, "suspended")
    resumed = decide(spec(startingDeadlineSeconds=60), state, at("2026-01-01T12:00:30"))
    assert resumed.start == at("2026-01-01T12:00:00") and resumed.missed == 23


def test_history_limits_delete_the_oldest() -> None:
    runs = tuple(
        ScheduledRun(f"w-{i}", at(f"2026-01-01T10:{i:02d}:00"), phase)
        for i, phase in enumerate(
            ["Succeeded", "Failed", "Succeeded", "Succeeded", "Failed", "Running"]
        )
    )
    s = spec(successfulRunsHistoryLimit=2, failedRunsHistoryLimit=1)
    decision = decide(
        s, ScheduleState(created_at=at("2026-01-01T00:00:00"), runs=runs), at("2026-01-01T10:06:30")
    )
    assert decision.delete == ("w-0", "w-1")
    assert decision.active == ("w-5",)


def test_invalid_expressions_and_zones_name_the_field() -> None:
    with pytest.raises(
        ScheduleInvalid, match=r"spec.schedule: not a cron expression: '61 \* \* \* \*'"
    ):
        check(spec("61 * * * *"))
    with pytest.raises(ScheduleInvalid, match=r"spec.timeZone: unknown time zone 'Mars/Olympus'"):
        check(spec(timeZone="Mars/Olympus"))
    check(spec("0 9 * * 1-5", timeZone="America/New_York"))


def test_run_names_are_one_per_time() -> None:
    assert run_name("nightly", at("2026-01-01T00:00:00")) == "nightly-29453760"
    assert run_name("nightly", at("2026-01-01T00:00:59")) == run_name(
        "nightly", at("2026-01-01T00:00:00")
    )
