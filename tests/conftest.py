"""Fixtures shared by every fast test directory.

``validations`` counts whole-workflow validations: each one walks the step
tree exactly once (``szal.engine.checks._walk``), whoever calls it and
however it was imported, so the count is honest. The tests of the one way
in (``engine.admitting``) use it to pin one validation per ``szal run``,
per operator run start and per admission review.
"""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest

from szal.engine import checks


@pytest.fixture
def validations() -> Iterator[mock.MagicMock]:
    """A spy on the step-tree walk of every whole-workflow validation."""
    with mock.patch.object(checks, "_walk", wraps=checks._walk) as walk:
        yield walk
