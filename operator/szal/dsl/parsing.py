"""From condition text to a :class:`~szal.dsl.Condition`: lark parse, AST, checks.

Called by the spec layer when it validates a `when` and by the engine when it
plans; both go through :func:`compile_condition`, which caches by source text
in a bounded LRU, so a Workflow's conditions are parsed once per process.
:func:`parse_condition` is the same without the cache.

Decisions:

* The grammar (``condition.lark``) is LALR(1) with lark's contextual lexer:
  linear-time parsing, and a transformer run during the parse builds the AST
  directly, without an intermediate parse tree. The parser itself is built
  lazily on first use, once per process.
* Precedence, loosest first: ``||``/``or`` < ``&&``/``and`` < comparisons <
  prefix ``!``/``not`` < member access and indexing. As in the seed, ``!``
  and ``not`` bind tighter than comparisons: ``!x == 'a'`` is
  ``(!x) == 'a'``. Comparisons do not chain (``a < b < c`` is an error).
* ``not in`` versus prefix ``not``: a prefix ``not`` only ever starts an
  operand, and the operator ``not in`` only ever follows one, so the grammar
  is unambiguous. Consequently ``not x in y`` is ``(not x) in y`` — the same
  rule as ``!x == 'a'`` — and the membership test is negated with
  ``x not in y`` or ``not (x in y)``. ``x not in y`` is exactly
  ``!(x in y)``; likewise ``!=`` is exactly ``!(==)``.
* Keywords (``and or not in contains true false null``) are whole words:
  ``order`` and ``nothing`` are names, ``x ornot y`` is an error. After a
  dot any word is a key, keyword or not, and it may start with a digit
  (``steps.1st-build.phase``).
* Names may contain ``-`` (``steps.unit-test.phase``). With no arithmetic,
  a ``-`` is otherwise only the sign of a number literal written against its
  digits: ``params.a-1`` is the param ``a-1``, ``x == -1`` compares with
  minus one, and ``- 1`` or ``-x`` is an error.
* Names are checked here, not at evaluation: the root must be ``params``,
  ``steps`` or ``run``; ``params.<p>`` and ``steps.<s>.<field>`` need their
  names as constants (``.name`` or ``['name']``), because a reference the
  validator cannot see is a check it cannot make; a step's field is one of
  phase, outputs, exitCode, attempts; ``run.<x>`` is name, namespace, phase or failedSteps
  (the last two only in finally steps: the validator checks that).
  What lies below ``outputs`` (or a param's value) is data and is not checked.
* Strings take single or double quotes and the escapes ``\\n \\t \\r \\\\
  \\' \\" \\uXXXX`` plus JSON's ``\\b \\f \\/``, so a JSON string pastes as is;
  ``\\uD83D\\uDE00`` pairs join into one character. Any other escape is an
  error pointing at the backslash, not a silent literal.
* Every error is a :class:`~szal.dsl.ConditionError` whose message reads
  ``<what> at line L, column C[: <hint>]``, e.g. ``unknown name 'foo' at
  line 1, column 1: expected params, steps, run or matrix``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib import resources
from typing import Final, cast

import lark
from lark import Token, v_args

from .conditions import Condition
from .errors import ConditionError
from .nodes import (
    Access,
    And,
    Compare,
    Expr,
    ListExpr,
    Literal,
    Not,
    Or,
    Position,
    Reference,
    Variable,
)

CACHE_SIZE: Final = 1024
"""How many distinct condition texts :func:`compile_condition` keeps compiled."""

STEP_FIELDS: Final = ("phase", "outputs", "exitCode", "attempts")
RUN_FIELDS: Final = ("name", "namespace", "phase", "failedSteps")
ROOTS: Final = ("params", "steps", "run", "matrix")

# The usual C escapes plus those of JSON (\b, \f, \/), so a JSON string pastes as is.
_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "/": "/",
    "\\": "\\",
    "'": "'",
    '"': '"',
}
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


class _Invalid(Exception):
    """Raised inside the parse; turned into a ConditionError with the source."""

    def __init__(self, what: str, position: Position | None, hint: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.position = position
        self.hint = hint


def _position(token: Token) -> Position:
    # Tokens from the lexer always carry a position; 1 is only a type-level fallback.
    return (token.line or 1, token.column or 1)


def _decode_string(token: Token) -> str:
    """The value of a quoted string token, with its escapes resolved."""
    text = str(token)
    body = text[1:-1]
    if "\\" not in body:
        return body
    line, column = _position(token)
    parts: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            parts.append(char)
            index += 1
            continue
        # The lexer guarantees a character after every backslash.
        escape = body[index + 1]
        where = (line, column + 1 + index)
        if escape in _ESCAPES:
            parts.append(_ESCAPES[escape])
            index += 2
        elif escape == "u":
            digits = body[index + 2 : index + 6]
            if len(digits) != 4 or not _HEX_DIGITS.issuperset(digits):
                raise _Invalid(
                    "invalid escape '\\u' (it needs four hex digits, as in \\u00e9)", where
                )
            parts.append(chr(int(digits, 16)))
            index += 6
        else:
            raise _Invalid(
                f"invalid escape '\\{escape}'",
                where,
                "use \\n, \\t, \\r, \\b, \\f, \\/, \\\\, \\', \\\" or \\uXXXX",
            )
    decoded = "".join(parts)
    # Join UTF-16 surrogate pairs written as two \u escapes (JSON style).
    return decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _is_constant_key(expr: Expr) -> bool:
    return isinstance(expr, Literal) and type(expr.value) in (str, int)


@v_args(inline=True)
class _Builder(lark.Transformer[Token, Expr]):
    """Builds AST nodes while the LALR parser reduces; holds no state."""

    def or_(self, left: Expr, right: Expr) -> Expr:
        if isinstance(left, Or):
            return Or((*left.operands, right))
        return Or((left, right))

    def and_(self, left: Expr, right: Expr) -> Expr:
        if isinstance(left, And):
            return And((*left.operands, right))
        return And((left, right))

    def eq(self, left: Expr, right: Expr) -> Expr:
        return Compare("==", left, right)

    def ne(self, left: Expr, right: Expr) -> Expr:
        return Compare("!=", left, right)

    def lt(self, left: Expr, right: Expr) -> Expr:
        return Compare("<", left, right)

    def le(self, left: Expr, right: Expr) -> Expr:
        return Compare("<=", left, right)

    def gt(self, left: Expr, right: Expr) -> Expr:
        return Compare(">", left, right)

    def ge(self, left: Expr, right: Expr) -> Expr:
        return Compare(">=", left, right)

    def in_(self, left: Expr, right: Expr) -> Expr:
        return Compare("in", left, right)

    def not_in(self, left: Expr, right: Expr) -> Expr:
        return Compare("not in", left, right)

    def contains(self, left: Expr, right: Expr) -> Expr:
        return Compare("contains", left, right)

    def not_(self, operand: Expr) -> Expr:
        return Not(operand)

    def member(self, target: Expr, key: Token) -> Expr:
        if isinstance(target, Variable):
            return Variable(
                target.root, (*target.keys, str(key)), (*target.positions, _position(key))
            )
        return Access(target, Literal(str(key), _position(key)))

    def index(self, target: Expr, key: Expr) -> Expr:
        if isinstance(target, Variable) and isinstance(key, Literal) and _is_constant_key(key):
            position = key.position if key.position is not None else target.positions[-1]
            return Variable(target.root, (*target.keys, key.value), (*target.positions, position))
        return Access(target, key)

    def name(self, token: Token) -> Expr:
        return Variable(str(token), (), (_position(token),))

    def string(self, token: Token) -> Expr:
        return Literal(_decode_string(token), _position(token))

    def integer(self, token: Token) -> Expr:
        return Literal(int(token), _position(token))

    def float(self, token: Token) -> Expr:
        return Literal(float(token), _position(token))

    def true(self, token: Token) -> Expr:
        return Literal(True, _position(token))

    def false(self, token: Token) -> Expr:
        return Literal(False, _position(token))

    def null(self, token: Token) -> Expr:
        return Literal(None, _position(token))

    def list(self, *items: Expr | None) -> Expr:
        present = tuple(item for item in items if item is not None)
        if all(isinstance(item, Literal) for item in present):
            return Literal(tuple(item.value for item in present if isinstance(item, Literal)))
        return ListExpr(present)


@functools.cache
def _parser() -> lark.Lark:
    grammar = resources.files(__package__).joinpath("condition.lark").read_text("utf-8")
    return lark.Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        transformer=_Builder(),
        maybe_placeholders=True,
    )


# What the parser expected, in words: terminals that can start an operand
# collapse into "a value", binary operators into "an operator".
_VALUE_STARTS: Final = frozenset(
    {"NAME", "STRING", "INT", "FLOAT", "TRUE", "FALSE", "NULL", "_LSQB", "_LPAR", "_BANG"}
)
_OPERATORS: Final = frozenset(
    {
        "_OR",
        "_OR_OP",
        "_AND",
        "_AND_OP",
        "_EQ",
        "_NE",
        "_LT",
        "_LE",
        "_GT",
        "_GE",
        "_IN",
        "_CONTAINS",
    }
)
_CLOSERS: Final = {"_RPAR": "')'", "_RSQB": "']'", "_COMMA": "','"}
_TYPO_HINTS: Final = {
    "=": "did you mean '=='?",
    "&": "did you mean '&&'?",
    "|": "did you mean '||'?",
    "-": "'-' is only allowed in names and as the sign of a number (there is no arithmetic)",
}


def _expected(names: Iterable[str]) -> str | None:
    expected = set(names)
    words: list[str] = []
    if expected & _VALUE_STARTS:
        words.append("a value")
    else:
        if "MEMBER" in expected:
            words.append("a name")
        if "_IN" in expected and not (expected & (_OPERATORS - {"_IN"})):
            words.append("'in'")
        elif expected & _OPERATORS:
            words.append("an operator")
    words.extend(word for name, word in _CLOSERS.items() if name in expected)
    if "$END" in expected:
        words.append("the end of the condition")
    if not words:
        return None
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return f"expected {listed}"


def _end_position(source: str) -> Position:
    # Just after the last visible character: where the missing part belongs.
    lines = source.rstrip().split("\n")
    return (len(lines), len(lines[-1]) + 1)


def _syntax_error(source: str, error: lark.exceptions.UnexpectedInput) -> _Invalid:
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        position = (int(error.line), int(error.column))
        char = error.char
        if char in "'\"":
            return _Invalid("unterminated string", position, "close it on the same line")
        return _Invalid(f"unexpected character {char!r}", position, _TYPO_HINTS.get(char))
    if isinstance(error, lark.exceptions.UnexpectedToken):
        token = error.token
        hint = _expected(error.expected)
        if token.type == "$END":
            return _Invalid("unexpected end of condition", _end_position(source), hint)
        return _Invalid(f"unexpected token {str(token)!r}", _position(token), hint)
    if isinstance(error, lark.exceptions.UnexpectedEOF):
        return _Invalid("unexpected end of condition", _end_position(source))
    return _Invalid(str(error), None)


def _reference(variable: Variable) -> Reference:
    """The checked reference a name chain makes, or _Invalid saying why not."""
    root, keys, positions = variable.root, variable.keys, variable.positions
    if root not in ROOTS:
        raise _Invalid(
            f"unknown name {root!r}", positions[0], "expected params, steps, run or matrix"
        )
    if not keys or not isinstance(keys[0], str):
        what = {
            "params": "a param",
            "steps": "a step",
            "run": "a field",
            "matrix": "a matrix param",
        }[root]
        raise _Invalid(
            f"{root!r} needs {what} name",
            positions[1] if keys else positions[0],
            f"write {root}.<name> or {root}['<name>']",
        )
    name = keys[0]
    if root == "params":
        return Reference("params", name, None)
    if root == "matrix":  # a matrix instance's own value (szal.engine.matrices)
        return Reference("matrix", name, None)
    if root == "run":
        if name not in RUN_FIELDS:
            raise _Invalid(
                f"unknown field 'run.{name}'",
                positions[1],
                "expected " + ", ".join(RUN_FIELDS[:-1]) + " or " + RUN_FIELDS[-1],
            )
        return Reference("run", name, None)
    expected_fields = "expected " + ", ".join(STEP_FIELDS[:-1]) + " or " + STEP_FIELDS[-1]
    if len(keys) < 2:
        raise _Invalid(f"'steps.{name}' needs a field", positions[1], expected_fields)
    step_field = keys[1]
    if step_field not in STEP_FIELDS or not isinstance(step_field, str):
        raise _Invalid(
            f"unknown step field {step_field!r} in 'steps.{name}'", positions[2], expected_fields
        )
    return Reference("steps", name, step_field)


def _references(expression: Expr) -> frozenset[Reference]:
    found: set[Reference] = set()
    pending = [expression]
    while pending:
        node = pending.pop()
        if isinstance(node, Variable):
            found.add(_reference(node))
        # Reversed so that the leftmost bad name is the one reported.
        pending.extend(reversed(node.children()))
    return frozenset(found)


def _describe(source: str, invalid: _Invalid) -> ConditionError:
    line, column = invalid.position if invalid.position is not None else (None, None)
    message = invalid.what
    if line is not None:
        message += f" at line {line}, column {column}"
    if invalid.hint:
        message += f": {invalid.hint}"
    return ConditionError(source, message, line, column)


def parse_condition(source: str) -> Condition | None:
    """Compile ``source`` without the cache; None when it is empty or blank.

    Raises :class:`~szal.dsl.ConditionError` for a syntax error, a bad escape,
    or a name the context cannot provide.
    """
    if not source or source.isspace():
        return None
    try:
        try:
            expression = cast(Expr, _parser().parse(source))
        except lark.exceptions.UnexpectedInput as error:
            raise _syntax_error(source, error) from None
        references = _references(expression)
    except _Invalid as invalid:
        raise _describe(source, invalid) from None
    return Condition(source, expression, references)


@functools.lru_cache(maxsize=CACHE_SIZE)
def compile_condition(source: str) -> Condition | None:
    """:func:`parse_condition` behind a bounded LRU cache keyed by the source text.

    Equal texts give the very same :class:`~szal.dsl.Condition`. Errors are
    not cached: an invalid text is parsed again each time it is compiled.
    """
    return parse_condition(source)
