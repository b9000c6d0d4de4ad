"""Applying a plan: create the Pods/Jobs it launches, delete the ones it stops.

The reconciler hands each pass's :class:`~szal.engine.actions.Plan` to its
run's :class:`PlanApplier`. Launches and stops go out concurrently, at most
``launch_concurrency`` in flight per run. What the API server answers is
classified here (:func:`classify_create_error`) and turned into what the
planner understands, observations, so the reconciler never reads an API
error:

* **AlreadyExists** on create: names are deterministic
  (:func:`~szal.runners.kubernetes.pods.attempt_name`), so the attempt was
  created before (a restart, a repeated pass): done.
* **A quota refusal** (403 "exceeded quota"): retried after
  ``quota_retry_delay``; meanwhile a Pending observation carries the API's
  message, so the step's status says why it does not start.
* **Transient** (connection errors, 429, 5xx, after the client's own
  retries): retried on the next pass, silently.
* **Anything else** (RBAC, validation): the attempt fails with the API's
  message, and the step's retry policy applies.
* **NotFound** on create (the namespace is gone) propagates: the reconciler
  takes the run for gone. NotFound on delete means done.

**Stopping keeps the evidence** (issue 12): a timed-out or cancelled
attempt's Pod is not deleted. Its ``spec.activeDeadlineSeconds`` is lowered
to 1 (Kubernetes lets a pod's deadline be set or lowered after creation), so
the kubelet kills its containers (SIGTERM, then SIGKILL after the grace
period) and marks it Failed with reason ``DeadlineExceeded``, while the Pod,
its logs and its final state stay until the run is deleted (the Pods are
owned by it) and ``status.steps.*.podName`` names a pod that exists. A Pod
that never started on a node (no ``status.startTime``: unscheduled) holds no
evidence and would never reach a kubelet, so it is deleted. Jobs are
deleted as before: the Job controller deletes its pods on a deadline anyway.
``activeDeadlineSeconds`` is refused in a step's ``pod:`` options, so the
operator's own value is the only one (the test cluster's kwok stages treat
it as already passed).

Stopped attempts are remembered (:meth:`PlanApplier.stopped_by_us`), so the
pod's DELETED or Failed event that follows is not taken for news.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from szal.engine.actions import AttemptRef, Launch, Observation, Plan, Stop
from szal.engine.compiled import CompiledWorkflow
from szal.engine.environment import step_environment
from szal.engine.state import RunState
from szal.engine.workflow import ResolvedWorkflow
from szal.runners.kubernetes import pods as manifests
from szal.runners.kubernetes.client import (
    AlreadyExists,
    ApiClient,
    ApiError,
    Forbidden,
    Invalid,
    NotFound,
    core_path,
    group_path,
)
from szal.runners.kubernetes.events import RunRef
from szal.runners.kubernetes.ratelimiting import TokenBucket
from szal.runners.kubernetes.runtime import ReconcilerSettings

logger = logging.getLogger(__name__)

JOBS_API = "batch/v1"
STOP_DEADLINE_SECONDS = 1
"""``activeDeadlineSeconds`` a stopped Pod gets: past for any pod that has started."""


class CreateRefusal(Enum):
    """What a refused Pod/Job creation means for its attempt."""

    QUOTA = "quota"
    """A quota is full: retry later; the step shows Pending with the API's message."""
    TRANSIENT = "transient"
    """The API server was away or overloaded: retry later."""
    PERMANENT = "permanent"
    """Retrying cannot help: the attempt fails with the API's message."""


def classify_create_error(error: ApiError) -> CreateRefusal:
    """The meaning of a create error other than AlreadyExists and NotFound."""
    if isinstance(error, Forbidden) and (
        "exceeded quota" in error.message or "forbidden: exceeded" in error.message
    ):
        return CreateRefusal.QUOTA
    if error.status in (0, 429) or error.status >= 500:
        return CreateRefusal.TRANSIENT
    return CreateRefusal.PERMANENT


def attempt_path(namespace: str, plural: str, name: str | None = None) -> str:
    """The API path of a Pod (``plural`` "pods") or Job ("jobs"), or of their collection."""
    if plural == "jobs":
        return group_path(JOBS_API, namespace, plural, name)
    return core_path(namespace, plural, name)


def per_attempt_annotations(metadata: dict[str, Any], ref: AttemptRef) -> None:
    """Apply ``szal.dev/<key>-attempt-<n>`` and ``szal.dev/<key>-rollback`` annotations.

    Annotations are copied from the step's ``pod.metadata`` onto every
    attempt alike; a per-attempt override lets one attempt differ - the
    test cluster's kwok stages read ``szal.dev/sim-exit-code`` and friends,
    so ``szal.dev/sim-exit-code-attempt-1: "1"`` makes only the first attempt
    fail ("retry then succeed"), ``szal.dev/sim-exit-code-rollback`` only the
    compensation. Only keys under ``szal.dev/`` are rewritten; the suffixed
    keys stay on the pod as given.
    """
    annotations = metadata.get("annotations")
    if not annotations:
        return
    suffix = "-rollback" if ref.rollback else f"-attempt-{ref.attempt}"
    for key, value in list(annotations.items()):
        if key.startswith("szal.dev/") and key.endswith(suffix):
            annotations[key[: -len(suffix)]] = value


class PlanApplier:
    """One run's creates and deletes; outlives the reconciler's resets."""

    def __init__(
        self,
        client: ApiClient,
        settings: ReconcilerSettings,
        clock: Callable[[], float],
        ref: RunRef,
        limiter: TokenBucket | None = None,
        *,
        on_write_error: Callable[[ApiError, str], None] | None = None,
    ) -> None:
        """``limiter``: the operator's pod creation bucket (one for every run)."""
        self.limiter = limiter
        self.client = client
        self.on_write_error = on_write_error
        """Told every transient create error (the cluster's health, health.py)."""
        self.settings = settings
        self.clock = clock
        self.ref = ref
        self._launchers: dict[str, str] = {}
        self._observations: list[Observation] = []
        self._retries: dict[AttemptRef, Launch] = {}
        self._stopped: set[AttemptRef] = set()

    # --- what the reconciler reads --------------------------------------------

    def attach(self, workflow: ResolvedWorkflow) -> None:
        """Use ``workflow``'s launchers (at each restore)."""
        self._launchers = {s.name: s.launcher for s in workflow.steps}

    def launcher_of(self, step: str) -> str:
        """``Pod`` or ``Job``: what runs the step's attempts."""
        return self._launchers.get(step, "Pod")

    def stopped_by_us(self, ref: AttemptRef) -> bool:
        """Did we delete this attempt's pod (so its disappearance is no news)?"""
        return ref in self._stopped

    @property
    def retrying(self) -> bool:
        """Are launches waiting to be retried (a quota, a transient error)?"""
        return bool(self._retries)

    @property
    def has_observations(self) -> bool:
        return bool(self._observations)

    def take_observations(self) -> list[Observation]:
        """What launching found out (refusals) since the last call, for the planner."""
        out = self._observations
        self._observations = []
        return out

    def forget_observations(self) -> None:
        """Drop what was not yet taken (the reconciler re-plans from scratch)."""
        self._observations.clear()

    # --- applying -------------------------------------------------------------

    async def apply(self, plan: Plan, workflow: CompiledWorkflow, state: RunState) -> None:
        """Create what ``plan`` launches (and retry earlier refusals), delete what it stops."""
        launches = [a for a in plan.actions if isinstance(a, Launch)]
        stops = [a for a in plan.actions if isinstance(a, Stop)]
        retries = list(self._retries.values())
        self._retries.clear()
        sem = asyncio.Semaphore(self.settings.launch_concurrency)

        async def guarded(call: Awaitable[None]) -> None:
            async with sem:
                await call

        await asyncio.gather(
            *(guarded(self._launch(a, workflow, state)) for a in [*retries, *launches]),
            *(guarded(self._stop(a)) for a in stops),
        )

    def _plural(self, ref: AttemptRef) -> str:
        """Compensations always run as Pods; attempts as their step's launcher says."""
        if ref.rollback:
            return "pods"
        return "jobs" if self.launcher_of(ref.step) == "Job" else "pods"

    def _manifest(
        self, launch: Launch, workflow: CompiledWorkflow, state: RunState
    ) -> tuple[str, str, dict[str, Any]]:
        """(resource plural, object name, manifest) for an attempt."""
        ref = launch.ref
        env = step_environment(
            workflow,
            state,
            ref.step,
            ref.attempt,
            run_name=self.ref.name,
            namespace=self.ref.namespace,
            rollback=ref.rollback,
        )
        run: manifests.RunMeta = {
            "name": self.ref.name,
            "namespace": self.ref.namespace,
            "uid": self.ref.uid,
        }
        plural = self._plural(ref)
        build = manifests.build_job if plural == "jobs" else manifests.build_pod
        manifest = build(run, launch.step, launch.command, ref, env, self.settings.default_image)
        if plural == "jobs":
            template_meta = manifest["spec"]["template"]["metadata"]
            per_attempt_annotations(template_meta, ref)
        else:
            per_attempt_annotations(manifest["metadata"], ref)
        name = str(manifest["metadata"]["name"])
        if not ref.rollback:
            state.steps[ref.step].pod_name = name
        return plural, name, manifest

    async def _launch(self, launch: Launch, workflow: CompiledWorkflow, state: RunState) -> None:
        plural, name, manifest = self._manifest(launch, workflow, state)
        if self.limiter is not None:
            await self.limiter.acquire()
        try:
            await self.client.create(
                attempt_path(self.ref.namespace, plural), manifest, resource=plural
            )
        except AlreadyExists:
            return  # created before: done
        except NotFound:
            raise  # the namespace is gone: so is the run
        except ApiError as error:
            refusal = classify_create_error(error)
            if refusal is CreateRefusal.PERMANENT:
                self._launch_failed(launch, f"cannot create {plural[:-1]} {name}: {error}")
                return
            self._retries[launch.ref] = launch
            if refusal is CreateRefusal.TRANSIENT and self.on_write_error is not None:
                self.on_write_error(error, f"creating {plural[:-1]} {name}")
            if refusal is CreateRefusal.QUOTA:
                self._observations.append(
                    Observation(launch.ref, "Pending", self.clock(), message=error.message)
                )

    def _launch_failed(self, launch: Launch, message: str) -> None:
        logger.warning("run %s/%s: %s", self.ref.namespace, self.ref.name, message)
        self._observations.append(
            Observation(launch.ref, "Failed", self.clock(), message=message[:1024])
        )

    async def _stop(self, stop: Stop) -> None:
        self._stopped.add(stop.ref)
        self._retries.pop(stop.ref, None)
        plural = self._plural(stop.ref)
        name = manifests.attempt_name(
            self.ref.name, stop.ref.step, stop.ref.attempt, rollback=stop.ref.rollback
        )
        if plural == "pods" and await self._stop_in_place(
            attempt_path(self.ref.namespace, plural, name)
        ):
            return
        with contextlib.suppress(NotFound):
            await self.client.delete(
                attempt_path(self.ref.namespace, plural, name),
                resource=plural,
                propagation="Background",
            )

    async def _stop_in_place(self, path: str) -> bool:
        """Lower the Pod's deadline so the kubelet stops it; False when it must be deleted."""
        try:
            pod = await self.client.merge_patch(
                path, {"spec": {"activeDeadlineSeconds": STOP_DEADLINE_SECONDS}}, resource="pods"
            )
        except NotFound:
            return True  # gone already: nothing to stop
        except Forbidden as exc:
            # RBAC from before stopping in place (no pods/patch): delete as then.
            logger.warning("cannot patch %s to stop it in place, deleting it: %s", path, exc)
            return False
        except Invalid as exc:
            # A deadline already lower, or a pod the API server will not
            # update any more (terminal): it is stopped or about to be.
            logger.debug("stopping %s in place: %s", path, exc)
            return True
        return bool((pod.get("status") or {}).get("startTime"))
