"""The harness behaves as Argo CD's Lua runtime does (deploy/argocd/harness).

Covers what the health checks rely on and what would make a check that
passes here fail in Argo CD: the sandbox of argocd-cm checks (no string or
math library, os limited to time and date, ``require "os"`` works), the
object as Lua sees it (integers print as integers, JSON null is absent,
arrays are 1-based), how the returned value is read (empty table, nil,
invalid status, wrong type, runtime errors, the 1 s deadline), terminating
objects, and the pinned gopher-lua version. Not covered: Argo CD's caching
of compiled scripts (no effect on results).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from tests.argocd.harness import ARGOCD, run_script

ARGO_CD_VERSION = "v3.6.1"
"""The Argo CD release whose go.mod the harness's pins were read from."""
GOPHER_LUA = "v1.1.2"
GOPHER_JSON = "v0.0.0-20190114024228-97fed8db8427"


def probe(
    tmp_path: Path, lua: str, obj: dict[str, Any] | None = None, **kw: bool
) -> dict[str, Any]:
    path = tmp_path / "probe.lua"
    path.write_text(lua)
    return run_script(path, [obj or {"metadata": {"name": "x"}}], **kw)[0]


def test_pins_are_argo_cds() -> None:
    gomod = (ARGOCD / "harness" / "go.mod").read_text()
    assert re.search(rf"github.com/yuin/gopher-lua {re.escape(GOPHER_LUA)}\n", gomod), gomod
    assert f"layeh.com/gopher-json {GOPHER_JSON}\n" in gomod
    assert ARGO_CD_VERSION in (ARGOCD / "harness" / "main.go").read_text()


def test_sandbox_of_argocd_cm_checks(tmp_path: Path) -> None:
    lua = (
        'local o = require("os")\n'
        "return {status = 'Healthy', message = table.concat({type(string), type(math),"
        " type(io), type(os.exit), type(os.time()), type(o.date)}, ',')}\n"
    )
    assert probe(tmp_path, lua)["message"] == "nil,nil,nil,nil,number,function"
    opened = probe(tmp_path, lua, open_libs=True)["message"]
    assert opened == "table,table,table,function,number,function"


def test_string_methods_fail_without_open_libs(tmp_path: Path) -> None:
    result = probe(tmp_path, 'return {status = "Healthy", message = ("a"):upper()}\n')
    assert result["status"] == "Unknown" and result["error"] is True
    opened = probe(
        tmp_path, 'return {status = "Healthy", message = ("a"):upper()}\n', open_libs=True
    )
    assert opened == {"status": "Healthy", "message": "A"}


def test_the_object_as_lua_sees_it(tmp_path: Path) -> None:
    obj = {
        "metadata": {"generation": 3, "gone": None},
        "status": {"ratio": 0.5, "list": ["a", "b"], "big": 12345678901},
    }
    lua = (
        "local s = obj.status\n"
        "return {status = 'Healthy', message = obj.metadata.generation .. ' '"
        " .. tostring(obj.metadata.gone) .. ' ' .. s.ratio .. ' ' .. s.list[1] .. #s.list"
        " .. ' ' .. s.big .. ' ' .. tostring(obj.metadata.generation == 3)}\n"
    )
    assert probe(tmp_path, lua, obj)["message"] == "3 nil 0.5 a2 12345678901 true"


@pytest.mark.parametrize(
    ("lua", "expected"),
    [
        ("return {}\n", {"status": "", "message": ""}),
        ("return nil\n", {"assessed": False}),
        (
            'return {status = "Fine"}\n',
            {"status": "Unknown", "message": "Lua returned an invalid health status"},
        ),
        (
            "return 1\n",
            {
                "status": "Unknown",
                "message": "expect table output from Lua script, not number",
                "error": True,
            },
        ),
        ("error('boom')\n", {"status": "Unknown", "message": "<string>:1: boom", "error": True}),
        ("local = \n", None),
    ],
)
def test_how_the_result_is_read(tmp_path: Path, lua: str, expected: dict[str, Any] | None) -> None:
    result = probe(tmp_path, lua)
    if expected is None:  # a syntax error
        assert result["status"] == "Unknown" and result["error"] is True, result
    else:
        assert result == expected


def test_a_script_that_never_ends_is_stopped_after_a_second(tmp_path: Path) -> None:
    result = probe(tmp_path, "while true do end\n")
    assert result["status"] == "Unknown" and "context deadline exceeded" in result["message"]


def test_terminating_objects(tmp_path: Path) -> None:
    lua = 'return {status = "Healthy", message = "fine"}\n'
    deleting = {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["a/b"]}}
    assert probe(tmp_path, lua, deleting) == {
        "status": "Progressing",
        "message": "Pending deletion; blocked by finalizers: a/b",
    }
    hook = {
        "metadata": {**deleting["metadata"], "finalizers": ["argocd.argoproj.io/hook-finalizer"]}
    }
    assert probe(tmp_path, lua, hook) == {"status": "Healthy", "message": "fine"}
    custom = 'return {status = "Healthy", message = "fine", deletionMessage = "going"}\n'
    assert probe(tmp_path, custom, deleting) == {"status": "Healthy", "message": "going"}
