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
  :class:`~szal.runners.kubernetes.reconciler.Mailbox` (and wakes it).
* ``on.event`` for WorkflowRuns: starts the run's reconciler task on first
  sight, posts newer bodies, and ends the task when the run is deleted.
* ``on.event`` for Workflows: keeps ``status.stepCount`` (the STEPS
  printer column) current - one status write per Workflow generation.
* Admission handlers from :mod:`szal.runners.kubernetes.admission`, when a
  webhook port is given.

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

Settings: ``posting.enabled = False`` (kopf's log-to-Event posting: our
own Events are posted explicitly), ``peering.standalone = True`` (one
replica, ``strategy: Recreate``; optimistic-concurrency status writes
keep a second replica from corrupting a run), ``scanning.disabled = True``
(the CRDs are installed before the operator; no cluster-wide CRD or
namespace watch, and no RBAC for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from szal.runners.kubernetes.client import (
    ApiClient,
    ApiError,
    Credentials,
    group_path,
    load_credentials,
)
from szal.runners.kubernetes.events import EventPoster, EventSettings
from szal.runners.kubernetes.metrics import MetricsServer, OperatorCollector
from szal.runners.kubernetes.observing import LABEL_RUN, PodView, pod_view
from szal.runners.kubernetes.pods import label_value
from szal.runners.kubernetes.reconciler import (
    HistorySink,
    Mailbox,
    ReconcilerSettings,
    RunReconciler,
    Runtime,
)
from szal.spec import API_VERSION, GROUP, VERSION

logger = logging.getLogger(__name__)

RunKey = tuple[str, str]
POD_INDEX = "step_pods"


@dataclass(frozen=True)
class OperatorSettings:
    """How ``szal operator`` runs (each field is a command-line flag)."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to serve; empty with ``clusterwide`` False means the kubeconfig's."""
    clusterwide: bool = False
    """Serve every namespace (needs cluster-wide RBAC)."""
    kubeconfig: Path | None = None
    """Kubeconfig file; default $KUBECONFIG, then in-cluster, then ~/.kube/config."""
    context: str | None = None
    """Kubeconfig context; default its current-context."""
    history_dsn: str | None = None
    """Postgres DSN to mirror run history to; none: no mirror."""
    webhook_port: int | None = None
    """Serve admission webhooks on this port (HTTPS); none: no admission checks."""
    webhook_host: str = "127.0.0.1"
    """Address the API server reaches the webhooks at (and the cert's SAN)."""
    webhook_cert_dir: Path | None = None
    """Where the self-signed webhook certificate is kept (made when missing or stale)."""
    metrics_port: int | None = None
    """Serve /metrics, /healthz and /readyz on this port; none: off."""
    metrics_host: str = "0.0.0.0"
    """Address of the metrics server."""
    events: EventSettings = field(default_factory=EventSettings)
    reconciler: ReconcilerSettings = field(default_factory=ReconcilerSettings)


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's settings for this operator (see the module docstring)."""
    ks = kopf.OperatorSettings()
    ks.posting.enabled = False
    ks.peering.standalone = True
    ks.scanning.disabled = True
    ks.watching.label_selectors["v1", "pods"] = LABEL_RUN
    # Watches must notice a dead connection well before a run's deadline.
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    return ks


def connection_info(creds: Credentials) -> kopf.ConnectionInfo:
    """The same server and identity for kopf's watches as for our writes."""
    return kopf.ConnectionInfo(
        server=creds.server,
        ca_data=creds.ca_data.encode() if creds.ca_data else None,
        insecure=creds.insecure or None,
        token=creds.read_token(),
        scheme="Bearer" if creds.token or creds.token_path else None,
        certificate_data=creds.certificate_data.encode() if creds.certificate_data else None,
        private_key_data=creds.private_key_data.encode() if creds.private_key_data else None,
        default_namespace=creds.default_namespace,
    )


class Operator:
    """One operator instance: its kopf registry, settings and live state."""

    def __init__(
        self,
        settings: OperatorSettings | None = None,
        *,
        credentials: Credentials | None = None,
        history: HistorySink | None = None,
    ) -> None:
        self.settings = settings or OperatorSettings()
        self.credentials = credentials or load_credentials(
            self.settings.kubeconfig, self.settings.context
        )
        self.history = history
        self.client = ApiClient(self.credentials)  # its session opens on first use
        self.mailboxes: dict[RunKey, Mailbox] = {}
        self.registry = kopf.OperatorRegistry()
        self.kopf_settings = kopf_settings(self.settings)
        self.ready = asyncio.Event()
        self.runtime: Runtime | None = None
        self._pod_index: Any = None
        self._metrics: MetricsServer | None = None
        self._register()

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
        """Run until ``stop_flag`` is set (or SIGINT/SIGTERM in the main thread)."""
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
        def login(**_: Any) -> kopf.ConnectionInfo:
            return connection_info(self.credentials)

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

        if self.settings.webhook_port is not None:
            self._configure_webhooks()

    def _configure_webhooks(self) -> None:
        from szal.runners.kubernetes import admission, tls

        assert self.settings.webhook_port is not None
        admission.register_admission(
            self.registry, fetch_workflow=admission.fetcher_from_client(self.client)
        )
        cert_dir = self.settings.webhook_cert_dir or Path(
            tempfile.gettempdir(), "szal-webhook-certs"
        )
        cert = tls.ensure_self_signed(cert_dir, hosts=(self.settings.webhook_host,))
        admission.configure_admission(
            self.kopf_settings,
            certfile=str(cert.certfile),
            pkeyfile=str(cert.pkeyfile),
            port=self.settings.webhook_port,
            addr=self.settings.webhook_host,
        )

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
        )
        if self.settings.metrics_port is not None:
            collector = OperatorCollector(
                client=client,
                events=events,
                passes=lambda: self.runtime.passes if self.runtime else 0,
                active_runs=lambda: sum(
                    1 for m in self.mailboxes.values() if m.task and not m.task.done()
                ),
            )
            self._metrics = MetricsServer(
                collector, self.ready, self.settings.metrics_host, self.settings.metrics_port
            )
            await self._metrics.start()
        self.ready.set()
        logger.info(
            "szal operator started (%s; namespaces: %s)",
            self.credentials.source,
            "all" if self.settings.clusterwide else ", ".join(self.namespaces()),
        )

    async def _cleanup(self) -> None:
        tasks = [m.task for m in self.mailboxes.values() if m.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.mailboxes.clear()
        if self.runtime is not None:
            await self.runtime.events.drain(timeout=2.0)
            await self.runtime.events.stop()
            await self.runtime.client.close()
        if self._metrics is not None:
            await self._metrics.stop()

    def _pods_of(self, namespace: str, run: str) -> Iterable[PodView]:
        if self._pod_index is None:
            return ()
        store = self._pod_index.get((namespace, label_value(run)))
        return list(store) if store is not None else ()

    # --- runs ---------------------------------------------------------------

    def _on_run(self, event_type: str, body: dict[str, Any]) -> None:
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
        from szal.spec import Step
        from szal.spec.crd import count_steps

        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        if self.runtime is None or status.get("observedGeneration") == meta.get("generation"):
            return
        try:
            steps = [Step.model_validate(s) for s in (body.get("spec") or {}).get("steps") or []]
        except ValueError:
            return  # admission refuses these; nothing to count
        patch = {
            "status": {
                "stepCount": count_steps(steps),
                "observedGeneration": meta.get("generation"),
            }
        }
        path = (
            group_path(API_VERSION, str(meta.get("namespace")), "workflows", str(meta.get("name")))
            + "/status"
        )
        try:
            await self.runtime.client.merge_patch(path, patch, resource="workflows/status")
        except ApiError as error:
            logger.warning("cannot update status of Workflow %s: %s", meta.get("name"), error)


def _slim(body: dict[str, Any]) -> dict[str, Any]:
    """What a mailbox keeps of a finished run: enough to notice a spec change."""
    meta = body.get("metadata") or {}
    keep = ("name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp")
    return {"metadata": {k: meta[k] for k in keep if k in meta}}


def _release(mailbox: Mailbox) -> None:
    mailbox.body = _slim(mailbox.body)
    mailbox.pods.clear()
