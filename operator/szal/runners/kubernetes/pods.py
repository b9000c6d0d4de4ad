"""Pod and Job manifests for step attempts: pure functions, no API calls.

The operator calls :func:`build_pod` (or :func:`build_job` for
``launcher: Job``) for every :class:`~szal.engine.actions.Launch` and POSTs
the result; a repeated POST after a restart hits AlreadyExists because
:func:`attempt_name` is deterministic. Everything a Pod needs to be found
again is in it: labels ``szal.dev/run``, ``szal.dev/step``,
``szal.dev/attempt`` (and ``szal.dev/rollback: "true"`` for compensations),
and an ownerReference to the run, so Kubernetes garbage-collects the pods
with their run.

Decisions:

* **Names.** ``<run>-<step>-<attempt>-<hash>`` (``rb<attempt>`` for a
  compensation). The hash (6 base32 characters of a sha256 over the run,
  step, attempt and kind) is always there: without it, run ``deploy`` step
  ``db-migrate`` and run ``deploy-db`` step ``migrate`` would both name
  their first pod ``deploy-db-migrate-1`` in the same namespace, and the
  second run would take the first one's pod for its own. When the name
  would pass 63 characters (so it stays a DNS-1123 label, which a Job's
  pods and a pod's hostname need), run and step are cut, the hash still
  keeps names apart. Dots in run names become dashes.
* **Label values** are capped at 63 characters the same way
  (:func:`label_value`): a run may be named with up to 253.
* **Outputs.** ``SZAL_OUTPUTS=/dev/termination-log`` and
  ``terminationMessagePolicy: File``: the step writes its JSON there and the
  kubelet copies it (4 KiB) into the pod status, where the operator reads it
  (DESIGN.md section 4). The default path is stated explicitly so the
  contract is visible in the manifest.
* **Context.** A ``SZAL_CONTEXT`` longer than 32 KiB
  (:data:`~szal.engine.environment.CONTEXT_ENV_LIMIT`) does not go into the
  env (a Pod whose variables pass Linux's 128 KiB per variable cannot
  start, and every byte of the env is stored in etcd with each pod
  version): it goes into the annotation ``szal.dev/context``, which a
  ``downwardAPI`` volume projects read-only at
  ``/var/run/szal/context/context.json``, named by ``SZAL_CONTEXT_FILE``.
  An annotation rather than a ConfigMap: no extra object to write, own and
  clean up, and no extra RBAC. Annotations are limited to 256 KiB together;
  a context past that is refused by the API server and the attempt fails
  with its message.
* **Commands** keep Kubernetes semantics: ``command`` replaces the image's
  entrypoint, ``args`` alone only its arguments, ``script`` runs as
  ``sh -c <script>``. Params never reach the command text, only the env.
* **Resources.** ``cpu`` and ``memory`` are set as requests and limits
  alike; GPUs as an ``nvidia.com/gpu`` limit (extended resources need no
  request), a ``nvidia.com/gpu.product`` nodeSelector when a product is
  named, and a toleration of the ``nvidia.com/gpu`` NoSchedule taint.
* **Resources.** ``requests`` and ``limits`` (any resource name) are
  copied as written, next to the short form (the spec refuses a resource set
  in both forms).
* **Container fields** with Kubernetes' names: ``workingDir``,
  ``volumeMounts``, ``envFrom``, and ``env`` entries with ``valueFrom``
  (after the plain values; Szál's own variables win over a user's
  ``valueFrom`` of the same name, as they win over plain values).
* **Pod options** (``pod:`` of the step, already merged with the template's
  by the engine) are copied on: labels, annotations (``szal.dev/sim-*``
  annotations read by the test cluster's kwok stages pass through like any
  other), serviceAccountName, nodeSelector, tolerations, affinity,
  priorityClassName, the pod securityContext, volumes, imagePullSecrets,
  initContainers (native sidecars included), hostAliases, dnsPolicy,
  dnsConfig, runtimeClassName and terminationGracePeriodSeconds. Szál's own
  labels and the GPU constraints win over the user's on a clash.
* **Jobs** get ``backoffLimit: 0``: retries are the engine's, one attempt is
  one Job. The Job and its pod template carry the same labels, so pods of
  either launcher are found by the same label selector.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final, TypedDict

from szal.engine.actions import AttemptRef
from szal.engine.environment import deliver_context
from szal.engine.workflow import Command, ResolvedStep
from szal.spec import API_VERSION

Manifest = dict[str, Any]

LABEL_RUN: Final = "szal.dev/run"
LABEL_STEP: Final = "szal.dev/step"
LABEL_ATTEMPT: Final = "szal.dev/attempt"
LABEL_ROLLBACK: Final = "szal.dev/rollback"

CONTAINER_NAME: Final = "step"
TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
CONTEXT_ANNOTATION: Final = "szal.dev/context"
CONTEXT_VOLUME: Final = "szal-context"
CONTEXT_DIR: Final = "/var/run/szal/context"
CONTEXT_FILE: Final = "context.json"
GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
GPU_TOLERATION: Final = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

MAX_NAME: Final = 63
_HASH_LEN: Final = 6
_INVALID = re.compile(r"[^a-z0-9-]+")


class RunMeta(TypedDict):
    """The WorkflowRun's identity, from its ``metadata``."""

    name: str
    namespace: str
    uid: str


def _digest(*parts: str) -> str:
    raw = hashlib.sha256("\x00".join(parts).encode()).digest()
    return base64.b32encode(raw).decode().lower()[:_HASH_LEN]


def _clean(part: str) -> str:
    return _INVALID.sub("-", part.lower()).strip("-") or "x"


def attempt_name(run: str, step: str, attempt: int, rollback: bool = False) -> str:
    """The Pod (or Job) name of one attempt: deterministic, a DNS-1123 label.

    ``<run>-<step>-<attempt>-<hash>``, or ``<run>-<step>-rb<attempt>-<hash>``
    for a compensation; run and step are cut to fit 63 characters.
    """
    kind = f"rb{attempt}" if rollback else str(attempt)
    digest = _digest(run, step, kind)
    run_part, step_part = _clean(run), _clean(step)
    fixed = len(kind) + len(digest) + 3  # three dashes
    room = MAX_NAME - fixed
    if len(run_part) + len(step_part) > room:
        # Cut the longer part first; keep at least a few characters of each.
        step_room = max(min(len(step_part), room // 2), room - len(run_part))
        step_part = step_part[:step_room].rstrip("-") or "x"
        run_part = run_part[: room - len(step_part)].rstrip("-") or "x"
    return f"{run_part}-{step_part}-{kind}-{digest}"


def label_value(value: str) -> str:
    """``value`` if it is a valid label value, else a shortened form with a hash."""
    if len(value) <= MAX_NAME:
        return value
    digest = _digest(value)
    return f"{value[: MAX_NAME - _HASH_LEN - 1].rstrip('-._')}-{digest}"


def attempt_labels(run: str, ref: AttemptRef) -> dict[str, str]:
    """The labels that identify an attempt's Pod or Job (and select it)."""
    labels = {
        LABEL_RUN: label_value(run),
        LABEL_STEP: ref.step,
        LABEL_ATTEMPT: str(ref.attempt),
    }
    if ref.rollback:
        labels[LABEL_ROLLBACK] = "true"
    return labels


def owner_reference(run: RunMeta) -> dict[str, Any]:
    """The ownerReference that makes the run own (and garbage-collect) a Pod or Job."""
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowRun",
        "name": run["name"],
        "uid": run["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _container(
    step: ResolvedStep, command: Command, env: Mapping[str, str], image_default: str
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": command.image or image_default,
    }
    if command.image_pull_policy is not None:
        container["imagePullPolicy"] = command.image_pull_policy
    if command.script is not None:
        container["command"] = ["sh", "-c", command.script]
    else:
        if command.command is not None:
            container["command"] = list(command.command)
        if command.args is not None:
            container["args"] = list(command.args)
    if command.working_dir is not None:
        container["workingDir"] = command.working_dir
    merged = {**dict(command.env), **env, "SZAL_OUTPUTS": TERMINATION_MESSAGE_PATH}
    sourced = [
        {"name": name, "valueFrom": source.model_dump(by_alias=True, exclude_none=True)}
        for name, source in command.env_sources
        if name not in merged
    ]
    container["env"] = [{"name": k, "value": v} for k, v in merged.items()] + sourced
    if command.env_from:
        container["envFrom"] = [
            source.model_dump(by_alias=True, exclude_none=True) for source in command.env_from
        ]
    mounts = [mount.model_dump(by_alias=True, exclude_none=True) for mount in command.volume_mounts]
    if "SZAL_CONTEXT_FILE" in env:
        mounts.append({"name": CONTEXT_VOLUME, "mountPath": CONTEXT_DIR, "readOnly": True})
    if mounts:
        container["volumeMounts"] = mounts
    resources = _resources(step)
    if resources:
        container["resources"] = resources
    container["terminationMessagePath"] = TERMINATION_MESSAGE_PATH
    container["terminationMessagePolicy"] = "File"
    return container


def _resources(step: ResolvedStep) -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = {}
    for key, value in (("cpu", step.cpu), ("memory", step.memory)):
        if value is not None:
            resources.setdefault("requests", {})[key] = value
            resources.setdefault("limits", {})[key] = value
    for kind, values in (("requests", step.requests), ("limits", step.limits)):
        for key, value in values:
            resources.setdefault(kind, {})[key] = value
    if step.gpu is not None:
        resources.setdefault("limits", {})[GPU_RESOURCE] = step.gpu.count
    return resources


#: ``pod:`` fields copied onto the PodSpec as written (wire name, attribute).
_COPIED_POD_FIELDS: Final = (
    ("serviceAccountName", "service_account_name"),
    ("priorityClassName", "priority_class_name"),
    ("affinity", "affinity"),
    ("securityContext", "security_context"),
    ("volumes", "volumes"),
    ("initContainers", "init_containers"),
    ("dnsPolicy", "dns_policy"),
    ("dnsConfig", "dns_config"),
    ("runtimeClassName", "runtime_class_name"),
    ("terminationGracePeriodSeconds", "termination_grace_period_seconds"),
)


def _pod_metadata(step: ResolvedStep, labels: Mapping[str, str]) -> dict[str, Any]:
    user = step.pod.metadata if step.pod is not None else None
    metadata: dict[str, Any] = {"labels": {**(user.labels if user else {}), **labels}}
    if user is not None and user.annotations:
        metadata["annotations"] = dict(user.annotations)
    return metadata


def _context_delivery(env: Mapping[str, str], metadata: dict[str, Any]) -> dict[str, str]:
    """``env`` to put in the container; a long context moved into ``metadata``'s annotation."""
    delivered, context = deliver_context(dict(env), f"{CONTEXT_DIR}/{CONTEXT_FILE}")
    if context is not None:
        metadata.setdefault("annotations", {})[CONTEXT_ANNOTATION] = context
    return delivered


def _context_volume() -> dict[str, Any]:
    field = {"fieldPath": f"metadata.annotations['{CONTEXT_ANNOTATION}']"}
    return {
        "name": CONTEXT_VOLUME,
        "downwardAPI": {"items": [{"path": CONTEXT_FILE, "fieldRef": field}]},
    }


def _pod_spec(step: ResolvedStep, container: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    options = step.pod
    node_selector: dict[str, str] = dict(options.node_selector or {}) if options else {}
    tolerations: list[dict[str, Any]] = (
        copy.deepcopy(list(options.tolerations or [])) if options else []
    )
    if step.gpu is not None:
        if step.gpu.product:
            node_selector[GPU_PRODUCT_LABEL] = step.gpu.product
        if GPU_TOLERATION not in tolerations:
            tolerations.append(dict(GPU_TOLERATION))
    if options is not None:
        for wire, attribute in _COPIED_POD_FIELDS:
            value = getattr(options, attribute)
            if value is not None and value != "" and value != {} and value != []:
                spec[wire] = copy.deepcopy(value)
        if options.image_pull_secrets:
            spec["imagePullSecrets"] = [{"name": s.name} for s in options.image_pull_secrets]
        if options.host_aliases:
            spec["hostAliases"] = [
                a.model_dump(by_alias=True, exclude_none=True) for a in options.host_aliases
            ]
    if any(m.get("name") == CONTEXT_VOLUME for m in container.get("volumeMounts", ())):
        spec["volumes"] = [*spec.get("volumes", ()), _context_volume()]
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    return spec


def build_pod(
    run: RunMeta,
    step: ResolvedStep,
    command: Command,
    ref: AttemptRef,
    env: Mapping[str, str],
    image_default: str,
) -> Manifest:
    """The Pod that runs one attempt (or compensation) of ``step``.

    ``command`` is the step's command, or its compensation's for
    ``ref.rollback``; ``env`` is what the operator adds to the command's own
    env (``SZAL_RUN``, ``SZAL_STEP``, params, ``SZAL_CONTEXT``...), and wins
    over it; ``image_default`` is used when neither step nor template names
    an image.
    """
    labels = attempt_labels(run["name"], ref)
    metadata = _pod_metadata(step, labels)
    env = _context_delivery(env, metadata)
    metadata["name"] = attempt_name(run["name"], ref.step, ref.attempt, ref.rollback)
    metadata["namespace"] = run["namespace"]
    metadata["ownerReferences"] = [owner_reference(run)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _ordered_metadata(metadata),
        "spec": _pod_spec(step, _container(step, command, env, image_default)),
    }


def build_job(
    run: RunMeta,
    step: ResolvedStep,
    command: Command,
    ref: AttemptRef,
    env: Mapping[str, str],
    image_default: str,
) -> Manifest:
    """The Job that runs one attempt of ``step`` (``launcher: Job``); see :func:`build_pod`."""
    labels = attempt_labels(run["name"], ref)
    template_metadata = _pod_metadata(step, labels)
    env = _context_delivery(env, template_metadata)
    metadata: dict[str, Any] = {
        "name": attempt_name(run["name"], ref.step, ref.attempt, ref.rollback),
        "namespace": run["namespace"],
        "labels": dict(template_metadata["labels"]),
        "ownerReferences": [owner_reference(run)],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": template_metadata,
                "spec": _pod_spec(step, _container(step, command, env, image_default)),
            },
        },
    }


def _ordered_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    order = ("name", "namespace", "labels", "annotations", "ownerReferences")
    return {key: metadata[key] for key in order if key in metadata}
