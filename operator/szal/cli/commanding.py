"""What every subcommand module shares: the :class:`Subcommand` record and exit codes.

Kept apart from ``szal/cli/__init__.py`` so subcommand modules can import it
while ``__init__`` imports them (no import cycle).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

EXIT_OK = 0
"""Success (``szal run``: the run Succeeded)."""
EXIT_FAILED = 1
"""The run ended in another phase, or what was asked for was not found."""
EXIT_INVALID = 2
"""Invalid input: the message names the file, step and field. Nothing ran."""


@dataclass(frozen=True, slots=True)
class Subcommand:
    """One ``szal <name>``: its help, its arguments, and what it does."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]
