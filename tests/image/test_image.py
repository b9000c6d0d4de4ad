"""The operator image built by ``make image`` (image/build.sh), run for real.

Covers: the OCI archive's index (the name ``ctr images import`` and ``kind load
image-archive`` use), its config (user, entrypoint, workdir, env, OCI labels), and
the image run with runc as the runtime spec Kubernetes' restricted profile implies:
uid/gid 65532, read-only root filesystem, a tmpfs ``/tmp``. Inside it ``szal
--version`` and ``szal operator --help`` work and nothing outside ``/tmp`` is
writable. A throwaway containerd (own root, state and socket under a temporary
directory, CRI plugin off) imports the archive and names the image.

Not covered: the Dockerfile (no engine here; it describes the same image), running
the operator against a cluster from the image (the real-node e2e tests do that).

The archive is built when missing or stale (image/build.sh skips an up-to-date one);
runc, umoci and containerd need root, so the tests fail, not skip, without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = REPO / "dist" / "szal-image.tar"
VERSION: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
REF = f"localhost/szal/szal:{VERSION}"
UID = 65532


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package (apt-get install -y {name})")
    return path


@pytest.fixture(scope="module")
def archive() -> Path:
    if os.geteuid() != 0:
        pytest.fail("the image tests need root (mmdebstrap, umoci unpack and runc)")
    started = time.monotonic()
    subprocess.run(
        ["bash", str(REPO / "image" / "build.sh")], check=True, stdout=subprocess.DEVNULL
    )
    print(f"image/build.sh took {time.monotonic() - started:.1f}s")
    return ARCHIVE


@pytest.fixture(scope="module")
def layout(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("oci")
    with tarfile.open(archive) as tar:
        tar.extractall(path, filter="tar")
    return path


@pytest.fixture(scope="module")
def bundle(layout: Path) -> Iterator[Path]:
    path = layout.parent / "bundle"
    subprocess.run(
        [_tool("umoci"), "unpack", "--image", f"{layout}:{VERSION}", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # umoci's runtime spec for the image, before _run adjusts config.json per run.
    (path / "config.image.json").write_bytes((path / "config.json").read_bytes())
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _blob(layout: Path, digest: str) -> Any:
    algorithm, hexdigest = digest.split(":", 1)
    return json.loads((layout / "blobs" / algorithm / hexdigest).read_text())


def _image_config(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    manifest = _blob(layout, index["manifests"][0]["digest"])
    config: dict[str, Any] = _blob(layout, manifest["config"]["digest"])
    return config


def _run(bundle: Path, args: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the image once with runc as a restricted Pod would: uid 65532, read-only /, tmpfs /tmp"""
    spec = json.loads((bundle / "config.image.json").read_text())
    process = spec["process"]
    if args is not None:
        process["args"] = args
    process["terminal"] = False
    process["user"] = {"uid": UID, "gid": UID}
    process["noNewPrivileges"] = True
    process["capabilities"] = {
        k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")
    }
    spec["root"]["readonly"] = True
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/tmp"] + [
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", "size=64m"],
        }
    ]
    (bundle / "config.json").write_text(json.dumps(spec))
    state = bundle.parent / "runc-state"
    name = f"szal-image-test-{uuid.uuid4().hex[:8]}"
    runc = _tool("runc")
    try:
        return subprocess.run(
            [runc, "--root", str(state), "run", "--bundle", str(bundle), name],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    finally:
        subprocess.run([runc, "--root", str(state), "delete", "--force", name], capture_output=True)


def test_index_names_the_image_for_containerd(layout: Path) -> None:
    index = json.loads((layout / "index.json").read_text())
    assert len(index["manifests"]) == 1
    annotations = index["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == REF
    assert annotations["org.opencontainers.image.ref.name"] == VERSION
    listed = subprocess.run(
        [_tool("umoci"), "ls", "--layout", str(layout)], check=True, capture_output=True, text=True
    )
    assert listed.stdout.split() == [VERSION]


def test_config_runs_szal_operator_as_65532(layout: Path) -> None:
    config = _image_config(layout)
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    runtime = config["config"]
    assert runtime["User"] == f"{UID}:{UID}"
    assert runtime["Entrypoint"] == ["szal", "operator"]
    assert runtime["WorkingDir"] == "/tmp"
    env = dict(item.split("=", 1) for item in runtime["Env"])
    assert env["HOME"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "/usr/local/bin" in env["PATH"].split(":")
    labels = runtime["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "AGPL-3.0-only"
    assert labels["org.opencontainers.image.title"] == "szal"
    assert labels["org.opencontainers.image.source"]
    assert labels["org.opencontainers.image.description"]


def test_version(bundle: Path) -> None:
    result = _run(bundle, ["szal", "--version"])
    assert result.returncode == 0, result.stderr
    assert VERSION in result.stdout


def test_entrypoint_help(bundle: Path) -> None:
    entrypoint = json.loads((bundle / "config.image.json").read_text())["process"]["args"]
    assert entrypoint == ["szal", "operator"]
    result = _run(bundle, [*entrypoint, "--help"])
    assert result.returncode == 0, result.stderr
    assert "--kubeconfig" in result.stdout


PROBE = """
import errno, os, pathlib
print(os.getuid(), os.getgid(), os.getcwd(), os.environ["HOME"])
pathlib.Path("/tmp/probe").write_text("ok")
for path in ("/probe", "/usr/local/lib/python3.11/dist-packages/probe", "/etc/probe"):
    try:
        open(path, "w")
    except OSError as error:
        assert error.errno in (errno.EROFS, errno.EACCES), (path, error)
    else:
        raise SystemExit(f"{path} was writable")
import szal.cli  # imports with no writable site-packages and no bytecode writes
print("fine")
"""


def test_runs_as_65532_with_a_read_only_root(bundle: Path) -> None:
    result = _run(bundle, ["python3", "-c", PROBE])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(UID), str(UID), "/tmp", "/tmp", "fine"]


CONTAINERD_CONFIG = """\
version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
[metrics]
  address = ""
"""


def test_containerd_imports_the_archive(archive: Path, tmp_path: Path) -> None:
    containerd, ctr = _tool("containerd"), _tool("ctr")
    work = Path(f"/tmp/szal-ctrd-{uuid.uuid4().hex[:8]}")  # socket paths must stay short
    work.mkdir()
    (work / "config.toml").write_text(CONTAINERD_CONFIG.format(dir=work))
    log = (tmp_path / "containerd.log").open("w")
    daemon = subprocess.Popen(
        [containerd, "--config", str(work / "config.toml")], stdout=log, stderr=subprocess.STDOUT
    )
    address = ["--address", str(work / "containerd.sock"), "--namespace", "k8s.io"]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([ctr, *address, "version"], capture_output=True).returncode != 0:
            assert daemon.poll() is None, (tmp_path / "containerd.log").read_text()
            assert time.monotonic() < deadline, "containerd did not answer in 30 s"
            time.sleep(0.2)
        imported = subprocess.run(
            [ctr, *address, "images", "import", "--snapshotter", "native", str(archive)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert imported.returncode == 0, imported.stderr
        listed = subprocess.run(
            [ctr, *address, "images", "ls", "--quiet"], check=True, capture_output=True, text=True
        )
        assert REF in listed.stdout.split()
        check = subprocess.run(
            [ctr, *address, "images", "check"], check=True, capture_output=True, text=True
        )
        assert "complete" in check.stdout, check.stdout
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
