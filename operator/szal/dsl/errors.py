"""The one error the conditions DSL raises.

A `when` that does not parse, or that names something the engine cannot
provide, must stop validation with a message that points at the spot
(DESIGN §4: never a silently skipped check). Both cases raise
:class:`ConditionError` at compile time; evaluation itself never raises.

It subclasses :class:`ValueError` so callers that validate several fields can
catch invalid input in one place, and it keeps the parts (``source``,
``line``, ``column``, ``message``) apart so the spec layer can prefix the step
and field without parsing our text.
"""

from __future__ import annotations


class ConditionError(ValueError):
    """A condition that cannot be compiled.

    ``message`` is the human text and already names the position, e.g.
    ``unexpected token '&&' at line 1, column 5``; ``str(err)`` adds the source.
    ``line`` and ``column`` are 1-based, or None when no position applies.
    """

    source: str
    line: int | None
    column: int | None
    message: str

    def __init__(self, source: str, message: str, line: int | None, column: int | None) -> None:
        self.source = source
        self.message = message
        self.line = line
        self.column = column
        super().__init__(source, message, line, column)

    def __str__(self) -> str:
        return f"invalid condition {self.source!r}: {self.message}"

    def __reduce__(self) -> tuple[type[ConditionError], tuple[str, str, int | None, int | None]]:
        return (type(self), (self.source, self.message, self.line, self.column))
