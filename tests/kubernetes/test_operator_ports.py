"""A port the operator must listen on that is taken ends it at once, saying which.

Runs ``szal operator`` as a subprocess with a kubeconfig whose server is
never reached: the ports are bound before kopf starts, so the check needs no
cluster. Covers the metrics port, the development webhook port and the API port.

Not covered: the in-cluster webhook port (a pod's ports are its own).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml


@pytest.fixture
def taken() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


def _kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("flag", "extra"),
    [
        ("--metrics-port", ("--metrics-host", "127.0.0.1")),
        ("--webhook-port", ("--webhook-host", "127.0.0.1")),
        ("--api-port", ("--api-host", "127.0.0.1")),
    ],
)
def test_a_taken_port_exits_with_a_clear_error(
    tmp_path: Path, taken: int, flag: str, extra: tuple[str, ...]
) -> None:
    command = [sys.executable, "-m", "szal", "operator", "--kubeconfig", str(_kubeconfig(tmp_path))]
    command += ["--namespace", "ns", flag, str(taken), *extra]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert f"{flag} {taken}: cannot listen on 127.0.0.1:{taken}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
