"""Leader election on a ``coordination.k8s.io/v1`` Lease, so ``replicas: 2`` is safe.

Every replica of ``szal operator --leader-elect`` runs a :class:`LeaderElector`;
the one holding the Lease reconciles, the others watch and wait (the
operator gates its reconciler tasks on :attr:`LeaderElector.is_leader`
through the ``on_started`` / ``on_stopped`` callbacks; see
:mod:`szal.runners.kubernetes.operator`).

The semantics are client-go's ``leaderelection`` package, with its default
timings (lease 15 s, renew deadline 10 s, retry period 2 s):

* A replica **acquires** the Lease when nobody holds it (no object, or an
  empty ``holderIdentity`` after a clean release), when it already holds
  it, or when it has **expired**: ``renewTime + leaseDurationSeconds < now``.
  Taking it over from another holder increments ``leaseTransitions``.
* The leader **renews** every retry period (``renewTime = now``).
* A leader that has not renewed successfully for the **renew deadline**
  (or sees another holder in the Lease) stops leading *at once*:
  ``on_stopped`` runs before anything else, so its reconcilers are
  cancelled ``lease - renew deadline`` (5 s) before any standby may
  take over. It then goes on as a standby (client-go's users usually exit
  the process instead; staying up keeps the webhook and metrics served).
* A clean shutdown **releases** the Lease (``holderIdentity`` cleared,
  ``leaseDurationSeconds: 1``), so a standby takes over at its next retry
  instead of after the lease duration.
* Writes are **optimistic**: every update carries the ``resourceVersion``
  read; two replicas racing for an expired Lease both PUT, one gets 409
  Conflict and stays a standby.

Decisions:

* **The decision is a pure function** (:func:`decide`) of the Lease read,
  our identity, the time and the timings; :meth:`LeaderElector.tick` does
  one round of I/O around it and returns when to tick next. The loop
  (:meth:`LeaderElector.run`) only sleeps between ticks. The clock and the
  sleep are passed in, so the unit tests run in virtual time and drive
  ticks of two electors in any interleaving they need.
* **Expiry reads ``renewTime``** (a wall-clock timestamp written by the
  holder), as the brief's formula says, rather than client-go's local
  ``observedTime``: a standby that starts after a leader crashed takes
  over as soon as the lease has run out instead of waiting one more lease
  duration. The price is a dependence on the replicas' clocks agreeing to
  well under the 5 s margin between the renew deadline and the lease
  duration, which NTP-synced nodes do.
* **Each API call is bounded** by what is left of the renew deadline (a
  leader) or by the retry period (a standby), so a hung connection cannot
  keep a partitioned leader reconciling past its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from szal.runners.kubernetes.client import (
    AlreadyExists,
    ApiClient,
    ApiError,
    Conflict,
    NotFound,
    group_path,
)

logger = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"
DEFAULT_LEASE_NAME = "szal-operator"


@dataclass(frozen=True, slots=True)
class ElectionSettings:
    """Which Lease, who we are, and client-go's timings (seconds)."""

    namespace: str
    """Namespace of the Lease (``--leader-election-namespace``)."""
    name: str = DEFAULT_LEASE_NAME
    """Name of the Lease (``--leader-election-lease-name``)."""
    identity: str = ""
    """This replica's holderIdentity; empty: :func:`default_identity`."""
    lease_duration: float = 15.0
    """How long a standby waits after the last renewal before taking over."""
    renew_deadline: float = 10.0
    """How long a leader keeps leading without a successful renewal."""
    retry_period: float = 2.0
    """Time between tries, for the leader (renew) and the standbys (acquire)."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration"
                f" (got {self.retry_period:g} / {self.renew_deadline:g} /"
                f" {self.lease_duration:g} s)"
            )


def default_identity() -> str:
    """``$POD_NAME``, else ``<hostname>_<pid>`` (unique per process on one host)."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


# --- the Lease as data ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The fields of a Lease that election reads and writes (times in epoch seconds)."""

    holder: str = ""
    duration: float = 0.0
    acquire_time: float | None = None
    renew_time: float | None = None
    transitions: int = 0
    resource_version: str | None = None

    def expired(self, now: float) -> bool:
        if not self.holder or self.renew_time is None:
            return True
        return self.renew_time + self.duration < now


def format_micro_time(epoch: float) -> str:
    """A ``MicroTime`` as the API server stores it: RFC 3339 with microseconds."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def record_from_lease(body: Mapping[str, Any]) -> LeaseRecord:
    spec = body.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration=float(spec.get("leaseDurationSeconds") or 0),
        acquire_time=parse_micro_time(spec.get("acquireTime")),
        renew_time=parse_micro_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=(body.get("metadata") or {}).get("resourceVersion"),
    )


def lease_body(namespace: str, name: str, record: LeaseRecord) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "holderIdentity": record.holder or None,
        "leaseDurationSeconds": max(1, round(record.duration)),
        "leaseTransitions": record.transitions,
    }
    if record.acquire_time is not None:
        spec["acquireTime"] = format_micro_time(record.acquire_time)
    if record.renew_time is not None:
        spec["renewTime"] = format_micro_time(record.renew_time)
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if record.resource_version is not None:
        meta["resourceVersion"] = record.resource_version
    return {"apiVersion": LEASE_API, "kind": "Lease", "metadata": meta, "spec": spec}


# --- the pure decision ------------------------------------------------------

Action = Literal["create", "update", "observe"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What one tick does: write ``record`` (create or update), or just observe."""

    action: Action
    record: LeaseRecord | None = None


def decide(
    current: LeaseRecord | None, identity: str, now: float, settings: ElectionSettings
) -> Decision:
    """Try to acquire or renew: the Lease to write, or ``observe`` (someone else leads)."""
    if current is None:
        return Decision(
            "create",
            LeaseRecord(identity, settings.lease_duration, now, now, 0, None),
        )
    ours = current.holder == identity
    if not ours and not current.expired(now):
        return Decision("observe")
    return Decision(
        "update",
        LeaseRecord(
            holder=identity,
            duration=settings.lease_duration,
            acquire_time=current.acquire_time if ours and current.acquire_time else now,
            renew_time=now,
            transitions=current.transitions if ours else current.transitions + 1,
            resource_version=current.resource_version,
        ),
    )


def released(current: LeaseRecord, now: float) -> LeaseRecord:
    """The Lease a leader leaves behind on a clean shutdown (client-go's release)."""
    return replace(current, holder="", duration=1.0, acquire_time=now, renew_time=now)


# --- the Lease store (I/O) ----------------------------------------------------


class LeaseStore(Protocol):
    """Read and write one Lease; ``update`` raises :class:`Conflict` on a stale version."""

    async def get(self) -> LeaseRecord | None: ...

    async def create(self, record: LeaseRecord) -> LeaseRecord: ...

    async def update(self, record: LeaseRecord) -> LeaseRecord: ...


@dataclass
class KubernetesLeaseStore:
    """The Lease through the operator's own API client (GET, POST, PUT)."""

    client: ApiClient
    namespace: str
    name: str

    def _path(self, named: bool = True) -> str:
        return group_path(LEASE_API, self.namespace, "leases", self.name if named else None)

    async def get(self) -> LeaseRecord | None:
        try:
            return record_from_lease(await self.client.get(self._path()))
        except NotFound:
            return None

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        body = lease_body(self.namespace, self.name, replace(record, resource_version=None))
        created = await self.client.create(self._path(named=False), body, resource="leases")
        return record_from_lease(created)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        body = lease_body(self.namespace, self.name, record)
        updated = await self.client.replace(self._path(), body, resource="leases")
        return record_from_lease(updated)


# --- the elector --------------------------------------------------------------


class LeaderElector:
    """One replica's side of the election; see the module docstring."""

    def __init__(
        self,
        store: LeaseStore,
        settings: ElectionSettings,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.identity = settings.identity or default_identity()
        self.clock = clock
        self.sleep = sleep
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.is_leader = False
        self.observed: LeaseRecord | None = None
        """The Lease as last read or written."""
        self.last_renewed: float | None = None
        """When this replica last wrote the Lease as its holder (while leading)."""

    # --- one round ------------------------------------------------------------

    async def tick(self) -> float:
        """Try once to acquire or renew; return the seconds until the next try."""
        settings = self.settings
        start = self.clock()
        budget = settings.retry_period
        if self.is_leader and self.last_renewed is not None:
            budget = settings.renew_deadline - (start - self.last_renewed)
            if budget <= 0:
                self._lose("the renew deadline passed")
                return settings.retry_period
        ok = False
        try:
            async with asyncio.timeout(budget):
                ok = await self._try(start)
        except (ApiError, TimeoutError) as error:
            logger.warning("leader election: %s failed: %s", self._verb(), error or "timed out")
        now = self.clock()
        if ok:
            self.last_renewed = start
            if not self.is_leader:
                self.is_leader = True
                logger.info(
                    "leader election: %s now leads (Lease %s/%s, transitions %d)",
                    self.identity,
                    settings.namespace,
                    settings.name,
                    self.observed.transitions if self.observed else 0,
                )
                self.on_started()
        elif self.is_leader:
            holder = self.observed.holder if self.observed else ""
            if holder and holder != self.identity:
                self._lose(f"{holder} holds the Lease")
            elif self.last_renewed is None or now - self.last_renewed >= settings.renew_deadline:
                self._lose("the renew deadline passed")
        return settings.retry_period

    def _verb(self) -> str:
        return "renewing" if self.is_leader else "acquiring"

    async def _try(self, now: float) -> bool:
        current = await self.store.get()
        self.observed = current
        decision = decide(current, self.identity, now, self.settings)
        if decision.action == "observe" or decision.record is None:
            return False
        try:
            if decision.action == "create":
                self.observed = await self.store.create(decision.record)
            else:
                self.observed = await self.store.update(decision.record)
        except (AlreadyExists, Conflict):
            # Another replica wrote first; read again on the next tick.
            return False
        return True

    def _lose(self, why: str) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        self.last_renewed = None
        logger.warning("leader election: %s stops leading: %s", self.identity, why)
        self.on_stopped()

    # --- the loop -------------------------------------------------------------

    async def run(self) -> None:
        """Tick until cancelled."""
        while True:
            delay = await self.tick()
            await self.sleep(delay)

    async def release(self) -> bool:
        """Give the Lease up if we hold it (a clean shutdown); True if released."""
        if not self.is_leader or self.observed is None:
            return False
        self.is_leader = False
        self.last_renewed = None
        self.on_stopped()
        try:
            async with asyncio.timeout(self.settings.retry_period):
                self.observed = await self.store.update(released(self.observed, self.clock()))
        except (ApiError, TimeoutError) as error:
            logger.warning("leader election: releasing the Lease failed: %s", error)
            return False
        logger.info("leader election: %s released the Lease", self.identity)
        return True
