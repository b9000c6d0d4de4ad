"""Leader election (``szal.runners.kubernetes.electing``) in virtual time.

Covers: acquiring a missing Lease and renewing it; a standby waiting while
the Lease is fresh and taking over once ``renewTime + leaseDuration`` has
passed (``leaseTransitions`` incremented); a leader that cannot renew stops
leading at the renew deadline, before any standby may take over; a leader
that sees another holder stops at once; a clean release lets a standby
take over at its next tick; two standbys racing for an expired Lease - one
wins, the other gets 409 Conflict; the timings are checked; MicroTime
round trips; ``szal operator`` refuses bad flag combinations (exit 2,
naming the flags) and hands the election and webhook flags on.

The electors talk through the real :class:`KubernetesLeaseStore` and
:class:`ApiClient` to a small Lease API served here over HTTP (GET, POST,
PUT with ``resourceVersion`` preconditions, as the API server does it).
The clock is virtual and the tests drive :meth:`LeaderElector.tick`
themselves, so no test sleeps. Not covered: the real API server (the e2e
failover test, ``e2e/test_operator_leader.py``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from tests.kubernetes.local_server import serving

from szal.runners.kubernetes.client import ApiClient, Credentials, RetrySettings
from szal.runners.kubernetes.electing import (
    ElectionSettings,
    KubernetesLeaseStore,
    LeaderElector,
    LeaseRecord,
    decide,
    format_micro_time,
    parse_micro_time,
)

COLLECTION = "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
SETTINGS = ElectionSettings(namespace="ns", name="szal-operator")


@dataclass
class LeaseApi:
    """Leases by name, with the API server's resourceVersion rules."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = 0
    failing: bool = False
    gets_to_hold: int = 0
    _held: list[asyncio.Future[None]] = field(default_factory=list)

    def _status(self, code: int, reason: str) -> web.Response:
        body = {"kind": "Status", "reason": reason, "message": reason, "code": code}
        return web.json_response(body, status=code)

    def _store(self, name: str, body: dict[str, Any]) -> web.Response:
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)
        self.objects[name] = body
        return web.json_response(body)

    async def handle(self, request: web.Request) -> web.Response:
        if self.failing:
            return self._status(500, "InternalError")
        if request.method == "POST" and request.path == COLLECTION:
            body = json.loads(await request.text())
            name = body["metadata"]["name"]
            if name in self.objects:
                return self._status(409, "AlreadyExists")
            return self._store(name, body)
        name = request.path.rsplit("/", 1)[-1]
        if request.method == "GET":
            if self.gets_to_hold:
                # Hold GETs until this many arrived: every racer reads the same version.
                waiter = asyncio.get_running_loop().create_future()
                self._held.append(waiter)
                if len(self._held) >= self.gets_to_hold:
                    self.gets_to_hold = 0
                    for held in self._held:
                        held.set_result(None)
                await waiter
            if name not in self.objects:
                return self._status(404, "NotFound")
            return web.json_response(self.objects[name])
        if request.method == "PUT":
            body = json.loads(await request.text())
            if name not in self.objects:
                return self._status(404, "NotFound")
            if body["metadata"].get("resourceVersion") != str(
                self.objects[name]["metadata"]["resourceVersion"]
            ):
                return self._status(409, "Conflict")
            return self._store(name, body)
        return self._status(405, "MethodNotAllowed")

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.objects["szal-operator"]["spec"]
        return spec


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Replica:
    elector: LeaderElector
    started: int = 0
    stopped: int = 0


@pytest.fixture
async def api() -> AsyncIterator[tuple[LeaseApi, str]]:
    lease_api = LeaseApi()
    async with serving(lease_api.handle) as url:
        yield lease_api, url


@pytest.fixture
async def make_replica(
    api: tuple[LeaseApi, str],
) -> AsyncIterator[Any]:
    clients: list[ApiClient] = []
    clock = Clock()

    def make(identity: str) -> Replica:
        client = ApiClient(
            Credentials(server=api[1]),
            retry=RetrySettings(attempts=1, request_timeout=5),
        )
        clients.append(client)
        replica: Replica
        elector = LeaderElector(
            KubernetesLeaseStore(client, "ns", "szal-operator"),
            ElectionSettings(namespace="ns", identity=identity),
            clock=clock,
            on_started=lambda: setattr(replica, "started", replica.started + 1),
            on_stopped=lambda: setattr(replica, "stopped", replica.stopped + 1),
        )
        replica = Replica(elector)
        return replica

    make.clock = clock  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for client in clients:
            await client.close()


async def test_acquires_a_missing_lease_and_renews_it(
    api: tuple[LeaseApi, str], make_replica: Any
) -> None:
    lease_api, _ = api
    clock: Clock = make_replica.clock
    a = make_replica("a")
    assert await a.elector.tick() == 2.0
    assert a.elector.is_leader and a.started == 1
    spec = lease_api.spec()
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    acquired = spec["acquireTime"]
    version = lease_api.objects["szal-operator"]["metadata"]["resourceVersion"]
    clock.advance(2)
    await a.elector.tick()
    spec = lease_api.spec()
    assert spec["renewTime"] == format_micro_time(clock.now)
    assert spec["acquireTime"] == acquired
    assert lease_api.objects["szal-operator"]["metadata"]["resourceVersion"] != version
    assert a.started == 1 and a.stopped == 0


async def test_standby_takes_over_only_after_the_lease_expired(
    api: tuple[LeaseApi, str], make_replica: Any
) -> None:
    lease_api, _ = api
    clock: Clock = make_replica.clock
    a, b = make_replica("a"), make_replica("b")
    await a.elector.tick()
    last_renewal = clock.now
    await b.elector.tick()
    assert not b.elector.is_leader
    # "a" is killed: it never ticks again. "b" retries every 2 s.
    while not b.elector.is_leader:
        clock.advance(2)
        await b.elector.tick()
        if clock.now - last_renewal <= 15:
            assert not b.elector.is_leader, "took over a Lease that had not expired"
    assert 15 < clock.now - last_renewal <= 17
    spec = lease_api.spec()
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert spec["acquireTime"] == format_micro_time(clock.now)
    assert b.started == 1


async def test_leader_stops_at_the_renew_deadline_before_anyone_can_take_over(
    api: tuple[LeaseApi, str], make_replica: Any
) -> None:
    lease_api, _ = api
    clock: Clock = make_replica.clock
    a, b = make_replica("a"), make_replica("b")
    await a.elector.tick()
    last_renewal = clock.now
    lease_api.failing = True
    stopped_at = None
    while stopped_at is None:
        clock.advance(2)
        await a.elector.tick()
        if not a.elector.is_leader:
            stopped_at = clock.now
    assert stopped_at - last_renewal == 10
    assert a.stopped == 1
    # The API comes back; "b" (a standby all along) must still wait for the expiry.
    lease_api.failing = False
    await b.elector.tick()
    assert not b.elector.is_leader
    clock.advance(15 - 10 + 0.5)
    await b.elector.tick()
    assert b.elector.is_leader
    # "a" keeps running as a standby and does not grab it back.
    await a.elector.tick()
    assert not a.elector.is_leader and a.started == 1


async def test_leader_that_sees_another_holder_stops_at_once(
    api: tuple[LeaseApi, str], make_replica: Any
) -> None:
    lease_api, _ = api
    clock: Clock = make_replica.clock
    a = make_replica("a")
    await a.elector.tick()
    lease_api.spec()["holderIdentity"] = "intruder"
    lease_api.spec()["renewTime"] = format_micro_time(clock.now)
    clock.advance(2)
    await a.elector.tick()
    assert not a.elector.is_leader and a.stopped == 1


async def test_release_on_shutdown_lets_a_standby_take_over_at_once(
    api: tuple[LeaseApi, str], make_replica: Any
) -> None:
    lease_api, _ = api
    clock: Clock = make_replica.clock
    a, b = make_replica("a"), make_replica("b")
    await a.elector.tick()
    await b.elector.tick()
    assert await a.elector.release()
    assert a.stopped == 1 and not a.elector.is_leader
    spec = lease_api.spec()
    assert spec.get("holderIdentity") is None and spec["leaseDurationSeconds"] == 1
    clock.advance(2)  # b's next retry, well inside the old 15 s lease
    await b.elector.tick()
    assert b.elector.is_leader
    assert lease_api.spec()["leaseTransitions"] == 1
    # Releasing as a standby does nothing.
    assert not await a.elector.release()


async def test_racing_standbys_one_wins_the_other_gets_a_conflict(
    api: tuple[LeaseApi, str], make_replica: Any
) -> None:
    lease_api, _ = api
    clock: Clock = make_replica.clock
    a, b, c = make_replica("a"), make_replica("b"), make_replica("c")
    await a.elector.tick()
    clock.advance(16)  # "a" died; the Lease expired
    lease_api.gets_to_hold = 2
    await asyncio.gather(b.elector.tick(), c.elector.tick())
    leaders = [r for r in (b, c) if r.elector.is_leader]
    assert len(leaders) == 1
    assert lease_api.spec()["holderIdentity"] == leaders[0].elector.identity
    assert lease_api.spec()["leaseTransitions"] == 1
    loser = c if leaders[0] is b else b
    assert loser.started == 0
    # The loser reads the winner's fresh Lease next time and stays a standby.
    clock.advance(2)
    await loser.elector.tick()
    assert not loser.elector.is_leader


def test_decide_is_pure_and_follows_the_expiry_rule() -> None:
    now = 1_800_000_000.0
    held = LeaseRecord("a", 15, now - 20, now - 15, 3, "7")
    assert decide(held, "b", now, SETTINGS).action == "observe"  # exactly at expiry: valid
    taken = decide(held, "b", now + 0.001, SETTINGS)
    assert taken.action == "update" and taken.record is not None
    assert taken.record.transitions == 4 and taken.record.resource_version == "7"
    renewed = decide(held, "a", now, SETTINGS).record
    assert renewed is not None and renewed.transitions == 3 and renewed.acquire_time == now - 20
    assert decide(None, "a", now, SETTINGS).action == "create"
    assert decide(LeaseRecord(), "b", now, SETTINGS).action == "update"  # released


def test_timings_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        ElectionSettings(namespace="ns", lease_duration=10, renew_deadline=10)


def test_micro_time_round_trips() -> None:
    epoch = 1_800_000_000.123456
    text = format_micro_time(epoch)
    assert text == "2027-01-15T08:00:00.123456Z"
    assert parse_micro_time(text) == pytest.approx(epoch, abs=1e-6)


# --- the command line -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook-service", "svc"], "--webhook-service needs --webhook-secret"),
        (["--webhook-secret", "s"], "--webhook-secret needs --webhook-service"),
        (
            ["--leader-elect", "--leader-election-renew-deadline", "20"],
            "retry period < renew deadline < lease duration",
        ),
    ],
)
def test_operator_refuses_bad_flag_combinations(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from szal.cli import main

    assert main(["operator", *args]) == 2
    assert message in capsys.readouterr().err


def test_operator_flags_reach_the_settings() -> None:
    from szal.cli import build_parser
    from szal.cli.operator_cmd import _settings

    flags = ["--leader-elect", "--leader-election-lease-name", "x", "--webhook-service", "svc"]
    flags += ["--webhook-secret", "tls", "--webhook-configuration", "vwc"]
    args = build_parser().parse_args(["operator", *flags])
    settings = _settings(args)
    assert settings.leader_election == ElectionSettings(namespace="", name="x")
    assert settings.webhook_port == 9443
    assert (settings.webhook_service, settings.webhook_secret) == ("svc", "tls")
    assert settings.webhook_configuration == "vwc"
