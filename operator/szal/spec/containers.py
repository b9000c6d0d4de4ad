"""A step's container surface and extra pod fields, with Kubernetes' names and meaning.

:mod:`szal.spec.models` uses these for ``env[].valueFrom``, ``envFrom``,
``volumeMounts``, ``resources.requests``/``limits`` and the ``pod:`` fields
``volumes``, ``imagePullSecrets``, ``initContainers``, ``hostAliases``,
``dnsPolicy``, ``dnsConfig``, ``runtimeClassName`` and
``terminationGracePeriodSeconds``.

Decisions:

* **Two validators, one truth.** The CRD schema of these fields is
  Kubernetes' own (``kubernetes-schemas.yaml``, spliced in by
  :mod:`szal.spec.crd`), so the API server refuses a typo exactly as it
  would in a Pod. The models here are typed as far as the engine and the
  local runner read them (env sources, mounts, quantities); what only the
  Pod needs (``volumes``, ``initContainers``, ``dnsConfig``) is carried as a
  mapping and checked by the schema and by the admission webhook's
  server-side dry-run of the step's Pod.
* **``activeDeadlineSeconds`` is refused**, with a message naming
  ``timeout``: Szál enforces step timeouts itself (phase TimedOut, retried
  by the retry policy); a Pod deadline would fail the pod behind the
  engine's back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

ACTIVE_DEADLINE_REFUSAL = (
    "pod.activeDeadlineSeconds is not supported: Szál enforces timeouts itself;"
    " set the step's timeout (per attempt) or the workflow's timeout"
)

DnsPolicy = Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]


class KubernetesModel(BaseModel):
    """Wire names in camelCase, unknown fields refused, frozen (as every spec model)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class KeySelector(KubernetesModel):
    """One key of a Secret or ConfigMap (``secretKeyRef``, ``configMapKeyRef``)."""

    name: Annotated[str, Field(min_length=1)]
    key: Annotated[str, Field(min_length=1)]
    optional: bool | None = None


class ObjectFieldSelector(KubernetesModel):
    """A field of the Pod (``fieldRef``: ``metadata.name``, ``status.podIP``...)."""

    field_path: Annotated[str, Field(min_length=1)]
    api_version: str | None = None


class ResourceFieldSelector(KubernetesModel):
    """A container's request or limit (``resourceFieldRef``: ``limits.cpu``...)."""

    resource: Annotated[str, Field(min_length=1)]
    container_name: str | None = None
    divisor: str | int | None = None


class EnvVarSource(KubernetesModel):
    """Where an env var's value comes from: exactly one source."""

    secret_key_ref: KeySelector | None = None
    config_map_key_ref: KeySelector | None = None
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        count = sum(
            value is not None
            for value in (
                self.secret_key_ref,
                self.config_map_key_ref,
                self.field_ref,
                self.resource_field_ref,
            )
        )
        if count != 1:
            raise ValueError(
                "set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef"
            )
        return self


class ObjectReference(KubernetesModel):
    """A Secret or ConfigMap by name (``envFrom``), or an image pull Secret."""

    name: Annotated[str, Field(min_length=1)]
    optional: bool | None = None


class EnvFromSource(KubernetesModel):
    """Every key of a ConfigMap or Secret as env vars, optionally prefixed."""

    prefix: str | None = None
    config_map_ref: ObjectReference | None = None
    secret_ref: ObjectReference | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError("set exactly one of configMapRef or secretRef")
        return self


class VolumeMount(KubernetesModel):
    """A volume of the Pod (``pod.volumes``) mounted into the step's container."""

    name: Annotated[str, Field(min_length=1)]
    mount_path: Annotated[str, Field(min_length=1)]
    read_only: bool | None = None
    sub_path: str | None = None
    sub_path_expr: str | None = None
    mount_propagation: str | None = None
    recursive_read_only: str | None = None


class LocalObjectReference(KubernetesModel):
    """An object in the run's namespace, by name (``imagePullSecrets``)."""

    name: Annotated[str, Field(min_length=1)]


class HostAlias(KubernetesModel):
    """An ``/etc/hosts`` entry of the Pod."""

    ip: Annotated[str, Field(min_length=1)]
    hostnames: list[str] | None = None


def _named(kind: str, values: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    for index, value in enumerate(values or ()):
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{kind}[{index}]: name is required")
    return values


class PodFields(KubernetesModel):
    """The pod-level fields of this module, mixed into ``PodOptions``."""

    volumes: list[dict[str, Any]] | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None
    init_containers: list[dict[str, Any]] | None = None
    host_aliases: list[HostAlias] | None = None
    dns_policy: DnsPolicy | None = None
    dns_config: dict[str, Any] | None = None
    runtime_class_name: str | None = None
    termination_grace_period_seconds: Annotated[int, Field(ge=0)] | None = None
    active_deadline_seconds: int | None = Field(
        default=None, description="Refused: Szál enforces timeouts itself (use timeout)."
    )

    @field_validator("volumes")
    @classmethod
    def _volume_names(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        return _named("volumes", value)

    @field_validator("init_containers")
    @classmethod
    def _container_names(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        return _named("initContainers", value)

    @field_validator("active_deadline_seconds")
    @classmethod
    def _refuse_deadline(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError(ACTIVE_DEADLINE_REFUSAL)
        return value


__all__ = [
    "ACTIVE_DEADLINE_REFUSAL",
    "DnsPolicy",
    "EnvFromSource",
    "EnvVarSource",
    "HostAlias",
    "KeySelector",
    "KubernetesModel",
    "LocalObjectReference",
    "ObjectFieldSelector",
    "ObjectReference",
    "PodFields",
    "ResourceFieldSelector",
    "VolumeMount",
]
