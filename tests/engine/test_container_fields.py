"""Shape checks of the container and pod fields (``szal.spec.containers``).

Covers: ``valueFrom`` needs exactly one source and no ``value`` beside it,
``envFrom`` exactly one of configMapRef/secretRef, quantities in
``requests``/``limits``, a resource set in both the short form and
``requests``/``limits``, ``activeDeadlineSeconds`` refused naming
``timeout``, unnamed volumes; each error names the field. Not covered: the
Pod built from them (tests/kubernetes/test_pods.py) and local refusals
(tests/local/test_containers.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from szal.spec import WorkflowSpec


def _spec(**step: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"steps": [{"name": "s", "command": ["true"], **step}]})


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            {"env": [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "a"}}}]},
            "set value or valueFrom, not both",
        ),
        ({"env": [{"name": "A", "valueFrom": {}}]}, "set exactly one of secretKeyRef"),
        ({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]}, "key"),
        ({"envFrom": [{"prefix": "X"}]}, "set exactly one of configMapRef or secretRef"),
        ({"resources": {"requests": {"memory": "1Gx"}}}, "invalid quantity '1Gx'"),
        ({"resources": {"cpu": "1", "limits": {"cpu": "2"}}}, "cpu is set both as cpu"),
        (
            {"resources": {"gpu": {"count": 1}, "limits": {"nvidia.com/gpu": 1}}},
            "nvidia.com/gpu is set both",
        ),
        ({"pod": {"activeDeadlineSeconds": 30}}, "Szál enforces timeouts itself"),
        ({"pod": {"volumes": [{"emptyDir": {}}]}}, "volumes[0]: name is required"),
        ({"pod": {"dnsPolicy": "Sometimes"}}, "dnsPolicy"),
        ({"volumeMounts": [{"name": "v", "mountPth": "/v"}]}, "mountPth"),
    ],
)
def test_bad_fields_are_refused_naming_them(step: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as error:
        _spec(**step)
    assert message in str(error.value)


def test_good_fields_load() -> None:
    spec = _spec(
        workingDir="/w",
        env=[{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
        resources={"requests": {"cpu": "250m"}, "limits": {"ephemeral-storage": "1Gi"}},
        pod={"initContainers": [{"name": "side", "image": "x", "restartPolicy": "Always"}]},
    )
    step = spec.steps[0]
    assert step.working_dir == "/w"
    assert step.resources is not None and step.resources.requests == {"cpu": "250m"}
