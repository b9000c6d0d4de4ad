"""Where the API server is and who we are: kubeconfigs loaded by a library.

Who calls it: :mod:`szal.runners.kubernetes.client` (its
:func:`~szal.runners.kubernetes.client.load_credentials` delegates here and
its :class:`~szal.runners.kubernetes.client.ApiClient` calls
:attr:`Credentials.refresher` after a 401 or past the expiry), the
operator's kopf login handler (the same :class:`Credentials`, so kopf's
watches and our writes use one server and one identity), and the cluster
CLI.

Decisions:

* **kubeconfigs are read by ``kubernetes_asyncio``'s config loader**, never
  parsed by hand: exec credential plugins (EKS, GKE, AKS), ``auth-provider``
  entries (gcp, oidc), ``token``/``tokenFile``, client certificates, inline
  ``*-data``, ``KUBECONFIG`` with several paths (merged: the first file
  naming a cluster, user or context wins, as in kubectl), contexts,
  ``proxy-url`` and ``tls-server-name``. The loader fills its
  ``Configuration``; :func:`_from_configuration` turns it into our frozen
  :class:`Credentials` (PEM text in memory: the loader's temporary files are
  read once).
* **The current context** is the first file's ``current-context`` that sets
  one (kubectl's rule; the library would take the last file's).
* **Refresh is a fresh load.** :class:`KubeconfigSource` re-reads the files
  and re-runs the exec plugin (or re-reads the token file) when a request
  was refused with 401 or the ExecCredential's ``expirationTimestamp``
  passed; a refresh asked for with credentials that are no longer current
  returns the current ones, so a 401 seen by kopf and by our client at once
  runs the plugin once. :attr:`KubeconfigSource.loads` counts the loads.
* **The in-cluster service account** stays ours (a token file re-read when
  kubelet rotates it: no refresh needed).
* **TLS server name** (``tls-server-name``): :func:`ssl_context` returns a
  context that verifies the certificate against that name whatever host the
  URL names; it works for aiohttp in both our client and kopf's.
* Loading is async (exec plugins are subprocesses);
  :func:`load_credentials_blocking` runs it in a worker thread with its own
  event loop for callers that construct things synchronously.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = Path("~/.kube/config")

Refresher = Callable[["Credentials"], Awaitable["Credentials"]]
"""Called with the credentials a request was refused with; returns fresh ones."""


class CredentialsError(Exception):
    """No usable kubeconfig or in-cluster service account."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the API server is and how to prove who we are.

    ``*_data`` fields hold PEM text; ``token_path`` names a token file that
    is re-read when it changes (the in-cluster service account token).
    """

    server: str
    ca_data: str | None = None
    insecure: bool = False
    certificate_data: str | None = None
    private_key_data: str | None = None
    token: str | None = None
    token_path: Path | None = None
    scheme: str = "Bearer"
    """The Authorization scheme of ``token`` (``Basic`` for a username/password)."""
    default_namespace: str | None = None
    tls_server_name: str | None = None
    """The name the server's certificate is checked against (kubeconfig ``tls-server-name``)."""
    proxy: str | None = None
    """An HTTP(S) proxy URL for every request (kubeconfig ``proxy-url``)."""
    expires_at: datetime.datetime | None = None
    """When an exec plugin's token expires (UTC); None: no known expiry."""
    source: str = ""
    refresher: Refresher | None = field(default=None, compare=False, repr=False)
    """How to get new credentials after a 401 or the expiry; None: they never change."""

    def read_token(self) -> str | None:
        if self.token_path is not None:
            return self.token_path.read_text().strip()
        return self.token

    def expired(self, now: datetime.datetime | None = None) -> bool:
        """Past :attr:`expires_at`, with ten seconds to spare for the request in flight."""
        if self.expires_at is None:
            return False
        now = now or datetime.datetime.now(datetime.UTC)
        return now >= self.expires_at - datetime.timedelta(seconds=10)

    def same_tls(self, other: Credentials) -> bool:
        """Whether a connection made with ``other`` may serve these credentials."""
        return (
            self.server,
            self.ca_data,
            self.insecure,
            self.certificate_data,
            self.private_key_data,
            self.tls_server_name,
        ) == (
            other.server,
            other.ca_data,
            other.insecure,
            other.certificate_data,
            other.private_key_data,
            other.tls_server_name,
        )


# --- kubeconfig files ---------------------------------------------------------


def kubeconfig_paths(kubeconfig: Path | str | None = None) -> list[Path]:
    """The files to merge: ``kubeconfig`` (may hold several paths), else ``$KUBECONFIG``.

    Empty when neither names anything (the caller decides on in-cluster or
    ``~/.kube/config``). Files that do not exist are dropped, as kubectl does.
    """
    spec = str(kubeconfig) if kubeconfig is not None else os.environ.get("KUBECONFIG", "")
    paths = [Path(p).expanduser() for p in spec.split(os.pathsep) if p]
    if kubeconfig is not None and not any(p.is_file() for p in paths):
        raise CredentialsError(f"cannot read kubeconfig {kubeconfig}: no such file")
    return [p for p in paths if p.is_file()]


def _first_current_context(paths: list[Path]) -> str | None:
    for path in paths:
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise CredentialsError(f"cannot read kubeconfig {path}: {error}") from error
        if isinstance(config, dict) and config.get("current-context"):
            return str(config["current-context"])
    return None


def kubeconfig_contexts(paths: list[Path]) -> tuple[list[dict[str, Any]], str | None]:
    """Every context of the merged files, and the current one's name."""
    from kubernetes_asyncio.config import ConfigException, list_kube_config_contexts

    try:
        contexts, _ = list_kube_config_contexts(os.pathsep.join(map(str, paths)))
    except (ConfigException, KeyError, TypeError, AttributeError) as error:
        raise CredentialsError(f"kubeconfig {_names(paths)}: {error}") from error
    return [dict(c) for c in contexts or []], _first_current_context(paths)


def _names(paths: list[Path]) -> str:
    return os.pathsep.join(map(str, paths))


def _read(path: str | None) -> str | None:
    return Path(path).read_text() if path else None


def _from_configuration(
    config: Any, loader: Any, namespace: str | None, source: str
) -> Credentials:
    bearer = str((config.api_key or {}).get("BearerToken") or "")
    scheme, _, token = bearer.partition(" ")
    expiry = getattr(loader, "exec_plugin_expiry", None)
    if isinstance(expiry, datetime.datetime) and expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=datetime.UTC)
    return Credentials(
        server=str(config.host).rstrip("/"),
        ca_data=_read(config.ssl_ca_cert),
        insecure=not config.verify_ssl,
        certificate_data=_read(config.cert_file),
        private_key_data=_read(config.key_file),
        token=token or None,
        scheme=scheme or "Bearer",
        default_namespace=namespace,
        tls_server_name=config.tls_server_name or None,
        proxy=config.proxy or None,
        expires_at=expiry if isinstance(expiry, datetime.datetime) else None,
        source=source,
    )


@dataclass
class KubeconfigSource:
    """One context of a (merged) kubeconfig; :meth:`load` and :meth:`refresh` it."""

    paths: list[Path]
    context: str | None = None
    """The context to use; None: the first file's current-context."""
    loads: int = 0
    """Loads so far (each runs the exec plugin once, when the user has one)."""
    current: Credentials | None = None
    _lock: asyncio.Lock | None = None

    async def load(self) -> Credentials:
        """Read the files and authenticate (run the exec plugin, read the token file)."""
        from kubernetes_asyncio.client import Configuration
        from kubernetes_asyncio.config import ConfigException, load_kube_config

        contexts, current = kubeconfig_contexts(self.paths)
        name = self.context or current
        names = [str(c.get("name")) for c in contexts]
        if name is None or name not in names:
            raise CredentialsError(
                f"kubeconfig {_names(self.paths)} has no context {name!r}"
                f" (contexts: {', '.join(names) or 'none'})"
            )
        entry = contexts[names.index(name)].get("context") or {}
        config = Configuration()
        try:
            loader = await load_kube_config(
                config_file=_names(self.paths), context=name, client_configuration=config
            )
        except (ConfigException, OSError, KeyError, TypeError, AssertionError) as error:
            raise CredentialsError(
                f"kubeconfig {_names(self.paths)} context {name}: {error or type(error).__name__}"
            ) from error
        if not config.host or config.host == Configuration().host:
            raise CredentialsError(
                f"kubeconfig {_names(self.paths)}: context {name!r} names no usable cluster"
            )
        self.loads += 1
        creds = _from_configuration(
            config,
            loader,
            entry.get("namespace"),
            f"kubeconfig {_names(self.paths)} context {name}",
        )
        self.current = replace(creds, refresher=self.refresh)
        return self.current

    async def refresh(self, rejected: Credentials) -> Credentials:
        """New credentials unless someone already replaced ``rejected`` with good ones."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            current = self.current
            if current is not None and current != rejected and not current.expired():
                return current
            return await self.load()


# --- the service account and the search order ---------------------------------


def credentials_in_cluster(sa_dir: Path = SERVICE_ACCOUNT_DIR) -> Credentials:
    """The pod's service account (token re-read on every change)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (sa_dir / "token").is_file():
        raise CredentialsError("not running in a cluster (no KUBERNETES_SERVICE_HOST or token)")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    ns_file = sa_dir / "namespace"
    return Credentials(
        server=f"https://{host}:{port}",
        ca_data=(sa_dir / "ca.crt").read_text(),
        token_path=sa_dir / "token",
        default_namespace=ns_file.read_text().strip() if ns_file.is_file() else None,
        source="in-cluster service account",
    )


def kubeconfig_source(
    kubeconfig: Path | str | None = None, context: str | None = None
) -> KubeconfigSource | None:
    """The kubeconfig to use: explicit, else ``$KUBECONFIG``, else None when in a
    cluster, else ``~/.kube/config``."""
    paths = kubeconfig_paths(kubeconfig)
    if paths:
        return KubeconfigSource(paths, context)
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (SERVICE_ACCOUNT_DIR / "token").is_file():
        return None
    default = DEFAULT_KUBECONFIG.expanduser()
    if default.is_file():
        return KubeconfigSource([default], context)
    return None


async def load_credentials(
    kubeconfig: Path | str | None = None, context: str | None = None
) -> Credentials:
    """An explicit kubeconfig, else ``$KUBECONFIG``, else in-cluster, else ``~/.kube/config``."""
    source = kubeconfig_source(kubeconfig, context)
    if source is None:
        return credentials_in_cluster()
    return await source.load()


def load_credentials_blocking(
    kubeconfig: Path | str | None = None, context: str | None = None
) -> Credentials:
    """:func:`load_credentials` for synchronous callers (also inside a running loop).

    The load runs on a worker thread's own event loop; the credentials'
    refresher later runs on the caller's loop (it holds no loop state).
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="szal-kubeconfig") as pool:
        return pool.submit(asyncio.run, load_credentials(kubeconfig, context)).result()


# --- TLS ----------------------------------------------------------------------


class _NamedServerContext(ssl.SSLContext):
    """Checks the server's certificate against a fixed name (``tls-server-name``)."""

    tls_server_name: str = ""

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        kwargs["server_hostname"] = self.tls_server_name
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["server_hostname"] = self.tls_server_name
        return super().wrap_socket(*args, **kwargs)


def ssl_context(creds: Credentials) -> ssl.SSLContext:
    """A TLS context trusting the cluster CA and presenting the client certificate."""
    if creds.tls_server_name:
        ctx: ssl.SSLContext = _NamedServerContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.tls_server_name = creds.tls_server_name  # type: ignore[attr-defined]
        ctx.load_default_certs()
        if creds.ca_data:
            ctx.load_verify_locations(cadata=creds.ca_data)
    elif creds.ca_data:
        ctx = ssl.create_default_context(cadata=creds.ca_data)
    else:
        ctx = ssl.create_default_context()
    if creds.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if creds.certificate_data and creds.private_key_data:
        # The ssl module loads key pairs only from files: write them to a
        # private directory for the duration of the call.
        with tempfile.TemporaryDirectory(prefix="szal-tls-") as tmp:
            cert = Path(tmp) / "tls.crt"
            key = Path(tmp) / "tls.key"
            cert.write_text(creds.certificate_data)
            key.touch(mode=0o600)
            key.write_text(creds.private_key_data)
            ctx.load_cert_chain(cert, key)
    return ctx
