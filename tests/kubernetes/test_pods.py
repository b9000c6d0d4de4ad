"""Pod and Job manifests built for step attempts (``szal.runners.kubernetes.pods``).

Covers: attempt names (deterministic, DNS-1123, at most 63 characters,
distinct for distinct attempts even when the plain names would clash),
labels and ownerReference, command/args/script, env with SZAL_OUTPUTS,
resources and GPU scheduling, ``pod:`` options and annotation pass-through,
and the Job wrapper. Two full manifests are compared with golden files in
``golden/`` (regenerate with ``SZAL_UPDATE_GOLDEN=1``).

Not covered: that the API server accepts them and that kwok runs them (the
operator's e2e tests create real Pods and Jobs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from szal.engine.actions import AttemptRef
from szal.engine.workflow import ResolvedStep, resolve_workflow
from szal.runners.kubernetes.pods import (
    LABEL_ROLLBACK,
    RunMeta,
    attempt_name,
    build_job,
    build_pod,
    label_value,
)
from szal.spec import WorkflowSpec

GOLDEN = Path(__file__).parent / "golden"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RUN: RunMeta = {"name": "ci-cd-1", "namespace": "team-a", "uid": "0b7c6f7e-uid"}
ENV = {"SZAL_RUN": "ci-cd-1", "SZAL_STEP": "train", "SZAL_ATTEMPT": "2", "SZAL_PARAM_ENV": "prod"}


def _step(step: dict[str, Any], template: dict[str, Any] | None = None) -> ResolvedStep:
    spec: dict[str, Any] = {"steps": [step]}
    if template is not None:
        spec["template"] = template
    resolved = resolve_workflow(WorkflowSpec.model_validate(spec), name="ci-cd", params={})
    return resolved.by_name[step["name"]]


def _golden(name: str, manifest: dict[str, Any]) -> None:
    path = GOLDEN / name
    text = yaml.safe_dump(manifest, sort_keys=False, width=100)
    if os.environ.get("SZAL_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.is_file(), f"{path} missing: run with SZAL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the golden file"


GPU_STEP: dict[str, Any] = {
    "name": "train",
    "image": "pytorch/pytorch:2.4",
    "command": ["python", "train.py"],
    "args": ["--epochs", "3"],
    "env": [{"name": "BATCH", "value": "64"}, {"name": "SZAL_RUN", "value": "overridden"}],
    "resources": {
        "cpu": "2",
        "memory": "8Gi",
        "gpu": {"count": 2, "product": "NVIDIA-H100-80GB-HBM3"},
    },
    "pod": {
        "metadata": {
            "labels": {"team": "ml", "szal.dev/run": "spoofed"},
            "annotations": {"szal.dev/sim-duration": "1s", "szal.dev/sim-exit-code": "0"},
        },
        "serviceAccountName": "trainer",
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml"}],
        "priorityClassName": "high",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
    },
}


def test_gpu_pod_golden() -> None:
    step = _step(GPU_STEP)
    ref = AttemptRef("train", 2)
    _golden("pod-gpu.yaml", build_pod(RUN, step, step.command, ref, ENV, "busybox:1.36"))


def test_script_job_golden() -> None:
    step = _step(
        {"name": "report", "script": "echo '{\"ok\": true}' > $SZAL_OUTPUTS", "launcher": "Job"},
        template={"image": "alpine:3.20", "env": [{"name": "LOG", "value": "debug"}]},
    )
    ref = AttemptRef("report", 1)
    env = {"SZAL_RUN": "ci-cd-1", "SZAL_STEP": "report", "SZAL_ATTEMPT": "1"}
    _golden("job-script.yaml", build_job(RUN, step, step.command, ref, env, "busybox:1.36"))


# --- names ------------------------------------------------------------------


def test_attempt_names_are_deterministic_labels() -> None:
    name = attempt_name("ci-cd-1", "build", 1)
    assert name == attempt_name("ci-cd-1", "build", 1)
    assert name.startswith("ci-cd-1-build-1-")
    assert DNS1123_LABEL.match(name)
    assert attempt_name("ci-cd-1", "build", 1, rollback=True).startswith("ci-cd-1-build-rb1-")


def test_attempt_names_differ_where_plain_names_would_clash() -> None:
    names = {
        attempt_name("deploy", "db-migrate", 1),
        attempt_name("deploy-db", "migrate", 1),
        attempt_name("deploy", "db-migrate", 2),
        attempt_name("deploy", "db-migrate", 1, rollback=True),
    }
    assert len(names) == 4


@pytest.mark.parametrize(
    ("run", "step"),
    [
        ("r" * 253, "s"),
        ("r", "s" * 63),
        ("a" * 100, "b" * 63),
        ("nightly.build.2026-11-24", "x"),
        ("run-", "-step"),
    ],
)
def test_long_or_odd_names_are_shortened_with_a_hash(run: str, step: str) -> None:
    name = attempt_name(run, step, 12, rollback=False)
    assert len(name) <= 63
    assert DNS1123_LABEL.match(name), name
    assert name != attempt_name(run + "z", step, 12)
    assert name != attempt_name(run, step, 13)


def test_long_run_names_become_valid_label_values() -> None:
    assert label_value("short") == "short"
    long = label_value("r" * 200)
    assert len(long) <= 63 and long != label_value("r" * 199)


# --- pod content ------------------------------------------------------------


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if manifest["kind"] == "Job":
        spec = spec["template"]["spec"]
    container: dict[str, Any] = spec["containers"][0]
    return container


def test_labels_owner_and_restart_policy() -> None:
    step = _step({"name": "build", "command": ["make"]})
    pod = build_pod(RUN, step, step.command, AttemptRef("build", 3), {}, "busybox:1.36")
    assert pod["metadata"]["labels"] == {
        "szal.dev/run": "ci-cd-1",
        "szal.dev/step": "build",
        "szal.dev/attempt": "3",
    }
    (owner,) = pod["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "name": "ci-cd-1",
        "uid": "0b7c6f7e-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert pod["spec"]["restartPolicy"] == "Never"
    container = _container(pod)
    assert container["image"] == "busybox:1.36"
    assert container["command"] == ["make"] and "args" not in container
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["env"] == [{"name": "SZAL_OUTPUTS", "value": "/dev/termination-log"}]
    assert "resources" not in container
    assert "nodeSelector" not in pod["spec"] and "tolerations" not in pod["spec"]


def test_compensation_pod_runs_the_rollback_command() -> None:
    step = _step(
        {
            "name": "deploy",
            "image": "app:1",
            "command": ["deploy"],
            "rollback": {"script": "undeploy --all"},
        }
    )
    assert step.rollback is not None
    ref = AttemptRef("deploy", 1, rollback=True)
    pod = build_pod(RUN, step, step.rollback, ref, {}, "busybox:1.36")
    assert pod["metadata"]["labels"][LABEL_ROLLBACK] == "true"
    assert pod["metadata"]["name"] == attempt_name("ci-cd-1", "deploy", 1, rollback=True)
    container = _container(pod)
    assert container["command"] == ["sh", "-c", "undeploy --all"]
    assert container["image"] == "app:1"


def test_operator_env_wins_and_outputs_path_is_last() -> None:
    step = _step(GPU_STEP)
    container = _container(
        build_pod(RUN, step, step.command, AttemptRef("train", 1), ENV, "busybox:1.36")
    )
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SZAL_RUN"] == "ci-cd-1"
    assert env["BATCH"] == "64"
    assert container["env"][-1] == {"name": "SZAL_OUTPUTS", "value": "/dev/termination-log"}


def test_gpu_without_product_has_no_product_selector() -> None:
    step = _step({"name": "g", "command": ["nvidia-smi"], "resources": {"gpu": {"count": 1}}})
    pod = build_pod(RUN, step, step.command, AttemptRef("g", 1), {}, "cuda:12")
    assert _container(pod)["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert "nodeSelector" not in pod["spec"]
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_szal_labels_and_gpu_product_win_over_pod_options() -> None:
    step = _step(
        {
            "name": "g",
            "command": ["x"],
            "resources": {"gpu": {"count": 1, "product": "A100"}},
            "pod": {
                "metadata": {"labels": {"szal.dev/step": "other"}},
                "nodeSelector": {"nvidia.com/gpu.product": "T4"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
            },
        }
    )
    pod = build_pod(RUN, step, step.command, AttemptRef("g", 1), {}, "x")
    assert pod["metadata"]["labels"]["szal.dev/step"] == "g"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert len(pod["spec"]["tolerations"]) == 1


def test_template_pod_options_and_sim_annotations_reach_the_pod() -> None:
    step = _step(
        {"name": "s", "command": ["x"], "pod": {"metadata": {"annotations": {"b": "2"}}}},
        template={
            "pod": {
                "metadata": {"annotations": {"szal.dev/sim-exit-code": "3", "b": "1"}},
                "serviceAccountName": "runner",
            }
        },
    )
    pod = build_pod(RUN, step, step.command, AttemptRef("s", 1), {}, "x")
    assert pod["metadata"]["annotations"] == {"szal.dev/sim-exit-code": "3", "b": "2"}
    assert pod["spec"]["serviceAccountName"] == "runner"


def test_job_wraps_the_same_pod() -> None:
    step = _step({"name": "j", "command": ["x"], "launcher": "Job", "resources": {"cpu": "1"}})
    ref = AttemptRef("j", 2)
    job = build_job(RUN, step, step.command, ref, {"A": "b"}, "busybox:1.36")
    pod = build_pod(RUN, step, step.command, ref, {"A": "b"}, "busybox:1.36")
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["name"] == pod["metadata"]["name"]
    assert job["metadata"]["labels"] == pod["metadata"]["labels"]
    assert job["metadata"]["ownerReferences"] == pod["metadata"]["ownerReferences"]
    template = job["spec"]["template"]
    assert template["metadata"]["labels"] == pod["metadata"]["labels"]
    assert "ownerReferences" not in template["metadata"]
    assert template["spec"] == pod["spec"]
    assert _container(job)["resources"] == {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}


# -- the context: a variable while short, an annotation projected as a file when long --


def _context_of(size: int) -> str:
    return '{"params":{},"steps":{"a":{"outputs":{"blob":"' + "x" * size + '"}}}}'


def test_a_short_context_stays_a_variable() -> None:
    step = _step({"name": "train", "image": "i", "command": ["run"]})
    env = {**ENV, "SZAL_CONTEXT": _context_of(100)}
    pod = build_pod(RUN, step, step.command, AttemptRef("train", 1), env, "busybox")
    container = pod["spec"]["containers"][0]
    names = {e["name"]: e["value"] for e in container["env"]}
    assert names["SZAL_CONTEXT"] == env["SZAL_CONTEXT"] and "SZAL_CONTEXT_FILE" not in names
    assert "volumes" not in pod["spec"] and "volumeMounts" not in container
    assert "annotations" not in pod["metadata"]


@pytest.mark.parametrize("launcher", ["Pod", "Job"])
def test_a_long_context_goes_as_an_annotation_projected_as_a_file(launcher: str) -> None:
    step = _step(
        {
            "name": "train",
            "image": "i",
            "command": ["run"],
            "pod": {"metadata": {"annotations": {"team": "ml"}}},
        }
    )
    context = _context_of(40 * 1024)
    env = {**ENV, "SZAL_CONTEXT": context}
    build = build_pod if launcher == "Pod" else build_job
    manifest = build(RUN, step, step.command, AttemptRef("train", 1), env, "busybox")
    pod = manifest if launcher == "Pod" else manifest["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"team": "ml", "szal.dev/context": context}
    container = pod["spec"]["containers"][0]
    names = {e["name"]: e["value"] for e in container["env"]}
    assert "SZAL_CONTEXT" not in names
    assert names["SZAL_CONTEXT_FILE"] == "/var/run/szal/context/context.json"
    assert container["volumeMounts"] == [
        {"name": "szal-context", "mountPath": "/var/run/szal/context", "readOnly": True}
    ]
    assert pod["spec"]["volumes"] == [
        {
            "name": "szal-context",
            "downwardAPI": {
                "items": [
                    {
                        "path": "context.json",
                        "fieldRef": {"fieldPath": "metadata.annotations['szal.dev/context']"},
                    }
                ]
            },
        }
    ]
    if launcher == "Job":
        assert "annotations" not in manifest["metadata"]  # on the pod template only


def test_a_long_context_keeps_the_steps_own_volumes_and_mounts() -> None:
    step = _step(
        {
            "name": "train",
            "image": "i",
            "command": ["run"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "pod": {"volumes": [{"name": "data", "emptyDir": {}}]},
        }
    )
    env = {**ENV, "SZAL_CONTEXT": _context_of(40 * 1024)}
    pod = build_pod(RUN, step, step.command, AttemptRef("train", 1), env, "busybox")
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert [m["name"] for m in mounts] == ["data", "szal-context"]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["data", "szal-context"]


# --- Kubernetes' container surface: env sources, mounts, requests/limits, pod fields ---

TRAIN_WITH_DATA: dict[str, Any] = {
    "name": "train",
    "image": "python:3.12",
    "command": ["python", "train.py"],
    "workingDir": "/data/set",
    "env": [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
        {"name": "SZAL_STEP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ],
    "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "settings", "optional": True}}],
    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    "resources": {
        "cpu": "500m",
        "requests": {"memory": "1Gi", "ephemeral-storage": "2Gi"},
        "limits": {"memory": 2147483648, "example.com/fpga": 1},
    },
    "pod": {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}],
        "imagePullSecrets": [{"name": "pull"}],
        "initContainers": [
            {"name": "proxy", "image": "proxy:1", "restartPolicy": "Always"},
        ],
        "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["db.local"]}],
        "dnsPolicy": "None",
        "dnsConfig": {"nameservers": ["10.0.0.10"]},
        "runtimeClassName": "gvisor",
        "terminationGracePeriodSeconds": 5,
    },
}


def test_container_surface_is_copied_with_kubernetes_names() -> None:
    step = _step(TRAIN_WITH_DATA)
    pod = build_pod(RUN, step, step.command, AttemptRef("train", 1), ENV, "busybox")
    container = pod["spec"]["containers"][0]
    assert container["workingDir"] == "/data/set"
    env = {e["name"]: e for e in container["env"]}
    assert env["TOKEN"] == {
        "name": "TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}},
    }
    # Szál's own variables win over a user's valueFrom of the same name.
    assert env["SZAL_STEP"] == {"name": "SZAL_STEP", "value": "train"}
    assert [e["name"] for e in container["env"]].count("SZAL_STEP") == 1
    assert container["envFrom"] == [
        {"prefix": "CFG_", "configMapRef": {"name": "settings", "optional": True}}
    ]
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "2Gi"},
        "limits": {"cpu": "500m", "memory": "2147483648", "example.com/fpga": "1"},
    }
    spec = pod["spec"]
    assert spec["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}]
    assert spec["imagePullSecrets"] == [{"name": "pull"}]
    assert spec["initContainers"] == [
        {"name": "proxy", "image": "proxy:1", "restartPolicy": "Always"}
    ]
    assert spec["hostAliases"] == [{"ip": "10.0.0.9", "hostnames": ["db.local"]}]
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"] == {"nameservers": ["10.0.0.10"]}
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["terminationGracePeriodSeconds"] == 5
    job = build_job(RUN, step, step.command, AttemptRef("train", 1), ENV, "busybox")
    assert job["spec"]["template"]["spec"]["volumes"] == spec["volumes"]


def test_template_container_fields_merge_into_steps_and_rollbacks() -> None:
    template = {
        "image": "busybox",
        "workingDir": "/work",
        "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "a"}}}],
        "envFrom": [{"secretRef": {"name": "shared"}}],
        "volumeMounts": [
            {"name": "cache", "mountPath": "/cache"},
            {"name": "data", "mountPath": "/data"},
        ],
    }
    step = _step(
        {
            "name": "s",
            "command": ["true"],
            "env": [{"name": "A", "value": "plain"}],
            "volumeMounts": [{"name": "other", "mountPath": "/data", "readOnly": True}],
            "rollback": {"command": ["undo"], "workingDir": "/undo"},
        },
        template,
    )
    container = build_pod(RUN, step, step.command, AttemptRef("s", 1), {}, "x")["spec"][
        "containers"
    ][0]
    assert {"name": "A", "value": "plain"} in container["env"]  # the step's plain value wins
    assert all("valueFrom" not in e for e in container["env"])
    assert container["workingDir"] == "/work"
    assert container["envFrom"] == [{"secretRef": {"name": "shared"}}]
    assert container["volumeMounts"] == [
        {"name": "cache", "mountPath": "/cache"},
        {"name": "other", "mountPath": "/data", "readOnly": True},
    ]
    assert step.rollback is not None
    rollback = build_pod(RUN, step, step.rollback, AttemptRef("s", 1, rollback=True), {}, "x")[
        "spec"
    ]["containers"][0]
    assert rollback["workingDir"] == "/undo"
    assert rollback["volumeMounts"] == container["volumeMounts"]
    assert rollback["envFrom"] == container["envFrom"]


def test_requests_and_limits_without_the_short_form() -> None:
    step = _step(
        {
            "name": "s",
            "command": ["true"],
            "resources": {"requests": {"cpu": 0.25}, "gpu": {"count": 1}},
        }
    )
    resources = build_pod(RUN, step, step.command, AttemptRef("s", 1), {}, "x")["spec"][
        "containers"
    ][0]["resources"]
    assert resources == {"requests": {"cpu": "0.25"}, "limits": {"nvidia.com/gpu": 1}}
