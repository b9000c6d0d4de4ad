"""The schema migrations of both history stores: found, ordered and checked once.

The SQLite store (:mod:`szal.history.sqlite`) and the Postgres store
(:mod:`szal.history.postgres`) call :func:`load_migrations` with their
dialect and apply what it returns in their own way (SQLite statement by
statement inside its write lock, Postgres one transaction per file under an
advisory lock); both call :func:`refuse_newer` before applying anything.

Decisions:

- **Append-only numbered files**, ``migrations/<dialect>/NNNN_name.sql``,
  read as package resources (so they work from a wheel or a zip). A file
  already released may be applied in production databases: it is never
  edited, reordered or deleted; a change is a new file with the next number.
- **Numbers run 1, 2, 3 ... without gaps or repeats**, checked at load time:
  a gap is a packaging mistake that would otherwise skip a step on every
  fresh database. The store tests load them, so the mistake fails CI.
- **A checksum per file** (sha256 of its text). Postgres records it next to
  the version, so a file edited after release is visible in the database;
  the tests pin the released checksums of both dialects.
- **A database ahead of the code is refused** (:class:`SchemaTooNew`, naming
  both versions): an older Szál must not write to a schema it does not know.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from szal.history.store import SchemaTooNew

Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One bundled migration file: ``<version>_<name>.sql`` and its text."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the file's text, hex."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(dialect: Dialect) -> list[Migration]:
    """The bundled migrations of ``dialect``, in version order (1, 2, ... without gaps)."""
    folder = resources.files("szal.history").joinpath("migrations", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append(Migration(int(number), name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(
                f"{dialect} migration {migration.version}_{migration.name} out of sequence"
                f" (expected {expected})"
            )
    return found


def newest_version(known: list[Migration]) -> int:
    """The version a database has after every migration in ``known`` (0 if none)."""
    return known[-1].version if known else 0


def refuse_newer(current: int, known: list[Migration], where: str) -> None:
    """Raise :class:`SchemaTooNew` when the database at ``where`` is ahead of ``known``."""
    newest = newest_version(known)
    if current > newest:
        raise SchemaTooNew(
            f"history database {where} is at schema version {current},"
            f" newer than this Szál supports ({newest}): upgrade szal"
            " (a downgrade of the database is not supported)"
        )
