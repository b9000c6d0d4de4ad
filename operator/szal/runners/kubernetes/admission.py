"""Admission checks: the API server refuses a Workflow or WorkflowRun the engine would.

The CRD schema (``szal crds``) checks shape; what needs the whole
definition - cycles, unknown dependencies, bad ``when`` expressions, a
``workflowRef`` naming nothing, params the workflow does not declare - is
checked here, by the same entry point ``szal run`` and the operator use
(:mod:`szal.engine.admitting`). ``kubectl apply`` of a bad manifest then
prints every problem, each naming its step and field, instead of a run that
fails later.

Wiring: :func:`register_admission` adds two ``@kopf.on.validate`` handlers
to a registry the operator passes in, with fixed ids
(:data:`WORKFLOW_HANDLER_ID`, :data:`WORKFLOW_RUN_HANDLER_ID`), which are
also the webhook URL paths. :func:`configure_admission` sets kopf's webhook
server and managed webhook configurations on the operator's settings.

Decisions:

* **Operations CREATE and UPDATE only, main resource only.** Status writes
  (``/status``) never reach the webhook, and DELETE is always allowed.
* **An UPDATE that leaves ``spec`` alone is allowed at once** (kopf's own
  finalizer patches, labels, annotations). A WorkflowRun's spec is
  immutable except its controls (:mod:`szal.spec.immutability`, also CEL
  rules on the CRD): an UPDATE changing ``workflowRef``, ``workflow`` or
  ``params`` is refused saying so, and one changing only ``suspend``,
  ``cancel`` or ``ttlSecondsAfterFinished`` is allowed without looking up
  its Workflow, which may since have been edited or deleted.
* **The workflowRef lookup** goes through a ``fetch_workflow(namespace,
  name)`` callable that the operator provides (its API client; see
  :func:`fetcher_from_client`). Without one, only what the run holds is
  checked and the reconciler reports a missing Workflow in the run's
  status. If the lookup itself fails (API server unreachable, forbidden),
  the run is admitted and the reconciler decides: a webhook outage must
  not become a cluster-wide outage of run creation.
* **The same way in as a run start**: a Workflow goes through
  :func:`szal.engine.admitting.admit_definition`, a WorkflowRun's workflow
  (inline, or the one ``workflowRef`` names) with its params through
  :func:`szal.engine.admitting.admit`, as the reconciler starts it: format
  migration first (a definition newer than this operator is refused, naming
  both), one validation per review, every problem in one refusal.
* **Step Pods are dry-run** (server-side, ``dryRun=All``) once a Workflow
  passes the engine's checks, when the operator passes ``dry_run``: a
  volume mount naming no volume is refused at ``kubectl apply``, not at the
  step's start (see :mod:`szal.runners.kubernetes.dryrunning`; bounded
  shapes, only a 422 refuses). Not done for WorkflowRuns.
* Refusals are ``kopf.AdmissionError`` with HTTP code 422 (the object is
  invalid); the message lists every problem, one per line.
* **Bodies as large as the API server sends.** aiohttp refuses request
  bodies over 1 MiB by default (HTTP 413, no reason given), and an
  AdmissionReview carries the object twice on UPDATE (``object`` and
  ``oldObject``): labelling a 600 KiB Workflow or suspending a big run
  failed. :class:`WebhookServer` reads bodies up to :data:`MAX_REVIEW_BYTES`,
  twice the API server's own 3 MiB request limit plus room for the review.
* **A refusal is news, not an error of the operator.** kopf logs every
  refused review at ERROR with the whole message (68 ERROR lines for one
  API outage's worth of re-applied manifests); :class:`RefusalLogFilter`
  turns them into one INFO line naming the handler and the first line of
  the reason. Admitted reviews are logged by kopf at DEBUG only.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import kopf
from aiohttp import web

from szal.engine.admitting import Refused, admit, admit_definition
from szal.engine.issues import SpecIssue, prefixed
from szal.engine.validation import run_shape
from szal.runners.kubernetes.client import ApiClient, NotFound, group_path
from szal.runners.kubernetes.dryrunning import PodDryRun, pod_problems
from szal.spec import API_VERSION, GROUP, VERSION, WorkflowRun, WorkflowSpec
from szal.spec.immutability import changed_immutable_fields, immutable_message

logger = logging.getLogger(__name__)

WORKFLOW_HANDLER_ID: Final = "validate-workflow"
WORKFLOW_RUN_HANDLER_ID: Final = "validate-workflowrun"
WORKFLOW_SCHEDULE_HANDLER_ID: Final = "validate-workflowschedule"
MANAGED_NAME: Final = "auto.szal.dev"
"""Name of the Validating/MutatingWebhookConfiguration kopf manages."""
DEFAULT_PORT: Final = 9443

JsonDict = dict[str, Any]
WorkflowFetcher = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]
"""``fetch_workflow(namespace, name)``: the Workflow object, or None if it does not exist."""


class AdmissionRefused(Exception):
    """The problems that make an object inadmissible (a pure-function result)."""

    def __init__(self, kind: str, name: str, problems: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.problems = problems
        super().__init__(self.message)

    @property
    def message(self) -> str:
        count = len(self.problems)
        head = f"{self.kind} {self.name!r} is invalid ({count} problem{'s' if count != 1 else ''})"
        return head + ":\n" + "\n".join(f"- {p}" for p in self.problems)


def _plain(body: Mapping[str, Any]) -> JsonDict:
    """A deep, plain-dict copy of a kopf Body (pydantic wants real dicts)."""
    return copy.deepcopy({key: body[key] for key in body})


def _name(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return str(meta.get("name") or meta.get("generateName") or "")


def _problems(issues: Iterable[SpecIssue]) -> list[str]:
    return [_describe(issue) for issue in issues]


def _describe(issue: SpecIssue) -> str:
    text = str(issue)
    return text if issue.step is not None or not issue.path else f"{issue.path}: {issue.message}"


def check_workflow(doc: Mapping[str, Any]) -> WorkflowSpec:
    """The spec (migrated); :class:`AdmissionRefused` unless ``doc`` is a valid Workflow."""
    data = _plain(doc)
    definition = admit_definition(data)
    if isinstance(definition, Refused):
        raise AdmissionRefused("Workflow", _name(data), _problems(definition.issues))
    return definition.spec


def check_workflow_schedule(doc: Mapping[str, Any]) -> None:
    """Raise :class:`AdmissionRefused` unless ``doc`` is a valid WorkflowSchedule.

    The shape (the CRD schema checks it too) and, what no schema can, the
    cron expression and the time zone, with the words the operator would
    use (:func:`szal.engine.scheduling.check`). The Workflow it names is
    not looked up: a schedule may be created before its Workflow, and the
    operator reports a missing one on each run it starts.
    """
    from pydantic import ValidationError

    from szal.engine.scheduling import ScheduleInvalid, check
    from szal.spec.schedules import WorkflowScheduleSpec

    data = _plain(doc)
    try:
        spec = WorkflowScheduleSpec.model_validate(data.get("spec") or {})
    except ValidationError as error:
        problems = [
            ".".join(["spec", *(str(part) for part in item["loc"])]) + f": {item['msg']}"
            for item in error.errors()
        ]
        raise AdmissionRefused("WorkflowSchedule", _name(data), problems) from None
    try:
        check(spec)
    except ScheduleInvalid as error:
        raise AdmissionRefused("WorkflowSchedule", _name(data), [str(error)]) from None


async def check_workflow_run(
    doc: Mapping[str, Any],
    *,
    namespace: str,
    fetch_workflow: WorkflowFetcher | None,
) -> None:
    """Raise :class:`AdmissionRefused` unless ``doc`` is a runnable WorkflowRun.

    Checks the run itself (shape, exactly one of ``workflowRef`` and
    ``workflow``) and admits it as the operator would start it
    (:func:`szal.engine.admitting.admit`): its inline workflow, or, given a
    fetcher, the Workflow ``workflowRef`` names, with the run's params.
    """
    data = _plain(doc)
    name = _name(data)
    run, inline, shape_issues = run_shape(data)
    problems = _problems(shape_issues)
    if inline is not None:
        outcome = admit(inline, run.spec.params) if run else admit_definition(inline)
        if isinstance(outcome, Refused):
            problems.extend(_problems(_inline(issue) for issue in outcome.issues))
    if run is not None and inline is None and fetch_workflow is not None:
        problems.extend(await _referenced_problems(run, namespace, fetch_workflow))
    if problems:
        raise AdmissionRefused("WorkflowRun", name, problems)


async def _referenced_problems(
    run: WorkflowRun, namespace: str, fetch_workflow: WorkflowFetcher
) -> list[str]:
    """What keeps ``run`` of the Workflow its ``workflowRef`` names from starting."""
    ref = run.spec.workflow_ref
    if ref is None:
        return []
    try:
        target = await fetch_workflow(namespace, ref.name)
    except Exception as error:  # any lookup failure: admit, the reconciler decides
        logger.warning("workflowRef %s/%s not checked: %s", namespace, ref.name, error)
        return []
    if target is None:
        return [
            f"spec.workflowRef.name: Workflow {ref.name!r} not found in namespace {namespace!r}"
        ]
    definition = admit_definition(_plain(target))
    if isinstance(definition, Refused):
        return [f"spec.workflowRef.name: Workflow {ref.name!r} is invalid: {definition}"]
    admitted = admit(definition, run.spec.params)
    if isinstance(admitted, Refused):
        return [f"spec.{issue.field}: {issue.message}" for issue in admitted.issues]
    return []


def check_run_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Raise :class:`AdmissionRefused` when an UPDATE changes more than the run's controls."""
    changed = changed_immutable_fields(old.get("spec") or {}, new.get("spec") or {})
    if changed:
        raise AdmissionRefused("WorkflowRun", _name(new), [immutable_message(f) for f in changed])


def _inline(issue: SpecIssue) -> SpecIssue:
    """An issue of the inline workflow, located in the run (its params stay the run's)."""
    return issue if issue.path.startswith("spec.params") else prefixed(issue, "spec.workflow")


def _spec_unchanged(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], keys: tuple[str, ...] | None = None
) -> bool:
    """Whether an UPDATE keeps ``spec`` (or only its ``keys``) as it was."""
    if old is None:
        return False
    old_spec = old.get("spec") or {}
    new_spec = new.get("spec") or {}
    if keys is None:
        return bool(old_spec == new_spec)
    return all(old_spec.get(key) == new_spec.get(key) for key in keys)


def _refuse(error: AdmissionRefused) -> kopf.AdmissionError:
    return kopf.AdmissionError(error.message, code=422)


class RefusalLogFilter(logging.Filter):
    """Refused reviews as one INFO line instead of kopf's multi-line ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if (
            record.levelno >= logging.ERROR
            and text.startswith("Webhook '")
            and ("failed permanently" in text)
        ):
            if not logger.isEnabledFor(logging.INFO):
                return False
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "admission refused: %s", (text.splitlines()[0],)
            record.exc_info = record.exc_text = None
        return True


def quiet_refusals() -> None:
    """Install :class:`RefusalLogFilter` on kopf's per-object logger (idempotent)."""
    target = logging.getLogger("kopf.objects")
    if not any(isinstance(f, RefusalLogFilter) for f in target.filters):
        target.addFilter(RefusalLogFilter())


def register_admission(
    registry: kopf.OperatorRegistry,
    *,
    fetch_workflow: WorkflowFetcher | None = None,
    dry_run: PodDryRun | None = None,
) -> None:
    """Add the Workflow, WorkflowRun and WorkflowSchedule validating handlers to ``registry``.

    ``fetch_workflow`` resolves ``workflowRef`` (see the module docstring);
    pass ``fetcher_from_client(client)`` from the operator. ``dry_run``
    (``dry_run_from_client(client)``) dry-runs a valid Workflow's step Pods
    (:mod:`szal.runners.kubernetes.dryrunning`).
    """
    quiet_refusals()

    @kopf.on.validate(
        GROUP,
        VERSION,
        "workflows",
        id=WORKFLOW_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )
    async def validate_workflow(body: kopf.Body, namespace: str | None, **kwargs: Any) -> None:
        old: kopf.Body | None = kwargs.get("old")
        if kwargs.get("operation") == "UPDATE" and _spec_unchanged(old, body):
            return
        try:
            spec = check_workflow(body)
            if dry_run is not None:
                problems = await pod_problems(spec, namespace or "default", dry_run)
                if problems:
                    raise AdmissionRefused("Workflow", _name(body), problems)
        except AdmissionRefused as error:
            raise _refuse(error) from None

    @kopf.on.validate(
        GROUP,
        VERSION,
        "workflowruns",
        id=WORKFLOW_RUN_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )
    async def validate_workflow_run(body: kopf.Body, namespace: str | None, **kwargs: Any) -> None:
        old: kopf.Body | None = kwargs.get("old")
        if kwargs.get("operation") == "UPDATE" and old is not None:
            try:
                check_run_update(old, body)
            except AdmissionRefused as error:
                raise _refuse(error) from None
            return  # only controls changed: nothing else to check
        try:
            await check_workflow_run(
                body, namespace=namespace or "default", fetch_workflow=fetch_workflow
            )
        except AdmissionRefused as error:
            raise _refuse(error) from None

    @kopf.on.validate(
        GROUP,
        VERSION,
        "workflowschedules",
        id=WORKFLOW_SCHEDULE_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )
    def validate_workflow_schedule(body: kopf.Body, **kwargs: Any) -> None:
        old: kopf.Body | None = kwargs.get("old")
        if kwargs.get("operation") == "UPDATE" and _spec_unchanged(old, body):
            return
        try:
            check_workflow_schedule(body)
        except AdmissionRefused as error:
            raise _refuse(error) from None

    # Registered; nothing else refers to them.
    del validate_workflow, validate_workflow_run, validate_workflow_schedule


def fetcher_from_client(client: ApiClient) -> WorkflowFetcher:
    """A ``fetch_workflow`` that GETs the Workflow with the operator's API client."""

    async def fetch(namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            return await client.get(group_path(API_VERSION, namespace, "workflows", name))
        except NotFound:
            return None

    return fetch


MAX_REVIEW_BYTES: Final = 8 * 1024 * 1024
"""Largest AdmissionReview body read: an object and its old version at the API server's limit."""


class WebhookServer(kopf.WebhookServer):
    """kopf's webhook server, reading review bodies up to :data:`MAX_REVIEW_BYTES`."""

    @staticmethod
    async def _serve(fn: Any, request: web.Request) -> web.Response:
        larger = request.clone(client_max_size=MAX_REVIEW_BYTES)
        return await kopf.WebhookServer._serve(fn, larger)


def configure_admission(
    settings: kopf.OperatorSettings,
    *,
    certfile: str,
    pkeyfile: str,
    port: int = DEFAULT_PORT,
    addr: str = "127.0.0.1",
    host: str | None = None,
    managed: str | None = MANAGED_NAME,
    file_check_interval: float = 60.0,
) -> None:
    """Serve the webhooks over TLS on ``addr:port`` and let kopf manage their configurations.

    ``host`` is the name or address the API server uses to reach the
    webhook (default ``addr``); it must be in the certificate's SANs.
    ``managed=None`` leaves the webhook configurations to the installer
    (in-cluster mode: docs/operator.md). kopf polls the certificate files
    every ``file_check_interval`` seconds and restarts its server when they
    changed (a rotation, cert-manager's renewal).
    """
    settings.admission.server = WebhookServer(
        addr=addr,
        port=port,
        host=host or addr,
        certfile=certfile,
        pkeyfile=pkeyfile,
        file_check_interval=file_check_interval,
    )
    settings.admission.managed = managed
