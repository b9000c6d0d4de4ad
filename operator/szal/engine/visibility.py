"""Which steps a step can see: the steps certain to have finished before it starts.

A step's ``when`` may name only such steps (the validation rule of
:func:`szal.engine.checks._certainly_before`, DESIGN.md section 4 "when
details"), and since issue 12 its ``SZAL_CONTEXT`` carries only those
steps too: upstream (transitively) in a Dag group, the earlier siblings
(with everything inside them) in a Sequential group and at the
Hierarchical top level, nothing in a Parallel group; plus, in a nested
group, the owner (parent) and whatever the owner itself sees.

:func:`visible_ranges` computes this for every step at once, when the
workflow is compiled (:mod:`szal.engine.compiled`). Steps are numbered in
definition order, parents before their children (a depth-first walk), so a
step's subtree is one contiguous range of indexes and "every earlier
sibling with its subtree" is one range too. Each step's set is kept as a
short tuple of disjoint, sorted ``range`` objects, and equal tuples are
shared: a 5,000-step Sequential run holds 5,000 one-range tuples, a
Parallel one the empty tuple 5,000 times, never a quadratic table. A Dag
group merges its dependencies' ranges, so a chain of 5,000 is still one
range per step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Group modes as compiled.py numbers them (duplicated to avoid an import cycle).
_SEQUENTIAL = 0
_PARALLEL = 1
_DAG = 2

Ranges = tuple[range, ...]


def merge_ranges(pieces: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint, coalesced ``(start, stop)`` pairs covering ``pieces``."""
    out: list[tuple[int, int]] = []
    for start, stop in sorted(p for p in pieces if p[0] < p[1]):
        if out and start <= out[-1][1]:
            if stop > out[-1][1]:
                out[-1] = (out[-1][0], stop)
        else:
            out.append((start, stop))
    return out


def _subtree_ends(children: Sequence[Sequence[int]]) -> list[int]:
    """``end[i]``: one past the last index of step ``i``'s subtree."""
    n = len(children)
    end = list(range(1, n + 1))
    for i in range(n - 1, -1, -1):  # children come after their parent
        for c in children[i]:
            end[i] = max(end[i], end[c])
    return end


def _dag_upstream(
    group: Sequence[int], deps: Sequence[Sequence[int]], end: Sequence[int]
) -> dict[int, list[tuple[int, int]]]:
    """Every member's transitive upstream in one Dag group, as merged subtree ranges."""
    in_group = set(group)
    pending = {m: sum(1 for d in deps[m] if d in in_group) for m in group}
    dependents: dict[int, list[int]] = {m: [] for m in group}
    for m in group:
        for d in deps[m]:
            if d in in_group:
                dependents[d].append(m)
    ready = [m for m in group if pending[m] == 0]
    upstream: dict[int, list[tuple[int, int]]] = {}
    while ready:
        m = ready.pop()
        pieces: list[tuple[int, int]] = []
        for d in deps[m]:
            if d in upstream:
                pieces.append((d, end[d]))
                pieces.extend(upstream[d])
        upstream[m] = merge_ranges(pieces)
        for after in dependents[m]:
            pending[after] -= 1
            if pending[after] == 0:
                ready.append(after)
    for m in group:  # a cycle (refused by validation): such steps see no sibling
        upstream.setdefault(m, [])
    return upstream


def visible_ranges(
    children: Sequence[Sequence[int]],
    deps: Sequence[Sequence[int]],
    group_of: Sequence[int],
    members: Sequence[Sequence[int]],
    group_mode: Sequence[int],
    group_owner: Sequence[int],
) -> tuple[Ranges, ...]:
    """Per step (indexed like ``compiled.names``), the steps it can see, as ranges."""
    n = len(children)
    end = _subtree_ends(children)
    local: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for g, group in enumerate(members):
        mode = group_mode[g]
        if mode == _SEQUENTIAL and group:
            first = group[0]
            for member in group:
                local[member] = [(first, member)]
        elif mode == _DAG:
            for member, pieces in _dag_upstream(group, deps, end).items():
                local[member] = pieces
        elif mode != _PARALLEL:
            raise ValueError(f"unknown group mode {mode}")
    shared: dict[tuple[tuple[int, int], ...], Ranges] = {}
    pairs: list[tuple[tuple[int, int], ...]] = [()] * n
    out: list[Ranges] = [()] * n
    for i in range(n):  # an owner comes before its children
        owner = group_owner[group_of[i]]
        pieces = list(local[i])
        if owner >= 0:
            pieces.append((owner, owner + 1))
            pieces.extend(pairs[owner])
        key = tuple(merge_ranges(pieces))
        pairs[i] = key
        ranges = shared.get(key)
        if ranges is None:
            ranges = shared[key] = tuple(range(a, b) for a, b in key)
        out[i] = ranges
    return tuple(out)
