"""Kubeconfig files for the credential and CLI tests (unit and e2e).

:func:`kubeconfig_text` writes clusters, users and contexts given as plain
dicts by name; :func:`exec_user` is a user whose credentials come from an
exec plugin script (client.authentication.k8s.io/v1).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def kubeconfig_text(
    clusters: Mapping[str, Mapping[str, Any]],
    users: Mapping[str, Mapping[str, Any]],
    contexts: Mapping[str, Mapping[str, Any]],
    current: str | None = None,
) -> str:
    """A kubeconfig as YAML text; empty sections are left out."""
    config: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    for key, entries, inner in (
        ("clusters", clusters, "cluster"),
        ("users", users, "user"),
        ("contexts", contexts, "context"),
    ):
        if entries:
            config[key] = [{"name": k, inner: dict(v)} for k, v in entries.items()]
    if current:
        config["current-context"] = current
    return yaml.safe_dump(config)


def single(
    cluster: str | Mapping[str, Any], user: Mapping[str, Any], namespace: str | None = None
) -> str:
    """One cluster ``c`` (a server URL or its entry), one user ``u``, current context ``x``."""
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    entry = {"server": cluster} if isinstance(cluster, str) else dict(cluster)
    return kubeconfig_text({"c": entry}, {"u": user}, {"x": context}, "x")


def exec_user(script: Path, env: Mapping[str, Path | str]) -> dict[str, Any]:
    """A user whose token is printed by ``script`` (an ExecCredential)."""
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(script),
            "env": [{"name": k, "value": str(v)} for k, v in env.items()],
            "interactiveMode": "Never",
        }
    }
