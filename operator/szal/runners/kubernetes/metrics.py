"""Prometheus metrics and health probes of the operator, on one small HTTP port.

Served by aiohttp on ``--metrics-port`` (off by default):

* ``/metrics`` - Prometheus text: API writes by verb and resource (the
  benchmark's "writes per step" reads ``szal_api_writes_total``), reconcile
  passes, runs being reconciled, Events posted and dropped, and the
  process's peak resident memory.
* ``/healthz`` - 200 while the process serves; ``/readyz`` - 200 once the
  operator's watches have started (the readiness flag kopf raises), with
  the body ``leader`` or ``standby``: both are ready, since every replica
  serves the webhook. ``szal_leader`` (1 or 0) says the same to Prometheus.

The values are read at scrape time from the live objects (a custom
collector), so the hot path only bumps plain counters.

The port is bound before kopf starts (:func:`listen`), so a taken port ends
the operator at once with a message naming the flag, instead of leaving a
process that looks alive and serves nothing (issue 12).
"""

from __future__ import annotations

import asyncio
import resource
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from szal.runners.kubernetes.client import ApiClient
from szal.runners.kubernetes.events import EventPoster
from szal.runners.kubernetes.health import WriteErrorKind


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(eq=False)  # the registry keeps collectors in a dict
class OperatorCollector(Collector):
    """Reads the operator's counters when Prometheus scrapes."""

    client: ApiClient
    events: EventPoster
    passes: Callable[[], int]
    active_runs: Callable[[], int]
    leader: Callable[[], bool] = lambda: True
    write_errors: Callable[[], Mapping[WriteErrorKind, int]] = dict
    """Failing writes by kind (:mod:`szal.runners.kubernetes.health`)."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        writes = CounterMetricFamily(
            "szal_api_writes",
            "API write requests sent by the operator",
            labels=["verb", "resource"],
        )
        for (verb, res), count in sorted(self.client.writes.items()):
            writes.add_metric([verb, res], count)
        yield writes
        errors = CounterMetricFamily(
            "szal_api_write_errors",
            "API writes that failed for a cluster-wide reason, by kind (etcd-space-exceeded, "
            "throttled, server-error, unreachable)",
            labels=["kind"],
        )
        for kind, count in sorted(self.write_errors().items()):
            errors.add_metric([kind.value], count)
        yield errors
        yield CounterMetricFamily(
            "szal_reconcile_passes", "Reconcile passes over all runs", value=self.passes()
        )
        yield GaugeMetricFamily(
            "szal_runs_active", "Runs with a reconciler in memory", value=self.active_runs()
        )
        yield CounterMetricFamily(
            "szal_events_posted", "Kubernetes Events posted", value=self.events.posted
        )
        yield CounterMetricFamily(
            "szal_events_dropped", "Events dropped (queue full)", value=self.events.dropped
        )
        yield GaugeMetricFamily(
            "szal_leader",
            "1 if this replica holds the leader Lease (or runs without election), else 0",
            value=1 if self.leader() else 0,
        )
        yield GaugeMetricFamily(
            "szal_peak_rss_bytes", "Peak resident set size of the process", value=peak_rss_bytes()
        )


class PortUnavailable(OSError):
    """A port the operator must listen on cannot be bound (taken, or not allowed)."""


def listen(host: str, port: int, flag: str) -> socket.socket:
    """A listening socket on ``host:port``, or :class:`PortUnavailable` naming ``flag``."""
    try:
        return socket.create_server((host, port), backlog=128)
    except OSError as error:
        reason = error.strerror or str(error)
        raise PortUnavailable(f"{flag} {port}: cannot listen on {host}:{port}: {reason}") from error


def check_free(host: str, port: int, flag: str) -> None:
    """Fail now, naming ``flag``, if ``host:port`` cannot be listened on (bound later)."""
    listen(host, port, flag).close()


class MetricsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` on ``host:port``."""

    def __init__(
        self,
        collector: Collector | None,
        ready: asyncio.Event,
        host: str,
        port: int,
        *,
        leader: Callable[[], bool] = lambda: True,
        sock: socket.socket | None = None,
    ) -> None:
        self.leader = leader
        self.sock = sock
        self.registry = CollectorRegistry(auto_describe=False)
        if collector is not None:
            self.registry.register(collector)
        self.ready = ready
        self.waiting_for: str | None = None
        """What the operator waits for before it can start (the /readyz body meanwhile)."""
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), content_type="text/plain", charset="utf-8"
        )

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.ready.is_set():
            return web.Response(text="leader" if self.leader() else "standby")
        return web.Response(status=503, text=self.waiting_for or "starting")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        if self.sock is not None:
            await web.SockSite(self._runner, self.sock).start()
        else:
            await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
