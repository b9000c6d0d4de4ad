"""The kopf operator: watches, the pod index, and one reconciler task per run.

``szal operator`` builds an :class:`Operator` and runs it. Everything kopf
does here is watching: there are **no changing handlers** (no
``on.create``/``on.update``/``on.resume``), so kopf never writes its
progress or ``last-handled-configuration`` annotations, and never adds a
finalizer. The handlers:

* ``@kopf.index`` on Pods labelled ``szal.dev/run`` (a server-side label
  selector, so other pods never reach the process), keyed by (namespace,
  run), holding a small :class:`~szal.runners.kubernetes.observing.PodView`
  per pod. kopf fills indexes completely before any handler runs, so a
  restarted operator sees every existing pod before it plans anything.
* ``on.event`` for those Pods: posts the pod's new view to its run's
  :class:`~szal.runners.kubernetes.runtime.Mailbox` (and wakes it).
* ``on.event`` for WorkflowRuns: starts the run's reconciler task on first
  sight, posts newer bodies, and ends the task when the run is deleted.
* ``on.event`` for Workflows: keeps ``status.stepCount`` (the STEPS
  printer column) current - one status write per Workflow generation.
* Admission handlers from :mod:`szal.runners.kubernetes.admission`, when a
  webhook port or Service is given (served as
  :mod:`szal.runners.kubernetes.webhooks` sets up).

**Why not ``@kopf.daemon`` per run** (the KOPF-NOTES blueprint): kopf
hard-codes ``requires_finalizer=True`` for daemons and timers
(``kopf/on.py``). A finalizer costs two writes per run, and - worse -
after the operator is SIGKILLed or uninstalled, every run (and every
namespace holding one) hangs in deletion until it comes back. The issue
asks for a finalizer only where something must happen before deletion,
and nothing must: pods are garbage-collected through their ownerReference
and history is mirrored as the run goes. So the reconciler is a plain
asyncio task per run, started and stopped by the run's own watch events -
the same single, coalescing "mailbox" consumer as the blueprint's daemon,
minus the finalizer. The task is cancelled on the run's DELETED event and
on operator shutdown. (With ``--history-dsn`` the reconciler itself puts one
finalizer on each run, ``szal.dev/history``, so a finished run is not
deleted before its history is committed: see
:mod:`szal.runners.kubernetes.finalizing`. It is released after a bounded
wait, so an absent operator or database never blocks deletion for long.)

**Leader election** (``--leader-elect``, :mod:`szal.runners.kubernetes.electing`):
every replica keeps kopf watching (the pod index stays complete and warm)
and serves the webhook and metrics, but only the Lease holder reconciles.
A standby's run and workflow handlers return at once and it keeps no
mailboxes. On gaining the Lease the operator re-lists every WorkflowRun
and Workflow it serves and feeds them through the same first-sight path
as kopf's initial listing after a restart, so each run resumes from its
status and pods exactly as after a crash. On losing it, every reconciler
task is cancelled at once (synchronously, inside the elector's tick) and
the mailboxes are dropped. A clean shutdown cancels the tasks first, then
releases the Lease so a standby takes over within one retry period.

**Webhook certificates in a cluster** (``--webhook-service``): the webhook
listens on 0.0.0.0 and kopf does not manage any configuration; the
certificate is either the operator's own (``--webhook-secret``,
:mod:`szal.runners.kubernetes.certifying`, made ready before kopf starts
serving) or cert-manager's mounted files (``--webhook-cert-dir``); see
:mod:`szal.runners.kubernetes.webhooks`.

kopf's settings (:func:`~szal.runners.kubernetes.settings.kopf_settings`,
beside :class:`~szal.runners.kubernetes.settings.OperatorSettings`):
``posting.enabled = False`` (kopf's log-to-Event posting: our
own Events are posted explicitly), ``peering.standalone = True`` (kopf's
own peering would pause replicas; the Lease decides who reconciles),
``scanning.disabled = True``
(the CRDs are installed before the operator; no cluster-wide CRD or
namespace watch, and no RBAC for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import kopf
from prometheus_client.registry import Collector

from szal.runners.kubernetes.certifying import CertificateManager
from szal.runners.kubernetes.client import (
    ApiClient,
    ApiError,
    Credentials,
    cluster_path,
    group_path,
    load_credentials,
)
from szal.runners.kubernetes.discovering import wait_for_crds
from szal.runners.kubernetes.electing import (
    ElectionSettings,
    KubernetesLeaseStore,
    LeaderElector,
)
from szal.runners.kubernetes.events import EventPoster
from szal.runners.kubernetes.metrics import MetricsServer, OperatorCollector, check_free, listen
from szal.runners.kubernetes.observing import LABEL_RUN, PodView, pod_view
from szal.runners.kubernetes.pods import label_value
from szal.runners.kubernetes.reconciler import RunReconciler
from szal.runners.kubernetes.runtime import HistorySink, Mailbox, Runtime, TransitionObserver
from szal.runners.kubernetes.settings import OperatorSettings, connection_info, kopf_settings
from szal.runners.kubernetes.workflows import update_workflow_status

if TYPE_CHECKING:
    from szal.runners.kubernetes.scheduling import ScheduleController
from szal.spec import API_VERSION, GROUP, VERSION

logger = logging.getLogger(__name__)

RunKey = tuple[str, str]
POD_INDEX = "step_pods"


class Operator:
    """One operator instance: its kopf registry, settings and live state."""

    def __init__(
        self,
        settings: OperatorSettings | None = None,
        *,
        credentials: Credentials | None = None,
        history: HistorySink | None = None,
        observer: TransitionObserver | None = None,
        collectors: Sequence[Collector] = (),
    ) -> None:
        self.settings = settings or OperatorSettings()
        self.observer = observer
        self.collectors = tuple(collectors)  # more metrics for /metrics
        self.credentials = credentials or load_credentials(
            self.settings.kubeconfig, self.settings.context
        )
        self.history = history
        self.client = ApiClient(self.credentials)  # its session opens on first use
        self._kopf_login: Credentials | None = None  # what kopf was last handed
        self.schedules: ScheduleController | None = None
        self.mailboxes: dict[RunKey, Mailbox] = {}
        self.registry = kopf.OperatorRegistry()
        self.kopf_settings = kopf_settings(self.settings)
        self.ready = asyncio.Event()
        self.runtime: Runtime | None = None
        self._pod_index: Any = None
        self._metrics: MetricsServer | None = None
        self._metrics_socket: socket.socket | None = None
        self.certificates: CertificateManager | None = None
        self.elector: LeaderElector | None = None
        self._election_task: asyncio.Task[None] | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self._register()

    @property
    def leading(self) -> bool:
        """Whether this replica reconciles (always, without leader election)."""
        return self.elector is None or self.elector.is_leader

    # --- running ------------------------------------------------------------

    def namespaces(self) -> list[str]:
        if self.settings.clusterwide:
            return []
        if self.settings.namespaces:
            return list(self.settings.namespaces)
        return [self.credentials.default_namespace or "default"]

    async def run(
        self,
        stop_flag: Any = None,
        ready_flag: Any = None,
    ) -> None:
        """Run until ``stop_flag`` is set (or SIGINT/SIGTERM in the main thread).

        Raises :class:`~szal.runners.kubernetes.metrics.PortUnavailable` before
        anything starts when the metrics or webhook port cannot be listened on.
        """
        if self.settings.metrics_port is not None:
            self._metrics_socket = listen(
                self.settings.metrics_host, self.settings.metrics_port, "--metrics-port"
            )
        if self.settings.webhook_port is not None and self.settings.webhook_service is None:
            check_free(self.settings.webhook_host, self.settings.webhook_port, "--webhook-port")
        if self.settings.metrics_port is not None:
            # Up before the wait for the CRDs, so /readyz can say what it waits for.
            self._metrics = MetricsServer(
                None,
                self.ready,
                self.settings.metrics_host,
                self.settings.metrics_port,
                leader=lambda: self.leading,
                sock=self._metrics_socket,
            )
            await self._metrics.start()
        try:
            if not await wait_for_crds(
                self.client, self._metrics, stop_flag, self.settings.crd_poll_interval
            ):
                return
            if self.certificates is not None:
                # Before kopf serves: its webhook server reads the files once it starts.
                await self.certificates.ensure()
            await self._run_kopf(stop_flag, ready_flag)
        finally:
            if self._metrics is not None:
                await self._metrics.stop()

    async def _run_kopf(self, stop_flag: Any, ready_flag: Any) -> None:
        await kopf.operator(
            registry=self.registry,
            settings=self.kopf_settings,
            clusterwide=self.settings.clusterwide,
            namespaces=self.namespaces(),
            standalone=True,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )

    # --- handlers -----------------------------------------------------------

    def _register(self) -> None:
        reg = self.registry

        @kopf.on.login(id="login", registry=reg)
        async def login(**_: Any) -> kopf.ConnectionInfo:
            # kopf asks again after a 401 or the expiry: renew (an exec plugin
            # runs once even when our client saw the same 401).
            creds = self.client.credentials
            if self._kopf_login is not None or creds.expired():
                creds = await self.client.renew_credentials(self._kopf_login or creds)
            self._kopf_login = creds
            return connection_info(creds)

        @kopf.on.startup(id="startup", registry=reg)
        async def startup(**_: Any) -> None:
            await self._startup()

        @kopf.on.cleanup(id="cleanup", registry=reg)
        async def cleanup(**_: Any) -> None:
            await self._cleanup()

        # Handlers are async (sync ones would run in kopf's thread pool) and
        # carry explicit ids: a closure's default id is its qualified name,
        # and an index reaches other handlers as a kwarg named by its id.
        @kopf.index("v1", "pods", id=POD_INDEX, labels={LABEL_RUN: kopf.PRESENT}, registry=reg)
        async def step_pods(body: Any, **_: Any) -> dict[RunKey, PodView] | None:
            view = pod_view(body)
            if view is None:
                return None
            return {(str(body["metadata"]["namespace"]), view.run): view}

        @kopf.on.event("v1", "pods", id="pod-event", labels={LABEL_RUN: kopf.PRESENT}, registry=reg)
        async def pod_event(event: Any, **kwargs: Any) -> None:
            self._pod_index = kwargs[POD_INDEX]
            raw = event.get("object") or {}
            view = pod_view(raw)
            if view is None:
                return
            mailbox = self.mailboxes.get((str(raw["metadata"].get("namespace")), view.run))
            if mailbox is not None:
                mailbox.post_pod(str(event.get("type") or "ADDED"), view)

        @kopf.on.event(GROUP, VERSION, "workflowruns", id="run-event", registry=reg)
        async def run_event(event: Any, **kwargs: Any) -> None:
            self._pod_index = kwargs[POD_INDEX]
            self._on_run(str(event.get("type") or "ADDED"), event.get("object") or {})

        @kopf.on.event(GROUP, VERSION, "workflows", id="workflow-event", registry=reg)
        async def workflow_event(event: Any, **_: Any) -> None:
            if event.get("type") != "DELETED":
                await self._on_workflow(event.get("object") or {})

        if self.settings.webhook_port is not None or self.settings.webhook_service is not None:
            from szal.runners.kubernetes.webhooks import configure_webhooks

            self.certificates = configure_webhooks(
                self.settings, self.registry, self.kopf_settings, self.client, self.credentials
            )
        if self.settings.schedules:
            from szal.runners.kubernetes.scheduling import ScheduleController

            self.schedules = ScheduleController(self.client, leading=lambda: self.leading)
            self.schedules.register(reg)

    # --- life cycle ---------------------------------------------------------

    async def _startup(self) -> None:
        client = self.client
        events = EventPoster(client, self.settings.events)
        events.start()
        self.runtime = Runtime(
            client=client,
            events=events,
            pods_of=self._pods_of,
            settings=self.settings.reconciler,
            history=self.history,
            observer=self.observer,
        )
        if self.settings.metrics_port is not None:
            collector = OperatorCollector(
                client=client,
                events=events,
                leader=lambda: self.leading,
                passes=lambda: self.runtime.passes if self.runtime else 0,
                write_errors=lambda: self.runtime.health.counts if self.runtime else {},
                active_runs=lambda: sum(
                    1 for m in self.mailboxes.values() if m.task and not m.task.done()
                ),
            )
            assert self._metrics is not None  # started by run()
            self._metrics.registry.register(collector)
            for extra in self.collectors:
                self._metrics.registry.register(extra)
        if self.certificates is not None:
            self.certificates.start()
        if self.settings.leader_election is not None:
            self._start_election(self.settings.leader_election)
        self.ready.set()
        logger.info(
            "szal operator started (%s; namespaces: %s)",
            self.credentials.source,
            "all" if self.settings.clusterwide else ", ".join(self.namespaces()),
        )

    async def _cleanup(self) -> None:
        if self.schedules is not None:
            await self.schedules.stop()
        if self._election_task is not None:
            self._election_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._election_task
        tasks = self._cancel_runs()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.elector is not None:
            # After the run tasks are gone: a standby may start at once.
            await self.elector.release()
        if self.certificates is not None:
            await self.certificates.stop()
        if self.runtime is not None:
            await self.runtime.events.drain(timeout=2.0)
            await self.runtime.events.stop()
            await self.runtime.client.close()
        if self._metrics is not None:
            await self._metrics.stop()

    def _cancel_runs(self) -> list[asyncio.Task[Any]]:
        """Cancel every reconciler task (and a resume in progress); forget the mailboxes."""
        tasks: list[asyncio.Task[Any]] = [
            m.task for m in self.mailboxes.values() if m.task is not None
        ]
        if self._resume_task is not None:
            tasks.append(self._resume_task)
            self._resume_task = None
        for task in tasks:
            task.cancel()
        self.mailboxes.clear()
        return tasks

    # --- leader election ------------------------------------------------------

    def _start_election(self, election: ElectionSettings) -> None:
        if not election.namespace:
            election = replace(
                election,
                namespace=os.environ.get("POD_NAMESPACE") or (self.namespaces() or ["default"])[0],
            )
        self.elector = LeaderElector(
            KubernetesLeaseStore(self.client, election.namespace, election.name),
            election,
            clock=time.time,
            on_started=self._gained_leadership,
            on_stopped=self._lost_leadership,
        )
        self._election_task = asyncio.create_task(self.elector.run(), name="szal-election")
        logger.info(
            "leader election on Lease %s/%s as %s",
            election.namespace,
            election.name,
            self.elector.identity,
        )

    def _gained_leadership(self) -> None:
        self._resume_task = asyncio.create_task(self._resume_all(), name="szal-resume")

    def _lost_leadership(self) -> None:
        cancelled = self._cancel_runs()
        logger.warning("standby now: %d reconciler task(s) stopped", len(cancelled))

    async def _resume_all(self) -> None:
        """As after a restart: every run this operator serves gets its reconciler."""
        scopes: list[str | None] = [None] if self.settings.clusterwide else [*self.namespaces()]
        delay = 0.5
        while True:
            runs: list[dict[str, Any]] = []
            workflows: list[dict[str, Any]] = []
            try:
                for ns in scopes:
                    runs += await self.client.list(_collection(ns, "workflowruns"))
                    workflows += await self.client.list(_collection(ns, "workflows"))
                break
            except ApiError as error:
                logger.warning(
                    "listing runs to resume failed (%s); retrying in %.1fs", error, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for body in runs:
            # List items carry no kind/apiVersion; watch events do.
            body.setdefault("apiVersion", API_VERSION)
            body.setdefault("kind", "WorkflowRun")
            self._on_run("ADDED", body)
        for body in workflows:
            await self._on_workflow(body)
        logger.info("leading: resumed %d run(s)", len(runs))

    def _pods_of(self, namespace: str, run: str) -> Iterable[PodView]:
        if self._pod_index is None:
            return ()
        store = self._pod_index.get((namespace, label_value(run)))
        return list(store) if store is not None else ()

    # --- runs ---------------------------------------------------------------

    def _on_run(self, event_type: str, body: dict[str, Any]) -> None:
        if not self.leading:
            return  # a standby: the leader reconciles; we re-list when we lead
        meta = body.get("metadata") or {}
        # Keyed like the pods' szal.dev/run label (shortened for long names).
        key = (str(meta.get("namespace")), label_value(str(meta.get("name"))))
        mailbox = self.mailboxes.get(key)
        if mailbox is not None and mailbox.uid != meta.get("uid"):
            # A new run with the name of a deleted one.
            self._forget(key)
            mailbox = None
        if event_type == "DELETED":
            self._forget(key)
            return
        if mailbox is None:
            mailbox = Mailbox(key[0], str(meta.get("name")), str(meta.get("uid")), body)
            self.mailboxes[key] = mailbox
            self._spawn(mailbox)
            return
        old_meta = mailbox.body.get("metadata") or {}
        # A deletion request matters too: a run held by the history finalizer
        # is cancelled (if running) and its finalizer released when archived.
        significant = meta.get("generation") != old_meta.get("generation") or bool(
            meta.get("deletionTimestamp") and not old_meta.get("deletionTimestamp")
        )
        idle = mailbox.task is None or mailbox.task.done()
        if idle and not significant:
            # A finished run's reconciler is gone; keep no big body around.
            mailbox.body = _slim(body)
            return
        mailbox.post_run(body, significant=significant)
        if significant and idle:
            self._spawn(mailbox)

    def _spawn(self, mailbox: Mailbox) -> None:
        if self.runtime is None:  # pragma: no cover - handlers run after startup
            raise RuntimeError("the operator has not started")
        reconciler = RunReconciler(self.runtime, mailbox)
        mailbox.wake.set()
        mailbox.task = asyncio.create_task(
            reconciler.run(), name=f"szal-run-{mailbox.namespace}/{mailbox.name}"
        )
        mailbox.task.add_done_callback(lambda _: _release(mailbox))

    def _forget(self, key: RunKey) -> None:
        mailbox = self.mailboxes.pop(key, None)
        if mailbox is not None:
            mailbox.deleted = True
            if mailbox.task is not None:
                mailbox.task.cancel()

    # --- workflows ----------------------------------------------------------

    async def _on_workflow(self, body: dict[str, Any]) -> None:
        """Keep ``status.stepCount`` (the STEPS column) and observedGeneration current."""
        if self.runtime is not None and self.leading:
            await update_workflow_status(self.runtime.client, body)


def _collection(namespace: str | None, plural: str) -> str:
    if namespace is None:
        return cluster_path(API_VERSION, plural)
    return group_path(API_VERSION, namespace, plural)


def _slim(body: dict[str, Any]) -> dict[str, Any]:
    """What a mailbox keeps of a finished run: enough to notice a spec change."""
    meta = body.get("metadata") or {}
    keep = ("name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp")
    return {"metadata": {k: meta[k] for k in keep if k in meta}}


def _release(mailbox: Mailbox) -> None:
    mailbox.body = _slim(mailbox.body)
    mailbox.pods.clear()
