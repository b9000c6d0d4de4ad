"""Hypothesis strategies for the fuzz suite: Workflow documents and `when` text.

Two families. ``noisy`` documents mix good values, wrong values (bad names,
unknown modes, broken durations) and junk of every YAML type at every field
position, plus misspelt and unknown keys, so the refusal paths are walked.
``noisy=False`` documents use good values only (names, dependencies and
conditions may still disagree with each other), so a fair share is valid and
the run path is walked too. Conditions are built from the DSL's own tokens
(plus raw text), which reaches the parser's corners far more often than
random characters alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)

TOKENS = [
    "params.env", "params.n", "steps.a.phase", "steps.b.exitCode", "steps['a'].outputs.x",
    "steps.a.outputs.items[0]", "steps.zz.phase", "run.name", "run.namespace", "outputs",
    "==", "!=", "<", "<=", ">", ">=", "&&", "||", "!", "not", "and", "or", "in", "not in",
    "contains", "(", ")", "[", "]", ",", ".", "'prod'", '"a\\"b"', "'", '"', "\\", "1", "-2",
    "1.5", "1e3", "-0.0", "true", "false", "null", "True", "None", "[]", "{}", "+", "=", "&",
]  # fmt: skip
conditions = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=9).map(" ".join),
    st.lists(st.sampled_from(TOKENS), max_size=9).map("".join),
    st.text(max_size=30),
)
GOOD_CONDITIONS = ["", "params.env == 'prod'", "steps.a.phase == 'Succeeded'", "true", "!false"]


class Values:
    """Field values for one family: good ones only, or good, wrong and junk."""

    def __init__(self, noisy: bool) -> None:
        self.noisy = noisy

    def pick(self, good: Sequence[Any], bad: Sequence[Any] = ()) -> st.SearchStrategy[Any]:
        if not self.noisy:
            return st.sampled_from(list(good))
        choices = st.sampled_from([*good, *bad]) if bad else st.sampled_from(list(good))
        return st.one_of(choices, choices, choices, junk)

    def of(self, plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(plausible, plausible, plausible, junk) if self.noisy else plausible

    def lists(self, items: st.SearchStrategy[Any], max_size: int) -> st.SearchStrategy[Any]:
        return self.of(st.lists(items, max_size=max_size))

    def mapping(self, optional: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
        return self.of(st.fixed_dictionaries({}, optional=optional))


STEP_NAMES = ["a", "b", "c", "build", "unit-test"]
BAD_NAMES = ["Bad_Name", "", "x" * 70, "-lead"]
MODES = ["Sequential", "Parallel", "Dag", "Hierarchical"]
DURATIONS = ["1s", "1m30s", "1.5s", "250ms", "2h"]
BAD_DURATIONS = ["-1s", "10", "1d", "s", "0s"]


def command_fields(v: Values) -> dict[str, st.SearchStrategy[Any]]:
    """Fields a step, the template and a rollback share."""
    gpu = v.mapping({"count": v.pick([1], [0, -1, 99]), "product": v.pick(["A100"], [""])})
    env = st.fixed_dictionaries(
        {"name": v.pick(["X", "MODEL"], ["bad name", "", "SZAL_RUN"])},
        optional={"value": v.pick(["y", ""])},
    )
    return {
        "image": v.pick(["busybox:1.36"], ["", "UPPER/case"]),
        "command": v.lists(v.pick(["sh", "-c", "echo hi"], [""]), max_size=3),
        "script": v.pick(["echo ok", "exit 3"], [""]),
        "env": v.lists(env, max_size=2),
        "resources": v.mapping(
            {
                "cpu": v.pick(["500m", "1"], ["lots", "-1"]),
                "memory": v.pick(["1Gi", "64Mi"], ["1GB", "x"]),
                "gpu": gpu,
            }
        ),
        "imagePullPolicy": v.pick(["Always", "IfNotPresent", "Never"], ["Sometimes"]),
    }


def step(depth: int, v: Values) -> st.SearchStrategy[dict[str, Any]]:
    retries = v.mapping(
        {
            "limit": v.pick([0, 1, 2], [-1]),
            "backoff": v.pick(["Fixed", "Linear", "Exponential"], ["Random"]),
            "delay": v.pick(DURATIONS, BAD_DURATIONS),
            "maxDelay": v.pick(DURATIONS, BAD_DURATIONS),
        }
    )
    optional: dict[str, st.SearchStrategy[Any]] = {
        **command_fields(v),
        "timeout": v.pick(DURATIONS, BAD_DURATIONS),
        "retries": retries,
        "dependsOn": v.lists(v.pick(STEP_NAMES, BAD_NAMES), max_size=3),
        "trigger": v.pick(["All", "Any"], ["Some"]),
        "when": v.of(conditions) if v.noisy else st.sampled_from(GOOD_CONDITIONS),
        "rollback": v.mapping(
            {k: s for k, s in command_fields(v).items() if v.noisy or k != "resources"}
        ),
        "mode": v.pick(MODES, ["dag", "Serial"]),
        "launcher": v.pick(["Pod", "Job"], ["Process"]),
    }
    if v.noisy:
        optional["comand"] = st.just(["true"])
        optional["unknownField"] = junk
    if depth > 0:
        optional["steps"] = v.lists(step(depth - 1, v), max_size=3)
    return st.fixed_dictionaries({"name": v.pick(STEP_NAMES, BAD_NAMES)}, optional=optional)


def workflow_documents(noisy: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    v = Values(noisy)
    param = st.fixed_dictionaries(
        {"name": v.pick(["env", "n"], ["Bad Name", ""])},
        optional={"default": v.pick(["prod", 3, True]) if not noisy else junk},
    )
    spec = st.fixed_dictionaries(
        {"steps": v.lists(step(2, v), max_size=5)},
        optional={
            "version": v.pick([1], [5, 2026, 0, -1]),
            "mode": v.pick(MODES, ["dag"]),
            "params": v.lists(param, max_size=3),
            "timeout": v.pick(DURATIONS, BAD_DURATIONS),
            "maxParallel": v.pick([1, 4], [0, -1]),
            "failFast": v.pick([True, False]),
            "rollbackOnFailure": v.pick([True, False]),
            "template": v.mapping(command_fields(v)),
        },
    )
    document = st.fixed_dictionaries(
        {
            "apiVersion": v.pick(["szal.dev/v1alpha1"], ["v1"]),
            "kind": v.pick(["Workflow"], ["Job"]),
            "metadata": v.of(st.fixed_dictionaries({"name": v.pick(["wf"], ["Bad_Name"])})),
            "spec": v.of(spec),
        }
    )
    return document if noisy else document.map(_tidy)


def _tidy(document: dict[str, Any]) -> dict[str, Any]:
    """Remove the shape mistakes good values still make together, so many documents are valid.

    Unique step names, exactly one of command/script, children only in
    Hierarchical mode, dependsOn only in Dag mode. Mistakes across fields
    (an unknown dependency, a condition naming a step that may not have
    finished, trigger Any without dependsOn) are kept on purpose.
    """
    spec = document["spec"]
    mode = spec.get("mode", "Sequential")
    seen: set[str] = set()

    def command(fields: dict[str, Any]) -> None:
        if "command" in fields and "script" in fields:
            del fields["script"]
        if fields.get("command") == []:
            fields["command"] = ["true"]
        if "command" not in fields and "script" not in fields:
            fields["script"] = "echo ok"

    def visit(steps: list[dict[str, Any]], group_mode: str) -> None:
        for n, item in enumerate(steps):
            while item["name"] in seen:
                item["name"] = f"{item['name']}-{n}"
            seen.add(item["name"])
            command(item)
            if "rollback" in item:
                command(item["rollback"])
            if group_mode != "Dag":
                item.pop("dependsOn", None)
            if mode != "Hierarchical":
                item.pop("steps", None)
            elif "steps" in item:
                visit(item["steps"], item.get("mode", "Sequential"))

    visit(spec["steps"], mode)
    return document
