"""The webhooks' ``matchConditions`` (``szal.runners.kubernetes.matching``) as shipped.

Covers: the kustomize base and the Helm chart carry exactly the expressions
of :data:`MATCH_CONDITIONS`, one per webhook; the WorkflowRun expression
names every immutable field and no control. Not covered: what the API
server makes of them (e2e/test_run_immutability.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from szal.runners.kubernetes.matching import MATCH_CONDITIONS, WORKFLOW_RUN_CONDITION
from szal.spec.immutability import RUN_CONTROL_FIELDS, immutable_run_fields

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZE = REPO / "manifests/base/webhook/validating_webhook_configuration.yaml"
CHART = REPO / "charts/szal/templates/webhook.yaml"
PATHS = {"validate-workflow": "workflows", "validate-workflowrun": "workflowruns"}


def test_the_kustomize_base_carries_the_conditions() -> None:
    config = yaml.safe_load(KUSTOMIZE.read_text())
    by_resource = {w["rules"][0]["resources"][0]: w for w in config["webhooks"]}
    assert set(by_resource) == set(MATCH_CONDITIONS)
    for resource, webhook in by_resource.items():
        assert webhook["matchConditions"] == MATCH_CONDITIONS[resource]


def test_the_chart_carries_the_conditions() -> None:
    text = CHART.read_text()
    for conditions in MATCH_CONDITIONS.values():
        (condition,) = conditions
        assert f"- name: {condition['name']}\n" in text
        assert f"expression: {json.dumps(condition['expression'])}\n" in text


def test_the_run_condition_names_every_immutable_field_and_no_control() -> None:
    for field in immutable_run_fields():
        assert f"object.spec.{field} != oldObject.spec.{field}" in WORKFLOW_RUN_CONDITION
    for control in RUN_CONTROL_FIELDS:
        assert control not in WORKFLOW_RUN_CONDITION
