"""The problems validation finds: :class:`SpecIssue` and :class:`WorkflowInvalid`.

Every check in the engine (shape errors mapped from pydantic in
:mod:`szal.engine.shapes`, whole-workflow checks in :mod:`szal.engine.checks`,
run params in :mod:`szal.engine.validation`) reports its findings as
:class:`SpecIssue` values; :func:`szal.engine.admitting.admit` returns them
all at once, and the CLI and the admission webhook print them. Kept apart
from the checks so that every layer above can name an issue without pulling
in the validators.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def printable(text: str) -> str:
    """``text`` as it may be shown on one line: control and separator characters escaped.

    Names and keys come from the user's document; a key such as ``"\\r"``
    printed raw would break the one-problem-per-line output of ``szal
    validate`` (the fuzz suite found it). Printable text is returned as is.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem in a definition.

    ``path`` locates it in the document (``spec.steps[build].dependsOn``),
    ``step`` names the step (None for workflow-level fields), ``field`` is
    the wire name of the field inside the step (or the workflow), ``message``
    says what is wrong.
    """

    path: str
    step: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{printable(self.field)}: " if self.field else ""
        if self.step is not None:
            return f"step {self.step!r}: {where}{self.message}"
        return f"{where}{self.message}"


class WorkflowInvalid(ValueError):
    """A definition with one or more :class:`SpecIssue`; ``str()`` lists them all."""

    def __init__(self, issues: Sequence[SpecIssue], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self.__str__())

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return "\n".join(f"{prefix}{issue}" for issue in self.issues)


@dataclass(frozen=True, slots=True)
class Known:
    """What the checks may rely on (all of it, unless shape errors hid a part).

    ``order``: every ``dependsOn`` and ``mode`` as written (else the checks of
    ordering are left out: ``when`` certainty, trigger Any, dependsOn outside
    Dag mode). ``names``: every step, by its name (else lookups by name are:
    an unknown step in ``dependsOn`` or ``when``).
    """

    order: bool = True
    names: bool = True


EVERYTHING = Known()


def raise_for_issues(issues: Iterable[SpecIssue], source: str | None = None) -> None:
    """Raise :class:`WorkflowInvalid` if there are any issues."""
    collected = list(issues)
    if collected:
        raise WorkflowInvalid(collected, source)


def prefixed(issue: SpecIssue, prefix: str) -> SpecIssue:
    """``issue`` of a bare spec, located under ``prefix`` (``spec.workflow``) instead."""
    path = issue.path[len("spec") :] if issue.path.startswith("spec") else "." + issue.path
    return SpecIssue(prefix + path, issue.step, issue.field, issue.message)
