"""Kubeconfig loading (kubernetes_asyncio's loader) and credential refresh, on local servers.

Covers: an exec credential plugin (a real script; its invocations counted)
and the client renewing after a 401 and after the ExecCredential's expiry;
one plugin run for a 401 seen twice; ``KUBECONFIG`` with two files (cluster
in one, user in the other) and kubectl's first-file current-context rule;
context selection and the error naming the contexts; ``proxy-url`` (the
request reaches the proxy) and ``tls-server-name`` (an HTTPS server whose
certificate names only that host); the kopf login handler's connection.

Not covered here: a real API server (e2e/test_credentials.py).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.kubernetes.kubeconfigs import exec_user, kubeconfig_text, single
from tests.kubernetes.local_server import serving

from szal.runners.kubernetes import tls
from szal.runners.kubernetes.client import ApiClient, RetrySettings, Unauthorized
from szal.runners.kubernetes.credentials import (
    CredentialsError,
    KubeconfigSource,
    kubeconfig_paths,
    load_credentials,
    ssl_context,
)
from szal.spec import BackoffSettings

FAST = RetrySettings(
    attempts=2,
    backoff=BackoffSettings("Exponential", delay=0.01, max_delay=0.02),
    request_timeout=5,
)

PLUGIN = """#!/bin/sh
echo run >> "$COUNT_FILE"
printf '{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
 "status": {"token": "%s"%s}}' "$(cat "$TOKEN_FILE")" "$(cat "$EXPIRY_FILE" 2>/dev/null)"
"""


class TokenServer:
    """Accepts only ``Bearer <accepted>``; 401 otherwise."""

    def __init__(self) -> None:
        self.accepted = "t1"
        self.seen: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != f"Bearer {self.accepted}":
            return web.json_response(
                {"kind": "Status", "reason": "Unauthorized", "message": "no"}, status=401
            )
        return web.json_response({"kind": "Namespace", "path": request.path})


@pytest.fixture
async def token_server() -> AsyncIterator[tuple[TokenServer, str]]:
    server = TokenServer()
    async with serving(server.handle) as url:
        yield server, url


class Plugin:
    """An exec plugin script printing the token in ``token`` (invocations in ``count``)."""

    def __init__(self, root: Path) -> None:
        self.script = root / "plugin.sh"
        self.script.write_text(PLUGIN)
        self.script.chmod(self.script.stat().st_mode | stat.S_IEXEC)
        self.token = root / "token"
        self.count_file = root / "count"
        self.expiry = root / "expiry"

    @property
    def runs(self) -> int:
        return len(self.count_file.read_text().split()) if self.count_file.exists() else 0

    def user(self) -> dict[str, Any]:
        env = {"COUNT_FILE": self.count_file, "TOKEN_FILE": self.token, "EXPIRY_FILE": self.expiry}
        return exec_user(self.script, env)


async def test_exec_plugin_token_is_renewed_after_401(
    tmp_path: Path, token_server: tuple[TokenServer, str]
) -> None:
    server, url = token_server
    plugin = Plugin(tmp_path)
    plugin.token.write_text("t1")
    path = tmp_path / "config"
    path.write_text(single(url, plugin.user()))
    creds = await load_credentials(path)
    assert (creds.token, creds.server, plugin.runs) == ("t1", url, 1)
    async with ApiClient(creds, retry=FAST) as client:
        assert (await client.get("/api/v1/namespaces/a"))["path"] == "/api/v1/namespaces/a"
        assert await client.get("/b") and plugin.runs == 1  # cached while it works
        # The token is rotated: the server refuses t1, the plugin now prints t2.
        plugin.token.write_text("t2")
        server.accepted = "t2"
        assert await client.get("/c")
        assert plugin.runs == 2 and client.credentials.token == "t2"
        assert server.seen[-2:] == ["Bearer t1", "Bearer t2"]
        # A renewal asked for with the old credentials again (kopf saw the same
        # 401) does not run the plugin again.
        again = await client.renew_credentials(creds)
        assert again.token == "t2" and plugin.runs == 2
        # Refused even after renewing: a typed error, not a loop.
        server.accepted = "t3"
        with pytest.raises(Unauthorized):
            await client.get("/d")
        assert plugin.runs == 3


async def test_exec_plugin_expiry_renews_before_the_request(
    tmp_path: Path, token_server: tuple[TokenServer, str]
) -> None:
    server, url = token_server
    plugin = Plugin(tmp_path)
    plugin.token.write_text("t1")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)  # inside the 10 s margin
    plugin.expiry.write_text(f', "expirationTimestamp": "{soon:%Y-%m-%dT%H:%M:%SZ}"')
    path = tmp_path / "config"
    path.write_text(single(url, plugin.user()))
    creds = await load_credentials(path)
    assert creds.expires_at is not None and creds.expired()
    plugin.expiry.write_text("")
    async with ApiClient(creds, retry=FAST) as client:
        await client.get("/a")
    assert plugin.runs == 2 and server.seen == ["Bearer t1"]  # renewed first, never refused


async def test_two_files_cluster_in_one_user_in_the_other(
    tmp_path: Path, token_server: tuple[TokenServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = token_server
    (tmp_path / "ca.crt").write_text("unused")
    clusters = tmp_path / "clusters"
    clusters.write_text(
        kubeconfig_text(
            {"c": {"server": url}, "other": {"server": "https://10.0.0.1"}},
            {},
            {
                "dev": {"cluster": "c", "user": "u", "namespace": "team"},
                "prod": {"cluster": "other", "user": "u"},
            },
            "dev",
        )
    )
    users = tmp_path / "users"
    users.write_text(
        kubeconfig_text(
            {"c": {"server": "https://ignored.example"}},  # the first file's "c" wins
            {"u": {"token": "t1"}},
            {},
            "prod",  # a later current-context does not override the first
        )
    )
    monkeypatch.setenv(
        "KUBECONFIG", os.pathsep.join([str(clusters), str(tmp_path / "gone"), str(users)])
    )
    assert kubeconfig_paths() == [clusters, users]
    creds = await load_credentials()
    assert (creds.server, creds.token, creds.default_namespace) == (url, "t1", "team")
    assert "context dev" in creds.source
    prod = await load_credentials(context="prod")
    assert (prod.server, prod.default_namespace) == ("https://10.0.0.1", None)
    with pytest.raises(CredentialsError, match=r"no context 'nope' \(contexts: dev, prod\)"):
        await load_credentials(context="nope")
    with pytest.raises(CredentialsError, match="no such file"):
        await load_credentials(tmp_path / "missing")


async def test_proxy_url_carries_every_request(
    tmp_path: Path, token_server: tuple[TokenServer, str]
) -> None:
    server, proxy = token_server
    path = tmp_path / "config"
    # The server's own address is unreachable: only the proxy can answer.
    path.write_text(
        single({"server": "http://api.invalid:6443", "proxy-url": proxy}, {"token": "t1"})
    )
    creds = await load_credentials(path)
    assert creds.proxy == proxy
    async with ApiClient(creds, retry=FAST) as client:
        assert (await client.get("/api/v1/namespaces"))["path"] == "/api/v1/namespaces"
    assert server.seen == ["Bearer t1"]


async def test_tls_server_name_checks_the_certificate_against_that_name(tmp_path: Path) -> None:
    pair = tls.make_self_signed(["api.internal"], dt.datetime.now(dt.UTC), common_name="api")
    (tmp_path / "tls.crt").write_text(pair.cert)
    (tmp_path / "tls.key").write_text(pair.key)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/version", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=served)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        import base64

        ca = base64.b64encode(pair.cert.encode()).decode()
        cluster = {"server": f"https://127.0.0.1:{port}", "certificate-authority-data": ca}
        for name, extra in (("named", {"tls-server-name": "api.internal"}), ("plain", {})):
            (tmp_path / name).write_text(single(cluster | extra, {"token": "t"}))
        named = await load_credentials(tmp_path / "named")
        assert named.tls_server_name == "api.internal"
        async with ApiClient(named, retry=FAST) as client:
            assert await client.get("/version") == {"ok": True}
        plain = await load_credentials(tmp_path / "plain")
        async with ApiClient(plain, retry=FAST) as client:
            with pytest.raises(Exception, match=r"(?i)certificate|hostname|Unreachable"):
                await client.get("/version")
        # kopf gets the same TLS context through the login handler's connection.
        from szal.runners.kubernetes.settings import connection_info

        info = connection_info(named)
        assert info.as_ssl_context() is not None and info.token == "t"
        context = ssl_context(named)
        assert context.verify_mode == ssl.CERT_REQUIRED
    finally:
        await runner.cleanup()


async def test_source_counts_loads_and_reuses_current(
    tmp_path: Path, token_server: tuple[TokenServer, str]
) -> None:
    _, url = token_server
    token_file = tmp_path / "token"
    token_file.write_text("f1")
    path = tmp_path / "config"
    path.write_text(single(url, {"tokenFile": str(token_file)}))
    source = KubeconfigSource([path])
    first = await source.load()
    assert (first.token, source.loads) == ("f1", 1)
    token_file.write_text("f2")  # rotated on disk: re-read on refresh
    second = await source.refresh(first)
    assert (second.token, source.loads) == ("f2", 2)
    assert await source.refresh(first) is second and source.loads == 2
