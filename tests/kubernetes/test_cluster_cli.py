"""The cluster CLI's messages and exit codes against local servers, and its pure parts.

Covers what the shared test cluster cannot show: an API server without the
szal.dev CRDs (every command says they are missing and how to install
them), credentials refused (401), a server that does not answer, a
kubeconfig that does not exist (exit 2); the completion logic
(:func:`complete`) offline; the line view of ``--watch`` in a pipe.

Not covered here: anything a real API server decides (e2e/test_cli_cluster.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.kubernetes.kubeconfigs import single
from tests.kubernetes.local_server import serving

from szal.cli import main
from szal.cli.cluster_completion_cmd import complete
from szal.cli.cluster_watch import Lines


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "config"
    path.write_text(single(server, {"token": "t"}))
    return path


async def _szal(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(list(args))

    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()


async def _not_found(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "kind": "Status",
            "reason": "NotFound",
            "message": "the server could not find the requested resource",
        },
        status=404,
    )


async def test_no_crds_installed(tmp_path: Path) -> None:
    async with serving(_not_found) as url:
        config = str(_kubeconfig(tmp_path, url))
        for args in (
            ["list"],
            ["get", "r"],
            ["cancel", "r"],
            ["logs", "r"],
            ["submit", "--from", "workflow/w"],
        ):
            code, _, err = await _szal(*args, "--kubeconfig", config)
            assert code == 1, args
            assert err.strip() == (
                "szal: the szal.dev CRDs are not installed in this cluster;"
                " install them with `szal crds | kubectl apply -f -`"
            ), args


async def test_refused_credentials_and_no_server(tmp_path: Path) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response(
            {"kind": "Status", "reason": "Unauthorized", "message": "Unauthorized"}, status=401
        )

    async with serving(refuse) as url:
        code, _, err = await _szal("list", "--kubeconfig", str(_kubeconfig(tmp_path, url)))
    assert code == 1 and err.startswith("szal: the API server refused the credentials")
    # The same port, now closed: nothing answers.
    code, _, err = await _szal("list", "--kubeconfig", str(_kubeconfig(tmp_path, url)))
    assert code == 1 and err.startswith("szal: cannot reach the API server") and "GET" in err
    code, _, err = await _szal("list", "--kubeconfig", str(tmp_path / "absent"))
    assert code == 2 and "absent" in err and "no such file" in err


@pytest.fixture
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, "http://127.0.0.1:9")))
    yield


def test_completion_offline(no_cluster: None) -> None:
    assert complete(["su"]) == ["submit", "suspend"]
    assert complete(["get", "-o", ""]) == ["wide", "json", "yaml"]
    assert complete(["logs", "--f"]) == ["--follow"]
    assert complete(["list", "--context", ""]) == ["x"]
    assert complete(["get", ""]) == []  # the cluster is not there: nothing, no traceback
    assert complete(["nosuch", ""]) == []


def _run(phase: str, steps: dict[str, Any], message: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "steps": steps}
    if message:
        status["message"] = message
    return {"metadata": {"name": "r1"}, "status": status}


def test_watch_lines_print_each_change_once(capsys: pytest.CaptureFixture[str]) -> None:
    lines = Lines()
    lines(_run("Running", {"a": {"phase": "Running"}}))
    lines(_run("Running", {"a": {"phase": "Running"}}))
    lines(_run("Failed", {"a": {"phase": "Failed", "message": "exit code 3"}}, "step a failed"))
    printed = [line.split("  ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert printed == [
        "a  - -> Running",
        "run r1  - -> Running",
        "a  Running -> Failed: exit code 3",
        "run r1  Running -> Failed: step a failed",
    ]


def test_cancel_skip_finally_patches_skip_finally_too() -> None:
    from szal.cli import build_parser
    from szal.cli.cluster_control_cmd import patch_for

    plain = build_parser().parse_args(["cancel", "r1"])
    assert patch_for("cancel", plain) == ({"spec": {"cancel": True}}, "cancelled")
    skipping = build_parser().parse_args(["cancel", "r1", "r2", "--skip-finally"])
    assert skipping.runs == ["r1", "r2"]
    assert patch_for("cancel", skipping) == (
        {"spec": {"cancel": True, "skipFinally": True}},
        "cancelled",
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["suspend", "r1", "--skip-finally"])
