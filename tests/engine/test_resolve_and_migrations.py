"""resolve_workflow (template merge, parsing, hierarchy flattening) and migrations.

Covers: the template merge rules (step fields win, command/args/script as a
unit, env by name, pod field by field, compensation inheriting image and env),
parsed durations and retry policies, compiled conditions, the flattened
hierarchy (index, parent, children, group_mode, mode defaulting to
Sequential), refusing an invalid spec, the migration registry rules, and the
backoff formulas of RetryPolicy and BackoffSettings (with jitter).
Deliberately not: planning (other modules).
"""

from __future__ import annotations

from typing import Any

import pytest

from szal.engine import (
    API_VERSIONS,
    CURRENT_FORMAT,
    MigrationError,
    MigrationRegistry,
    RetryPolicy,
    WorkflowInvalid,
    resolve_workflow,
    upgrade,
)
from szal.spec import Backoff, BackoffSettings, WorkflowSpec


def resolve(spec: dict[str, Any], **params: object) -> Any:
    return resolve_workflow(WorkflowSpec.model_validate(spec), name="wf", params=params)


def test_template_merge() -> None:
    wf = resolve(
        {
            "template": {
                "image": "busybox",
                "command": ["sh", "-c"],
                "args": ["default"],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "timeout": "1m",
                "retries": {"limit": 2, "delay": "2s"},
                "launcher": "Job",
                "pod": {
                    "serviceAccountName": "sa",
                    "nodeSelector": {"x": "y"},
                    "metadata": {"labels": {"team": "a", "tier": "t"}},
                },
            },
            "steps": [
                {
                    "name": "own",
                    "image": "golang",
                    "script": "make",
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                    "timeout": "10s",
                    "pod": {"serviceAccountName": "mine", "metadata": {"labels": {"team": "b"}}},
                },
                {"name": "args-only", "args": ["hello"]},
                {"name": "inherit"},
            ],
        }
    )
    own, args_only, inherit = wf.steps
    assert own.command.image == "golang"
    assert own.command.script == "make" and own.command.command is None
    assert own.command.argv() == ["sh", "-c", "make"]
    assert own.command.env == (("A", "1"), ("B", "3"), ("C", "4"))
    assert own.timeout == 10.0
    assert own.retries == RetryPolicy(limit=2, backoff="Fixed", delay=2.0, max_delay=None)
    assert own.launcher == "Job"
    assert own.pod is not None and own.pod.service_account_name == "mine"
    assert own.pod.node_selector == {"x": "y"}
    assert own.pod.metadata is not None and own.pod.metadata.labels == {"team": "b", "tier": "t"}
    assert args_only.command.argv() == ["sh", "-c", "hello"]
    assert inherit.command.argv() == ["sh", "-c", "default"]
    assert inherit.command.image == "busybox"
    assert inherit.timeout == 60.0


def test_compensation_inherits_image_and_env() -> None:
    wf = resolve(
        {
            "steps": [
                {
                    "name": "a",
                    "image": "img",
                    "command": ["deploy"],
                    "env": [{"name": "X", "value": "1"}],
                    "rollback": {
                        "command": ["undo"],
                        "env": [{"name": "Y", "value": "2"}],
                        "timeout": "30s",
                    },
                }
            ]
        }
    )
    (a,) = wf.steps
    assert a.rollback is not None
    assert a.rollback.image == "img" and a.rollback.argv() == ["undo"]
    assert a.rollback.env == (("X", "1"), ("Y", "2"))
    assert a.rollback_timeout == 30.0


def test_workflow_fields_and_when() -> None:
    wf = resolve(
        {
            "mode": "Dag",
            "timeout": "1h30m",
            "maxParallel": 3,
            "failFast": True,
            "rollbackOnFailure": True,
            "params": [{"name": "env", "default": "dev"}],
            "steps": [
                {
                    "name": "a",
                    "command": ["x"],
                    "retries": {"limit": 1, "backoff": "Linear", "delay": "1.5s", "maxDelay": "1m"},
                },
                {
                    "name": "b",
                    "command": ["x"],
                    "dependsOn": ["a", "a"],
                    "trigger": "Any",
                    "when": "params.env == 'dev'",
                    "resources": {"cpu": "1", "gpu": {"count": 2}},
                },
            ],
        },
        env="prod",
    )
    assert (wf.name, wf.version, wf.mode, wf.timeout) == ("wf", 1, "Dag", 5400.0)
    assert (wf.max_parallel, wf.fail_fast, wf.rollback_on_failure) == (3, True, True)
    assert wf.params == {"env": "prod"}
    a, b = wf.steps
    assert a.retries == RetryPolicy(1, "Linear", 1.5, 60.0)
    assert b.depends_on == ("a",) and b.trigger == "Any"
    assert b.when is not None and not b.when.evaluate({"params": {"env": "prod"}})
    assert b.cpu == "1" and b.gpu is not None and b.gpu.count == 2
    assert wf.by_name["b"] is b and b.index == 1
    assert len(wf.spec_hash) == 16


def test_hierarchy_is_flattened_parents_first() -> None:
    wf = resolve(
        {
            "mode": "Hierarchical",
            "steps": [
                {
                    "name": "p",
                    "steps": [
                        {
                            "name": "c1",
                            "command": ["x"],
                            "mode": "Parallel",
                            "steps": [{"name": "g", "command": ["x"]}],
                        },
                        {"name": "c2", "command": ["x"]},
                    ],
                },
                {"name": "q", "command": ["x"]},
            ],
        }
    )
    assert [s.name for s in wf.steps] == ["p", "c1", "g", "c2", "q"]
    p, c1, g, _c2, q = wf.steps
    assert p.children == ("c1", "c2") and p.parent is None and p.mode == "Sequential"
    assert p.group_mode == "Hierarchical"
    assert c1.parent == "p" and c1.group_mode == "Sequential" and c1.mode == "Parallel"
    assert g.parent == "c1" and g.group_mode == "Parallel"
    assert q.children == () and [s.index for s in wf.steps] == [0, 1, 2, 3, 4]


def test_invalid_spec_is_refused() -> None:
    with pytest.raises(WorkflowInvalid):
        resolve({"mode": "Dag", "steps": [{"name": "a", "command": ["x"], "dependsOn": ["a"]}]})


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        ("Fixed", [2.0, 2.0, 2.0, 2.0]),
        ("Linear", [2.0, 4.0, 6.0, 7.0]),
        ("Exponential", [2.0, 4.0, 7.0, 7.0]),
    ],
)
def test_backoff_formulas_capped_by_max_delay(backoff: Backoff, delays: list[float]) -> None:
    policy = RetryPolicy(limit=5, backoff=backoff, delay=2.0, max_delay=7.0)
    assert [policy.delay_after(n) for n in (1, 2, 3, 4)] == delays
    assert policy.settings == BackoffSettings(backoff, delay=2.0, max_delay=7.0)


def test_jitter_only_takes_off_and_is_bounded() -> None:
    """The history mirror's settings: jitter takes off at most its fraction."""
    jittered = BackoffSettings("Exponential", delay=0.2, max_delay=30.0, jitter=0.5)
    assert [jittered.delay_after(n) for n in (1, 2, 3, 9, 20)] == [0.2, 0.4, 0.8, 30.0, 30.0]
    assert jittered.delay_after(3, draw=0.0) == pytest.approx(0.4)
    assert jittered.delay_after(3, draw=0.5) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="jitter"):
        BackoffSettings(jitter=1.5)


# -- migrations ------------------------------------------------------------------

#: Three made-up format revisions, named by apiVersion as the real ones are.
FORMATS = {1: "szal.dev/v1", 2: "szal.dev/v2", 3: "szal.dev/v3"}


def registry_to_3() -> MigrationRegistry:
    registry = MigrationRegistry(current_format=3, api_versions=FORMATS)

    @registry.register(1)
    def one_to_two(d: dict[str, Any]) -> dict[str, Any]:
        d["renamed"] = d.pop("old", None)
        return d

    @registry.register(2)
    def two_to_three(d: dict[str, Any]) -> dict[str, Any]:
        d["hops"] = [*d.get("hops", []), 3]
        return d

    return registry


def workflow_in(api_version: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "Workflow", "spec": spec}


def test_upgrade_hop_by_hop_keyed_by_api_version() -> None:
    registry = registry_to_3()
    source = workflow_in("szal.dev/v1", version=1, old="x", steps=[])
    result = registry.upgrade(source)
    assert result["apiVersion"] == "szal.dev/v3"
    assert result["spec"] == {"version": 1, "renamed": "x", "steps": [], "hops": [3]}
    assert source["spec"]["old"] == "x" and source["apiVersion"] == "szal.dev/v1"  # unchanged
    assert registry.upgrade(source, target=2)["apiVersion"] == "szal.dev/v2"


def test_the_author_version_never_selects_a_migration() -> None:
    registry = registry_to_3()
    # spec.version 1 in the newest format: nothing to do, whatever the number.
    current = workflow_in("szal.dev/v3", version=1, old="x")
    assert registry.upgrade(current) is current
    # spec.version 7 in the oldest format: every hop runs and 7 stays the author's.
    old = registry.upgrade(workflow_in("szal.dev/v1", version=7, old="x"))
    assert old["spec"] == {"version": 7, "renamed": "x", "hops": [3]}


def test_a_bare_spec_is_the_current_format_unless_told() -> None:
    registry = registry_to_3()
    spec = {"version": 5, "old": "x"}
    assert registry.upgrade(spec) is spec
    assert registry.upgrade(spec, source_format=2) == {"version": 5, "old": "x", "hops": [3]}


def test_to_current_is_a_no_op() -> None:
    document = workflow_in("szal.dev/v1alpha1", version=2026, steps=[])
    assert upgrade(document) is document
    assert upgrade({"steps": []}) == {"steps": []}
    assert CURRENT_FORMAT == 1 and API_VERSIONS[CURRENT_FORMAT] == "szal.dev/v1alpha1"


def test_a_newer_format_names_both() -> None:
    with pytest.raises(MigrationError, match=r"format revision 5 is newer .*\(3\)"):
        registry_to_3().upgrade({"version": 1}, source_format=5)
    with pytest.raises(MigrationError, match=r"'szal.dev/v9' is not a format .*szal.dev/v3"):
        registry_to_3().upgrade(workflow_in("szal.dev/v9"))


def test_missing_hop_names_the_revision() -> None:
    registry = MigrationRegistry(current_format=3, api_versions=FORMATS)
    registry.register(1)(lambda d: d)
    with pytest.raises(MigrationError, match="from format revision 2 to 3"):
        registry.upgrade(workflow_in("szal.dev/v1"))


def test_registration_refuses_anything_but_n_to_n_plus_one() -> None:
    registry = MigrationRegistry(current_format=4)
    with pytest.raises(MigrationError, match="one format revision at a time"):
        registry.register(1, 3)
    registry.register(1)(lambda d: d)
    with pytest.raises(MigrationError, match="already registered"):
        registry.register(1)
    with pytest.raises(MigrationError, match="gap"):
        registry.register(3)
    with pytest.raises(MigrationError, match="beyond the current"):
        MigrationRegistry(current_format=2).register(2)
    with pytest.raises(MigrationError):
        registry.register(0)
    assert registry.revisions == [1]


def test_downgrade_is_refused() -> None:
    with pytest.raises(MigrationError, match="downgrade"):
        registry_to_3().upgrade(workflow_in("szal.dev/v3"), target=2)
