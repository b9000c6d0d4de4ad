"""Format migrations: upgrade a stored Workflow from Szál's format revision n to the newest.

Szál's format revision is carried by ``apiVersion`` (``szal.dev/v1alpha1`` is
revision 1); it is *not* the author's ``spec.version``, which is the author's
own number for their definition (any integer >= 1, shown in
``status.workflow.version`` and filterable in history) and never read here.
When the shape of a definition changes, the code's :data:`CURRENT_FORMAT`
goes up by one, a new ``apiVersion`` names it, and a migration from the old
revision is registered here. Migrations run wherever a stored Workflow is
read (admission, the operator, the local runner, the history store), before
the pydantic models see it, so the models only ever describe the current
shape.

Rules (DESIGN.md section 4, "Migrations"):

* A migration is registered only as n -> n+1, in order, once: duplicates,
  gaps, and hops beyond the current revision are refused at registration.
* Upgrading to the current revision is a no-op; a stored definition in a
  newer format than the code knows is an error naming both; a missing hop
  names the revision it is missing from.
* Like database migrations, registered hops are append-only: once released,
  never edit one, add the next.

A Workflow document names its format by ``apiVersion``. A bare spec (a pinned
copy, a stored definition) carries no ``apiVersion``: it is read as the
current format unless the caller passes ``source_format``, the revision it
was stored in. Each hop receives a deep copy of the *spec* and returns the
new one; the registry then sets the document's ``apiVersion`` to the target
revision's, so a hop only reshapes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

CURRENT_FORMAT = 1
"""The newest format revision this Szál reads and writes."""

API_VERSIONS: Mapping[int, str] = {1: "szal.dev/v1alpha1"}
"""Format revision -> the ``apiVersion`` that names it."""

Definition = dict[str, Any]
Migration = Callable[[Definition], Definition]


class MigrationError(ValueError):
    """A definition that cannot be brought to the wanted format, or a bad registration."""


def _spec_of(definition: Definition) -> Definition:
    """A Workflow document's ``spec``, or the bare spec itself."""
    spec = definition.get("spec")
    if "kind" in definition and isinstance(spec, dict):
        return spec
    return definition


def definition_version(definition: Definition) -> int:
    """The author's ``spec.version`` of a Workflow document or a bare spec (default 1)."""
    value = _spec_of(definition).get("version", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MigrationError(f"invalid definition version {value!r}: must be an integer >= 1")
    return value


class MigrationRegistry:
    """Hops n -> n+1 up to ``current_format``; ``api_versions`` names each revision."""

    def __init__(
        self,
        current_format: int = CURRENT_FORMAT,
        api_versions: Mapping[int, str] = API_VERSIONS,
    ) -> None:
        if current_format < 1:
            raise MigrationError("the current format revision must be >= 1")
        self.current_format = current_format
        self.api_versions = dict(api_versions)
        self._revisions = {api: revision for revision, api in self.api_versions.items()}
        self._hops: dict[int, Migration] = {}

    def register(
        self, from_format: int, to_format: int | None = None
    ) -> Callable[[Migration], Migration]:
        """Decorator registering the hop ``from_format`` -> ``from_format + 1``."""
        target = from_format + 1 if to_format is None else to_format
        if target != from_format + 1:
            raise MigrationError(
                f"migrations go one format revision at a time: {from_format} -> "
                f"{from_format + 1}, not {from_format} -> {target}"
            )
        if from_format < 1:
            raise MigrationError(f"no format revision {from_format}: revisions start at 1")
        if target > self.current_format:
            raise MigrationError(
                f"migration {from_format} -> {target} goes beyond the current "
                f"format revision {self.current_format}"
            )
        if from_format in self._hops:
            raise MigrationError(f"migration {from_format} -> {target} is already registered")
        if self._hops and from_format != max(self._hops) + 1:
            expected = max(self._hops) + 1
            raise MigrationError(
                f"migrations are registered in order: expected {expected} -> {expected + 1}, "
                f"got {from_format} -> {target} (a gap)"
            )

        def decorator(func: Migration) -> Migration:
            self._hops[from_format] = func
            return func

        return decorator

    @property
    def revisions(self) -> list[int]:
        """The format revisions a hop is registered from, ascending."""
        return sorted(self._hops)

    def format_of(self, definition: Definition, source_format: int | None = None) -> int:
        """The format revision of ``definition``: its ``apiVersion``, else ``source_format``."""
        api = definition.get("apiVersion") if "kind" in definition else None
        if api is None:
            return self.current_format if source_format is None else source_format
        revision = self._revisions.get(api)
        if revision is None and not self._in_group(api):
            # Not a Szál apiVersion at all: the models refuse it, naming the field.
            return self.current_format
        if revision is None:
            known = ", ".join(self.api_versions[r] for r in sorted(self.api_versions))
            raise MigrationError(
                f"apiVersion {api!r} is not a format this Szál knows ({known}); "
                "a newer format needs a newer Szál"
            )
        return revision

    def _in_group(self, api: object) -> bool:
        """Whether ``api`` is in the API group of the known formats (``szal.dev/...``)."""
        groups = {known.partition("/")[0] for known in self.api_versions.values()}
        return isinstance(api, str) and api.partition("/")[0] in groups

    def upgrade(
        self,
        definition: Definition,
        target: int | None = None,
        *,
        source_format: int | None = None,
    ) -> Definition:
        """Return ``definition`` in format ``target`` (default: current), hop by hop."""
        goal = self.current_format if target is None else target
        revision = self.format_of(definition, source_format)
        if goal > self.current_format:
            raise MigrationError(
                f"cannot upgrade to format revision {goal}: this Szál knows "
                f"revisions up to {self.current_format}"
            )
        if revision > self.current_format:
            raise MigrationError(
                f"format revision {revision} is newer than this Szál supports "
                f"({self.current_format}); upgrade Szál"
            )
        if revision > goal:
            raise MigrationError(
                f"cannot downgrade a definition from format revision {revision} to {goal}"
            )
        if revision == goal:
            return definition
        document = copy.deepcopy(definition)
        spec = _spec_of(document)
        is_document = spec is not document
        while revision < goal:
            hop = self._hops.get(revision)
            if hop is None:
                raise MigrationError(
                    f"no migration from format revision {revision} to {revision + 1}"
                )
            spec = hop(copy.deepcopy(spec))
            revision += 1
        if not is_document:
            return spec
        document["spec"] = spec
        if goal in self.api_versions:
            document["apiVersion"] = self.api_versions[goal]
        return document


#: The registry the runners use. Revision 1 is the first format: no hops yet.
default_registry = MigrationRegistry()


def upgrade(
    definition: Definition, target: int | None = None, *, source_format: int | None = None
) -> Definition:
    """Upgrade with the default registry."""
    return default_registry.upgrade(definition, target, source_format=source_format)
