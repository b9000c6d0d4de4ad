"""When a WorkflowSchedule starts runs: a pure function of the spec, the state and ``now``.

Who calls it: the operator's schedule controller
(:mod:`szal.runners.kubernetes.scheduling`), after every change of the
schedule or of one of its runs and when the next time comes; tests call it
with any ``now`` (virtual time).

Decisions (CronJob's, written down):

* **Cron** is parsed by ``croniter`` (pallets-eco) in the schedule's time
  zone (``zoneinfo``; default UTC), so ``0 9 * * *`` in Europe/Budapest is
  09:00 local across DST changes. A bad expression or zone is a
  :class:`ScheduleInvalid` naming the field (admission refuses it).
* **Missed times never burst.** Of all the times due since the last
  scheduled one (an operator outage, a suspend), only the **latest** may
  start, and only if it is within ``startingDeadlineSeconds`` of ``now``;
  the others are counted as missed. A new schedule (no
  ``lastScheduleTime``) counts from its creation.
* **Concurrency**: Allow starts regardless; Forbid skips a due time while a
  run is active (it is not retried later); Replace cancels the active
  runs, then starts the new one.
* **Suspend** starts nothing; resuming does not start what was missed
  beyond the deadline rule above.
* **History**: finished runs beyond ``successfulRunsHistoryLimit`` /
  ``failedRunsHistoryLimit`` (oldest first) are to be deleted.
* Run names are deterministic: ``<schedule>-<unix minutes of the time>``,
  so a repeated create after a restart hits AlreadyExists instead of
  starting twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from szal.spec.schedules import WorkflowScheduleSpec

FAILED_PHASES = frozenset({"Failed", "RolledBack", "Cancelled"})
TERMINAL_PHASES = FAILED_PHASES | {"Succeeded"}


class ScheduleInvalid(ValueError):
    """The schedule's cron expression or time zone is not valid."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"spec.{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    """One run the schedule made (from the cluster: its label and phase)."""

    name: str
    scheduled_at: dt.datetime
    phase: str = "Pending"

    @property
    def active(self) -> bool:
        return self.phase not in TERMINAL_PHASES


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the controller knows: the last time it started and the runs it made."""

    created_at: dt.datetime
    last_scheduled: dt.datetime | None = None
    runs: tuple[ScheduledRun, ...] = ()


@dataclass(frozen=True, slots=True)
class ScheduleDecision:
    """What to do now, and when to look again."""

    start: dt.datetime | None = None
    """Start the run of this scheduled time (None: nothing to start now)."""
    cancel: tuple[str, ...] = ()
    """Active runs to cancel first (Replace)."""
    delete: tuple[str, ...] = ()
    """Finished runs beyond the history limits."""
    missed: int = 0
    """Due times skipped (past the deadline, or not the latest)."""
    skipped: str | None = None
    """Why the due time did not start (Forbid, suspended), if it did not."""
    next_time: dt.datetime | None = None
    """The next scheduled time after ``now`` (None when suspended)."""
    last_scheduled: dt.datetime | None = None
    """The state's new lastScheduleTime (the due time, started or not)."""
    active: tuple[str, ...] = field(default=())


def zone(spec: WorkflowScheduleSpec) -> dt.tzinfo:
    if not spec.time_zone:
        return dt.UTC
    try:
        return ZoneInfo(spec.time_zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ScheduleInvalid("timeZone", f"unknown time zone {spec.time_zone!r}") from error


def check(spec: WorkflowScheduleSpec) -> None:
    """Raise :class:`ScheduleInvalid` unless the expression and zone are valid."""
    tz = zone(spec)
    if not croniter.is_valid(spec.schedule):
        raise ScheduleInvalid("schedule", f"not a cron expression: {spec.schedule!r}")
    _times_after(spec.schedule, dt.datetime(2026, 1, 1, tzinfo=tz))


def _times_after(expression: str, start: dt.datetime) -> croniter:
    try:
        return croniter(expression, start)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as error:
        raise ScheduleInvalid("schedule", f"not a cron expression: {expression!r}") from error


def next_after(spec: WorkflowScheduleSpec, moment: dt.datetime) -> dt.datetime:
    """The first scheduled time strictly after ``moment`` (UTC)."""
    times = _times_after(spec.schedule, moment.astimezone(zone(spec)))
    value = times.get_next(dt.datetime)
    assert isinstance(value, dt.datetime)
    return value.astimezone(dt.UTC)


def run_name(schedule: str, at: dt.datetime) -> str:
    """``<schedule>-<minutes since the epoch>``: one name per scheduled time."""
    return f"{schedule}-{int(at.timestamp() // 60)}"


def _latest_due(
    spec: WorkflowScheduleSpec, since: dt.datetime, now: dt.datetime
) -> tuple[dt.datetime | None, int]:
    """The latest time in (since, now] and how many earlier ones were due too.

    Bounded: after 1,000 due times the count stops growing and the latest is
    found from the newest end (a schedule idle for years costs no more).
    """
    due: dt.datetime | None = None
    count = 0
    moment = since
    while count < 1000:
        nxt = next_after(spec, moment)
        if nxt > now:
            return due, max(0, count - 1)
        due, moment, count = nxt, nxt, count + 1
    # Very many missed: walk back from now for the latest one.
    times = _times_after(spec.schedule, now.astimezone(zone(spec)))
    latest = times.get_prev(dt.datetime)
    assert isinstance(latest, dt.datetime)
    return latest.astimezone(dt.UTC), count


def prune(spec: WorkflowScheduleSpec, runs: Sequence[ScheduledRun]) -> tuple[str, ...]:
    """Finished runs beyond the history limits, oldest first."""
    done = sorted((r for r in runs if not r.active), key=lambda r: r.scheduled_at, reverse=True)
    good = [r for r in done if r.phase == "Succeeded"]
    bad = [r for r in done if r.phase in FAILED_PHASES]
    extra = good[spec.successful_runs_history_limit :] + bad[spec.failed_runs_history_limit :]
    return tuple(r.name for r in sorted(extra, key=lambda r: r.scheduled_at))


def decide(spec: WorkflowScheduleSpec, state: ScheduleState, now: dt.datetime) -> ScheduleDecision:
    """What the schedule does at ``now`` (see the module docstring)."""
    active = tuple(r.name for r in sorted(state.runs, key=lambda r: r.scheduled_at) if r.active)
    idle = ScheduleDecision(
        delete=prune(spec, state.runs), last_scheduled=state.last_scheduled, active=active
    )
    if spec.suspend:
        return replace(idle, skipped="suspended")
    due, earlier = _latest_due(spec, state.last_scheduled or state.created_at, now)
    idle = replace(idle, next_time=next_after(spec, now))
    if due is None:
        return idle
    late = (now - due).total_seconds()
    deadline = spec.starting_deadline_seconds
    if deadline is not None and late > deadline:
        skipped = f"missed by {late:.0f}s (startingDeadlineSeconds {deadline})"
        return replace(idle, missed=earlier + 1, skipped=skipped, last_scheduled=due)
    if active and spec.concurrency_policy == "Forbid":
        skipped = f"Forbid: {active[-1]} is still active"
        return replace(idle, missed=earlier, skipped=skipped, last_scheduled=due)
    cancel = active if spec.concurrency_policy == "Replace" else ()
    return replace(idle, start=due, cancel=cancel, missed=earlier, last_scheduled=due)
