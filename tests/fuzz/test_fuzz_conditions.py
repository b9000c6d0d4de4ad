"""Fuzzing the conditions DSL: any text either compiles or raises ConditionError.

Hypothesis feeds `when` texts built from the DSL's tokens and raw text to
:func:`szal.dsl.compile_condition`: it must return a Condition or raise
:class:`ConditionError` with a message (never another exception, never a
hang: pytest's timeout bounds the run), and a compiled condition evaluates
to a bool against any context, including contexts with junk where values
should be, without raising. ``SZAL_FUZZ_EXAMPLES`` scales it as in
test_fuzz_specs.py.

Not covered: whether a reference names a real step (the spec fuzzer does that).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fuzz.strategies import conditions, junk

from szal.dsl import ConditionError, compile_condition

EXAMPLES = int(os.environ.get("SZAL_FUZZ_EXAMPLES", "200")) * 2
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
contexts = st.fixed_dictionaries(
    {
        "params": st.dictionaries(st.sampled_from(["env", "n"]), junk, max_size=2),
        "steps": st.dictionaries(
            st.sampled_from(["a", "b"]),
            st.fixed_dictionaries(
                {"phase": junk, "exitCode": junk, "attempts": junk, "outputs": junk}
            ),
            max_size=2,
        ),
        "run": st.fixed_dictionaries({"name": junk, "namespace": junk}),
    }
)


@FUZZ
@given(source=conditions, context=contexts)
def test_any_text_compiles_or_is_refused_and_evaluation_never_raises(
    source: str, context: dict[str, Any]
) -> None:
    try:
        condition = compile_condition(source)
    except ConditionError as exc:
        assert exc.message and exc.source == source
        return
    if condition is None:  # empty or blank means no condition (DESIGN §4)
        assert not source.strip()
        return
    assert isinstance(condition.evaluate(context), bool)
