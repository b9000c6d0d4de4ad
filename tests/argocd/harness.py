"""Szál's Argo CD health checks, run in the interpreter Argo CD embeds.

``deploy/argocd/harness`` is a small Go program on gopher-lua (the version
Argo CD pins) that runs a health script over objects the way Argo CD's
controller does (sandboxed libraries, the object decoded into the global
``obj``, the returned table read as ``{status, message}``). Its build script
compiles it from the Go module proxy into ``~/.cache/szal`` once and
returns at once when warm; :func:`harness_binary` calls it. A missing Go
toolchain or a failed build raises with the build's output: tests that need
the harness fail, never skip.

Used by ``tests/argocd`` (fixtures) and ``e2e/test_argocd_health.py``
(objects captured from real runs on the test cluster).
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "deploy" / "argocd"
BUILD = ARGOCD / "harness" / "build.sh"
Kind = Literal["Workflow", "WorkflowRun"]
KINDS: tuple[Kind, ...] = ("Workflow", "WorkflowRun")


def script(kind: Kind) -> Path:
    """The health check of one kind, as shipped."""
    return ARGOCD / "health" / "szal.dev" / kind / "health.lua"


@functools.cache
def harness_binary() -> Path:
    """Build the harness if the cache is cold; its path."""
    done = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(
            f"{BUILD.relative_to(REPO)} failed (exit {done.returncode}):\n{done.stderr}"
        )
    path = Path(done.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise RuntimeError(f"{BUILD.relative_to(REPO)} printed {path}, which is not a file")
    return path


def run_script(
    lua: Path, objects: Iterable[Mapping[str, Any]], *, open_libs: bool = False
) -> list[dict[str, Any]]:
    """Run one Lua health script over objects; one result per object."""
    items = list(objects)
    args = [str(harness_binary()), *(["-open-libs"] if open_libs else []), str(lua)]
    done = subprocess.run(
        args,
        input="".join(json.dumps(o) + "\n" for o in items),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"argocd-health exited {done.returncode}: {done.stderr}")
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(items), (items, done.stdout)
    return results


def assess(
    objects: Iterable[Mapping[str, Any]], *, open_libs: bool = False
) -> list[dict[str, Any]]:
    """Argo CD's health of Szál objects, each by its kind's shipped script."""
    items = list(objects)
    out: list[dict[str, Any] | None] = [None] * len(items)
    for kind in KINDS:
        picked = [i for i, o in enumerate(items) if o.get("kind") == kind]
        if picked:
            results = run_script(script(kind), [items[i] for i in picked], open_libs=open_libs)
            for i, result in zip(picked, results, strict=True):
                out[i] = result
    missing = [items[i].get("kind") for i, r in enumerate(out) if r is None]
    if missing:
        raise ValueError(f"no Szál health check for kind(s) {missing}")
    return [r for r in out if r is not None]


def health(obj: Mapping[str, Any], *, open_libs: bool = False) -> dict[str, Any]:
    """Argo CD's health of one Szál object: {"status": ..., "message": ...}."""
    return assess([obj], open_libs=open_libs)[0]
