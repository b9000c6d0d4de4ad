"""Pods as the planner sees them: a compact view, then an Observation.

The operator's pod index (kopf ``@kopf.index``) stores a :class:`PodView`
per pod, never the whole body: bodies carry managedFields and grow with
every status update, and a run of thousands of steps keeps thousands of
pods in memory. :func:`pod_view` is the indexer's whole work;
:func:`observe` turns a view into the engine's idempotent
:class:`~szal.engine.actions.Observation`. Both are pure (``now`` is passed
in), so they are unit-tested without a cluster.

Decisions:

* The attempt's outcome is the pod's phase, also for ``launcher: Job``
  steps: their Job runs one pod with ``backoffLimit: 0``, so the pod
  failing *is* the Job failing, and reading the pod saves waiting for the
  Job controller to notice (a round trip through the API server).
* Outputs are the termination message when it is a JSON object of at most
  4 KiB (what a kubelet keeps). Outputs over that limit (whole, from kwok,
  or cut to their last 4096 bytes by a real kubelet) fail a step that exited 0, with a
  message saying so, as the local runner does. Anything else in the termination message
  (plain text, a JSON list, too long) becomes the step's message, so a
  failing step can explain itself by writing to ``/dev/termination-log``.
* An unschedulable pod is a ``Pending`` observation whose message is the
  scheduler's reason (the PodScheduled condition), so the step's status
  says why it does not start (for example "0/5 nodes are available: ...").
  Image pull and container config errors are reported the same way.
* ``at`` is ``now`` (milliseconds, the operator's clock) unless the pod
  finished well before ``now`` - the operator was down or catching up -
  in which case the pod's own (second-resolution) finish time is used, so
  a restart does not move finish times (or rollback order) forward.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from szal.engine.actions import AttemptRef, Observation, ObservedState
from szal.engine.timestamps import parse_timestamp

LABEL_RUN = "szal.dev/run"
LABEL_STEP = "szal.dev/step"
LABEL_ATTEMPT = "szal.dev/attempt"
LABEL_ROLLBACK = "szal.dev/rollback"
LABEL_JOB_NAME = "batch.kubernetes.io/job-name"

MAX_OUTPUTS_BYTES = 4096
MAX_MESSAGE_CHARS = 1024
CATCH_UP_SECONDS = 2.0
"""A pod that finished longer ago than this is dated by its own finish time."""

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
_PHASES: frozenset[str] = frozenset(get_args(PodPhase))

# Waiting reasons that mean "this will not start by itself soon".
_STUCK_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True, slots=True)
class PodView:
    """The few fields of a step pod that the operator reads."""

    name: str
    uid: str
    run: str
    step: str
    attempt: int
    rollback: bool
    phase: PodPhase
    deleting: bool = False
    job: str | None = None
    exit_code: int | None = None
    termination_message: str | None = None
    reason: str | None = None
    message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def ref(self) -> AttemptRef:
        return AttemptRef(self.step, self.attempt, self.rollback)

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def _ts(value: Any) -> float | None:
    if not value:
        return None
    try:
        return parse_timestamp(str(value))
    except ValueError:
        return None


def _first_container_state(status: dict[str, Any]) -> dict[str, Any]:
    statuses = status.get("containerStatuses") or []
    if not statuses:
        return {}
    state: dict[str, Any] = statuses[0].get("state") or {}
    return state


def pod_view(body: dict[str, Any]) -> PodView | None:
    """The compact view of a step pod; None for a pod without Szál's labels."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    run = labels.get(LABEL_RUN)
    step = labels.get(LABEL_STEP)
    attempt_text = labels.get(LABEL_ATTEMPT)
    if not run or not step or not attempt_text:
        return None
    try:
        attempt = int(attempt_text)
    except ValueError:
        return None
    status = body.get("status") or {}
    raw_phase = status.get("phase") or "Pending"
    phase = cast(PodPhase, raw_phase if raw_phase in _PHASES else "Unknown")
    job = labels.get(LABEL_JOB_NAME) or next(
        (o.get("name") for o in meta.get("ownerReferences") or [] if o.get("kind") == "Job"),
        None,
    )
    state = _first_container_state(status)
    terminated = state.get("terminated") or {}
    waiting = state.get("waiting") or {}
    running = state.get("running") or {}

    reason: str | None = status.get("reason")
    message: str | None = status.get("message")
    if phase == "Pending":
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"
            ):
                reason, message = "Unschedulable", cond.get("message") or "Unschedulable"
        if reason is None and waiting.get("reason") in _STUCK_WAITING:
            reason = str(waiting["reason"])
            message = waiting.get("message") or reason
    if terminated and terminated.get("reason") and phase == "Failed" and reason is None:
        reason = str(terminated["reason"])
    exit_code = terminated.get("exitCode")
    return PodView(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        run=str(run),
        step=str(step),
        attempt=attempt,
        rollback=str(labels.get(LABEL_ROLLBACK, "")).lower() == "true",
        phase=phase,
        deleting=bool(meta.get("deletionTimestamp")),
        job=job,
        exit_code=int(exit_code) if exit_code is not None else None,
        termination_message=terminated.get("message"),
        reason=reason,
        message=message,
        started_at=_ts(terminated.get("startedAt") or running.get("startedAt")),
        finished_at=_ts(terminated.get("finishedAt")),
    )


def parse_outputs(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """``(outputs, message)`` from a termination message (see the module notes)."""
    if text is None or not text.strip():
        return None, None
    if len(text.encode()) <= MAX_OUTPUTS_BYTES:
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value, None
        if value is not None:
            return None, "termination message is JSON but not an object; outputs ignored"
    else:
        return None, f"outputs larger than {MAX_OUTPUTS_BYTES} bytes ignored"
    if len(text.encode()) >= MAX_OUTPUTS_BYTES:
        # A real kubelet keeps only the last 4096 bytes of the termination
        # message (measured on the real test node), so over-long outputs
        # arrive cut to exactly that size, as JSON that does not parse.
        return None, OUTPUTS_CUT
    return None, text.strip()[:MAX_MESSAGE_CHARS]


OUTPUTS_CUT = (
    f"outputs over the {MAX_OUTPUTS_BYTES}-byte limit: the kubelet cut the termination message"
    f" to its last {MAX_OUTPUTS_BYTES} bytes; write less to $SZAL_OUTPUTS"
)
_OUTPUTS_LOST = ("outputs larger than", OUTPUTS_CUT)


def observe(view: PodView, now: float) -> Observation | None:
    """What the planner should learn from this pod now (None: nothing yet).

    An ``Unknown`` pod (its node stopped reporting) is not an observation:
    it may still finish, and deleting it is Kubernetes' decision.
    """
    state: ObservedState
    exit_code: int | None = None
    outputs: dict[str, Any] | None = None
    message: str | None = None
    at = now
    if view.phase == "Succeeded" or view.phase == "Failed":
        state = view.phase
        exit_code = view.exit_code
        outputs, message = parse_outputs(view.termination_message)
        if state == "Succeeded" and message is not None and message.startswith(_OUTPUTS_LOST):
            # As in local mode: a step that cannot hand over its outputs did
            # not do its job, and says why instead of losing them silently.
            state = "Failed"
        if view.phase == "Failed" and message is None:
            # A plain non-zero exit is described by the planner ("failed with
            # exit code N", as in local mode); Kubernetes' own reasons are added.
            if view.reason and view.reason not in ("Error", "Completed"):
                message = ": ".join(x for x in (view.reason, view.message) if x)
                if view.exit_code is not None:
                    message = f"failed with exit code {view.exit_code} ({message})"
            elif view.exit_code is None:
                message = ": ".join(x for x in (view.reason, view.message) if x) or "pod failed"
        if view.finished_at is not None and view.finished_at < now - CATCH_UP_SECONDS:
            at = view.finished_at
    elif view.phase == "Running":
        state = "Running"
        if view.started_at is not None and view.started_at < now - CATCH_UP_SECONDS:
            at = view.started_at
    elif view.phase == "Pending":
        state = "Pending"
        if view.message:
            message = view.message[:MAX_MESSAGE_CHARS]
    else:
        return None
    return Observation(
        ref=view.ref, state=state, at=at, exit_code=exit_code, outputs=outputs, message=message
    )


def vanished(ref: AttemptRef, name: str, now: float) -> Observation:
    """A pod that disappeared before finishing (deleted by someone else, evicted)."""
    return Observation(
        ref=ref, state="Failed", at=now, message=f"pod {name} was deleted before it finished"
    )
