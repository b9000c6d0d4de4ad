"""The operator's pod creation token bucket (runners/kubernetes/ratelimiting.py).

Covers, in virtual time: a burst served at once, then one creation per
1/rate seconds, refilling while idle up to the burst (never beyond), waiters
served in order with one sleep each, ``hold`` (a Retry-After for every
creation), unlimited, bad settings refused; and a burst of creations
through :class:`PlanApplier` against a fake client that answers 429 first:
every launch is retried, none fails, and the bucket paces them.
Deliberately not: the client's own 429 retries with Retry-After
(tests/kubernetes/test_operator_client.py).
"""

from __future__ import annotations

import asyncio

import pytest

from szal.runners.kubernetes.ratelimiting import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_burst_then_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10.0, 3, clock=clock)
    waits = [bucket.reserve(100.0) for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.2, 0.3])


def test_refills_while_idle_up_to_the_burst() -> None:
    bucket = TokenBucket(2.0, 4, clock=lambda: 0.0)
    for _ in range(4):
        assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(1.0) == 0.0  # 2 tokens back after 1 s
    assert bucket.reserve(1.0) == 0.0
    assert bucket.reserve(1.0) == pytest.approx(0.5)
    # A long idle time refills to the burst, not beyond.
    served = [bucket.reserve(1000.0) for _ in range(5)]
    assert served[:4] == [0.0] * 4 and served[4] == pytest.approx(0.5)


def test_acquire_sleeps_once_per_waiter_in_order() -> None:
    clock = Clock()
    bucket = TokenBucket(5.0, 1, clock=clock, sleep=clock.sleep)

    async def main() -> None:
        for _ in range(4):
            await bucket.acquire()

    asyncio.run(main())
    assert clock.slept == pytest.approx([0.2, 0.2, 0.2])
    assert bucket.waited == pytest.approx(0.6)


def test_hold_stops_every_creation_until_then() -> None:
    bucket = TokenBucket(None, 1, clock=lambda: 0.0)
    assert bucket.reserve(0.0) == 0.0  # unlimited
    bucket.hold(3.0)
    assert bucket.reserve(1.0) == pytest.approx(2.0)
    assert bucket.reserve(3.5) == 0.0
    limited = TokenBucket(100.0, 10, clock=lambda: 0.0)
    limited.hold(1.0)
    assert limited.reserve(0.0) == pytest.approx(1.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate 0"):
        TokenBucket(0.0, 1)
    with pytest.raises(ValueError, match="burst 0"):
        TokenBucket(1.0, 0)


async def test_a_burst_through_the_applier_is_paced_and_429s_are_retries_not_failures() -> None:
    from tests.kubernetes.local_server import serving
    from tests.kubernetes.run_api import RunApi

    from szal.engine.actions import AttemptRef, Launch, Plan
    from szal.engine.compiled import compile_workflow
    from szal.engine.state import RunState, StepState
    from szal.engine.workflow import resolve_workflow
    from szal.runners.kubernetes.applying import PlanApplier
    from szal.runners.kubernetes.client import ApiClient, Credentials, RetrySettings
    from szal.runners.kubernetes.events import RunRef
    from szal.runners.kubernetes.runtime import ReconcilerSettings
    from szal.spec import WorkflowSpec

    n = 12
    spec = WorkflowSpec.model_validate(
        {"mode": "Parallel", "steps": [{"name": f"s{i}", "script": "true"} for i in range(n)]}
    )
    wf = resolve_workflow(spec, name="wf", params={})
    clock = Clock()
    bucket = TokenBucket(4.0, 4, clock=clock, sleep=clock.sleep)
    fake = RunApi()
    pods = "/api/v1/namespaces/ns/pods"
    for _ in range(3):
        fake.fail("POST", pods, 429, "TooManyRequests", "slow down")
    once = RetrySettings(attempts=1, request_timeout=5)
    async with serving(fake.handle) as url, ApiClient(Credentials(url), retry=once) as client:
        applier = PlanApplier(
            client, ReconcilerSettings(), lambda: 0.0, RunRef("ns", "r", "u"), bucket
        )
        applier.attach(wf)
        state = RunState(steps={s.name: StepState() for s in wf.steps})
        launches = tuple(Launch(AttemptRef(s.name, 1), s, s.command, None) for s in wf.steps)
        compiled = compile_workflow(wf)
        await applier.apply(Plan(actions=launches), compiled, state)
        assert applier.take_observations() == []  # no launch failed
        assert applier.retrying  # the three refused ones go out again
        await applier.apply(Plan(), compiled, state)
        assert not applier.retrying
    created = [path for path, _ in fake.requests("POST")]
    assert len(created) == n + 3
    # 15 creations: 4 at once, then 11 more at 4/s.
    assert bucket.waited > 0
    assert clock.now - 100.0 == pytest.approx(11 / 4.0)
