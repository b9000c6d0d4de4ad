"""Conformance: what ``szal validate`` (and admission, and every run) refuses.

Covers DESIGN.md section 4 "Validation" and the details tests pin down:
duplicate and invalid names, unknown dependencies, cycles named by their path
(``a -> b -> a``), ``dependsOn`` outside Dag mode, trigger Any without
``dependsOn``, bad durations (Go-style ``ms s m h``, combined and decimal),
``when`` parse errors and unknown steps/params, the ``when`` scoping rules
(upstream transitively in Dag, earlier in Sequential, the parent's earlier
siblings and ancestors in Hierarchical, none in Parallel), GPU counts no
machine holds, every error naming its step and field, all errors collected
at once (shape errors and whole-workflow errors together), and the defaults
(``spec.version`` 1, children mode Sequential). Deliberately not: the CLI's
exit code 2 and file naming (tests/local), CRD schema refusals (e2e).
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.conformance.support import doc, issues, resolved, step

from szal.engine import WorkflowInvalid, parse_workflow, parse_workflow_run, validate_workflow


def fields(document: dict[str, Any]) -> set[tuple[str | None, str]]:
    return {(issue.step, issue.field) for issue in issues(document)}


def texts(document: dict[str, Any]) -> list[str]:
    return [str(issue) for issue in issues(document)]


def test_valid_workflow_has_no_issues() -> None:
    assert issues(doc([step("a"), step("b", dependsOn=["a"])], mode="Dag")) == []


# -- names ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Build", "build_1", "-a", "a-", "a.b", "a" * 64, "ä"])
def test_invalid_names_are_refused(name: str) -> None:
    found = issues(doc([step(name)]))
    assert found, name
    assert all(issue.field == "name" for issue in found)


@pytest.mark.parametrize("name", ["a", "build-1", "1st", "a" * 63])
def test_dns1123_names_are_accepted(name: str) -> None:
    assert issues(doc([step(name)])) == []


def test_duplicate_names_in_the_whole_tree() -> None:
    tree = [step("a", steps=[step("b")]), step("b")]
    found = issues(doc(tree, mode="Hierarchical"))
    assert [(i.step, i.field) for i in found] == [("b", "name")]
    assert "duplicate" in found[0].message


# -- dependencies and cycles ------------------------------------------------------


def test_unknown_dependency_names_it() -> None:
    (issue,) = issues(doc([step("a", dependsOn=["nope"])], mode="Dag"))
    assert (issue.step, issue.field) == ("a", "dependsOn")
    assert "'nope'" in issue.message


def test_cycle_message_names_the_path() -> None:
    found = texts(doc([step("a", dependsOn=["b"]), step("b", dependsOn=["a"])], mode="Dag"))
    assert len(found) == 1
    assert "a -> b -> a" in found[0]
    assert "dependsOn" in found[0]


def test_longer_cycle_and_self_cycle() -> None:
    steps = [
        step("a", dependsOn=["c"]),
        step("b", dependsOn=["a"]),
        step("c", dependsOn=["b"]),
        step("d", dependsOn=["d"]),
    ]
    found = " / ".join(texts(doc(steps, mode="Dag")))
    assert "a -> c -> b -> a" in found
    assert "d -> d" in found


@pytest.mark.parametrize("mode", ["Sequential", "Parallel", "Hierarchical"])
def test_depends_on_outside_dag_is_refused(mode: str) -> None:
    found = issues(doc([step("a"), step("b", dependsOn=["a"])], mode=mode))
    assert [(i.step, i.field) for i in found] == [("b", "dependsOn")]
    assert "Dag" in found[0].message


def test_depends_on_among_dag_children_is_accepted() -> None:
    tree = [step("p", mode="Dag", steps=[step("x"), step("y", dependsOn=["x"])])]
    assert issues(doc(tree, mode="Hierarchical")) == []


def test_nested_steps_outside_hierarchical_are_refused() -> None:
    assert fields(doc([step("p", steps=[step("c")])], mode="Sequential")) == {("p", "steps")}


def test_trigger_any_needs_depends_on() -> None:
    found = issues(doc([step("a", trigger="Any")], mode="Dag"))
    assert [(i.step, i.field) for i in found] == [("a", "trigger")]


# -- durations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("90s", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("1h30m", 5400.0),
        ("1h0m0.5s", 3600.5),
    ],
)
def test_go_durations_are_accepted(text: str, seconds: float) -> None:
    workflow = resolved(
        doc(
            [step("a", timeout=text, retries={"limit": 1, "delay": text})],
            timeout=text,
        )
    )
    assert workflow.timeout == pytest.approx(seconds)
    assert workflow.by_name["a"].timeout == pytest.approx(seconds)
    assert workflow.by_name["a"].retries.delay == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "1d", "-1s", "1.5", "s", "", "1 m", "1m 30s", "ms", "1S"])
def test_bad_durations_are_refused_naming_step_and_field(text: str) -> None:
    found = issues(doc([step("a", timeout=text)]))
    assert [(i.step, i.field) for i in found] == [("a", "timeout")]
    found = issues(doc([step("a")], timeout=text))
    assert [(i.step, i.field) for i in found] == [(None, "timeout")]
    found = issues(doc([step("a", retries={"limit": 1, "delay": text})]))
    assert [(i.step, i.field) for i in found] == [("a", "retries.delay")]


def test_a_number_where_a_duration_belongs_says_so() -> None:
    (issue,) = issues(doc([step("a", timeout=10)]))
    assert (issue.step, issue.field) == ("a", "timeout")
    assert "duration" in issue.message


# -- when -------------------------------------------------------------------------


def test_when_syntax_error_is_a_validation_error() -> None:
    (issue,) = issues(doc([step("a", when="params.env ==")], params=[{"name": "env"}]))
    assert (issue.step, issue.field) == ("a", "when")
    assert "column" in issue.message


@pytest.mark.parametrize(
    "when",
    [
        "params.nope == 'x'",
        "steps.ghost.phase == 'Succeeded'",
        "steps.a.color == 'red'",
        "foo == 1",
        "run.owner == 'me'",
    ],
)
def test_when_unknown_references_are_validation_errors(when: str) -> None:
    found = issues(doc([step("a"), step("b", when=when)], params=[{"name": "env"}]))
    assert [(i.step, i.field) for i in found] == [("b", "when")]


def test_when_blank_is_no_condition() -> None:
    assert issues(doc([step("a", when=""), step("b", when="   ")])) == []


def test_when_in_dag_may_name_transitive_upstream_only() -> None:
    base = [
        step("a"),
        step("b", dependsOn=["a"]),
        step("side"),
    ]
    ok = doc([*base, step("c", dependsOn=["b"], when="steps.a.exitCode == 0")], mode="Dag")
    assert issues(ok) == []
    bad = doc([*base, step("c", dependsOn=["b"], when="steps.side.exitCode == 0")], mode="Dag")
    assert fields(bad) == {("c", "when")}
    downstream = doc(
        [step("a", when="steps.b.phase == 'Succeeded'"), step("b", dependsOn=["a"])],
        mode="Dag",
    )
    assert fields(downstream) == {("a", "when")}


def test_when_in_sequential_may_name_earlier_steps_only() -> None:
    assert issues(doc([step("a"), step("b", when="steps.a.outputs.ok")])) == []
    assert fields(doc([step("a", when="steps.b.outputs.ok"), step("b")])) == {("a", "when")}
    assert fields(doc([step("a", when="steps.a.attempts > 0")])) == {("a", "when")}


def test_when_in_parallel_may_name_no_step() -> None:
    found = fields(doc([step("a"), step("b", when="steps.a.exitCode == 0")], mode="Parallel"))
    assert found == {("b", "when")}


def test_when_in_hierarchical_parent_earlier_siblings_and_ancestors() -> None:
    def tree(when: str) -> dict[str, Any]:
        return doc(
            [
                step("first", steps=[step("inner")]),
                step(
                    "parent",
                    steps=[step("older"), step("me", when=when), step("younger")],
                ),
                step("last"),
            ],
            mode="Hierarchical",
        )

    for ok in (
        "steps.first.phase == 'Succeeded'",  # the parent's earlier sibling
        "steps.inner.phase == 'Succeeded'",  # inside it (its subtree finished)
        "steps.parent.exitCode == 0",  # an ancestor
        "steps.older.exitCode == 0",  # an earlier sibling
    ):
        assert issues(tree(ok)) == [], ok
    for bad in (
        "steps.younger.exitCode == 0",
        "steps.last.exitCode == 0",
        "steps.me.exitCode == 0",
    ):
        assert fields(tree(bad)) == {("me", "when")}, bad


def test_when_of_a_parent_may_not_name_its_children() -> None:
    tree = [step("p", when="steps.c.phase == 'Succeeded'", steps=[step("c")])]
    assert fields(doc(tree, mode="Hierarchical")) == {("p", "when")}


def test_when_in_parallel_children_may_name_no_sibling() -> None:
    tree = [step("p", mode="Parallel", steps=[step("x"), step("y", when="steps.x.exitCode == 0")])]
    assert fields(doc(tree, mode="Hierarchical")) == {("y", "when")}


# -- GPUs -------------------------------------------------------------------------


def test_gpu_count_beyond_the_machine_names_step_and_field() -> None:
    workflow = parse_workflow(doc([step("train", resources={"gpu": {"count": 4}})]))
    (issue,) = validate_workflow(workflow.spec, gpus_available=2)
    assert (issue.step, issue.field) == ("train", "resources.gpu.count")
    assert validate_workflow(workflow.spec, gpus_available=4) == []


# -- all at once ------------------------------------------------------------------


def test_every_error_is_collected_each_naming_step_and_field() -> None:
    document = doc(
        [
            step("a", dependsOn=["ghost"]),
            step("a"),
            step("Bad", timeout="5y"),
            step("c", trigger="Any"),
            step("d", dependsOn=["e"]),
            step("e", dependsOn=["d"], when="params.missing"),
            step("f", retries={"limit": 1, "backoff": "Random"}),
        ],
        mode="Dag",
    )
    found = fields(document)
    assert {
        ("a", "dependsOn"),
        ("a", "name"),
        ("Bad", "name"),
        ("Bad", "timeout"),
        ("c", "trigger"),
        ("d", "dependsOn"),
        ("e", "when"),
        ("f", "retries.backoff"),
    } <= found
    assert any("d -> e -> d" in text for text in texts(document))
    for issue in issues(document):
        assert issue.step is not None and issue.field
        assert issue.step in str(issue) and issue.field in str(issue)


def test_unknown_field_is_refused_by_name() -> None:
    (issue,) = issues(doc([step("a", dependson=["x"])]))
    assert (issue.step, issue.field) == ("a", "dependson")


def test_workflow_level_errors_name_the_field() -> None:
    found = fields(doc([step("a")], maxParallel=0, mode="Diagonal"))
    assert {(None, "maxParallel"), (None, "mode")} <= found


# -- defaults ---------------------------------------------------------------------


def test_defaults_version_1_and_children_sequential() -> None:
    workflow = parse_workflow(doc([step("p", steps=[step("c")])], mode="Hierarchical"))
    assert workflow.spec.version == 1
    run = resolved(doc([step("p", steps=[step("c")])], mode="Hierarchical"))
    assert run.version == 1
    assert run.by_name["p"].mode == "Sequential"
    assert run.by_name["c"].group_mode == "Sequential"
    assert run.by_name["p"].trigger == "All"
    assert run.by_name["p"].retries.limit == 0
    assert run.by_name["p"].timeout is None


def test_workflow_run_with_inline_workflow_collects_every_error() -> None:
    inline = doc([step("a", timeout="soon", dependsOn=["ghost"]), step("a")], mode="Dag")["spec"]
    document = {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r"},
        "spec": {"workflow": inline},
    }
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow_run(document)
    found = {(i.step, i.field) for i in caught.value.issues}
    assert {("a", "timeout"), ("a", "dependsOn"), ("a", "name")} <= found
    assert all(i.path.startswith("spec.workflow.") for i in caught.value.issues)


def test_a_refused_mode_does_not_invent_dependency_errors() -> None:
    found = fields(doc([step("a"), step("b", dependsOn=["a"])], mode="DAG"))
    assert found == {(None, "mode")}
