"""Definition versions: upgrade a stored Workflow from version n to the newest.

A Workflow's ``spec.version`` says which shape its definition has. When the
shape changes, the code's :data:`CURRENT_VERSION` goes up by one and a
migration from the old version is registered here. Migrations run wherever a
stored Workflow is read (admission, the operator, the local runner, the
history store), before the pydantic models see it, so the models only ever
describe the current shape.

Rules (DESIGN.md section 4, "Migrations"):

* A migration is registered only as n -> n+1, in order, once: duplicates,
  gaps, and hops beyond the current version are refused at registration.
* Upgrading to the current version is a no-op; a stored definition newer
  than the code is an error naming both versions; a missing hop names the
  version it is missing from.
* Like database migrations, registered hops are append-only: once released,
  never edit one, add the next.

Each hop receives a deep copy of the *spec* (the mapping holding ``version``,
also when a whole Workflow document is upgraded) and returns the new one; the
registry sets the version number afterwards, so a hop only reshapes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

CURRENT_VERSION = 1

Definition = dict[str, Any]
Migration = Callable[[Definition], Definition]


class MigrationError(ValueError):
    """A definition that cannot be brought to the wanted version, or a bad registration."""


def _spec_of(definition: Definition) -> Definition:
    """The mapping that holds ``version``: a Workflow's ``spec``, or the spec itself."""
    spec = definition.get("spec")
    if "kind" in definition and isinstance(spec, dict):
        return spec
    return definition


def definition_version(definition: Definition) -> int:
    """The definition version of a Workflow document or a bare spec (default 1)."""
    value = _spec_of(definition).get("version", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MigrationError(f"invalid definition version {value!r}: must be an integer >= 1")
    return value


class MigrationRegistry:
    """Hops n -> n+1 up to ``current_version``."""

    def __init__(self, current_version: int = CURRENT_VERSION) -> None:
        if current_version < 1:
            raise MigrationError("the current definition version must be >= 1")
        self.current_version = current_version
        self._hops: dict[int, Migration] = {}

    def register(
        self, from_version: int, to_version: int | None = None
    ) -> Callable[[Migration], Migration]:
        """Decorator registering the hop ``from_version`` -> ``from_version + 1``."""
        target = from_version + 1 if to_version is None else to_version
        if target != from_version + 1:
            raise MigrationError(
                f"migrations go one version at a time: {from_version} -> {from_version + 1}, "
                f"not {from_version} -> {target}"
            )
        if from_version < 1:
            raise MigrationError(f"no definition version {from_version}: versions start at 1")
        if target > self.current_version:
            raise MigrationError(
                f"migration {from_version} -> {target} goes beyond the current "
                f"version {self.current_version}"
            )
        if from_version in self._hops:
            raise MigrationError(f"migration {from_version} -> {target} is already registered")
        if self._hops and from_version != max(self._hops) + 1:
            expected = max(self._hops) + 1
            raise MigrationError(
                f"migrations are registered in order: expected {expected} -> {expected + 1}, "
                f"got {from_version} -> {target} (a gap)"
            )

        def decorator(func: Migration) -> Migration:
            self._hops[from_version] = func
            return func

        return decorator

    @property
    def versions(self) -> list[int]:
        """The versions a hop is registered from, ascending."""
        return sorted(self._hops)

    def upgrade(self, definition: Definition, target: int | None = None) -> Definition:
        """Return ``definition`` at version ``target`` (default: current), hop by hop."""
        goal = self.current_version if target is None else target
        version = definition_version(definition)
        if goal > self.current_version:
            raise MigrationError(
                f"cannot upgrade to definition version {goal}: this Szál knows "
                f"versions up to {self.current_version}"
            )
        if version > self.current_version:
            raise MigrationError(
                f"definition version {version} is newer than this Szál supports "
                f"({self.current_version}); upgrade Szál"
            )
        if version > goal:
            raise MigrationError(f"cannot downgrade a definition from version {version} to {goal}")
        if version == goal:
            return definition
        document = copy.deepcopy(definition)
        spec = _spec_of(document)
        is_document = spec is not document
        while version < goal:
            hop = self._hops.get(version)
            if hop is None:
                raise MigrationError(
                    f"no migration from definition version {version} to {version + 1}"
                )
            spec = hop(copy.deepcopy(spec))
            version += 1
            spec["version"] = version
        if not is_document:
            return spec
        document["spec"] = spec
        return document


#: The registry the runners use. Version 1 is the first shape: no hops yet.
default_registry = MigrationRegistry()


def upgrade(definition: Definition, target: int | None = None) -> Definition:
    """Upgrade with the default registry."""
    return default_registry.upgrade(definition, target)
