"""The argocd-cm snippets carry exactly the shipped Lua health checks.

``deploy/argocd/health/<group>/<Kind>/health.lua`` is the one source;
``deploy/argocd/argocd-cm.yaml`` and ``argo-cd-values.yaml`` are rendered
from it by ``deploy/argocd/render.py``. Covers: both files are current
(render --check), each key is what Argo CD looks up for the kind
(``resource.customizations.health.<group>_<Kind>``) and holds the Lua file
byte for byte once YAML-parsed, and both files hold the same checks. That
the ConfigMap patch is accepted by a real API server is e2e
(``e2e/test_argocd_health.py``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from tests.argocd.harness import ARGOCD, KINDS, script


def expected() -> dict[str, str]:
    return {
        f"resource.customizations.health.szal.dev_{kind}": script(kind).read_text()
        for kind in KINDS
    }


def test_rendered_files_are_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ARGOCD / "render.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_configmap_patch_holds_the_lua_files() -> None:
    doc = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "argocd-cm"
    assert doc["data"] == expected()


def test_helm_values_hold_the_lua_files() -> None:
    doc = yaml.safe_load((ARGOCD / "argo-cd-values.yaml").read_text())
    assert doc == {"configs": {"cm": expected()}}


def test_render_check_notices_an_edited_script(tmp_path: Path) -> None:
    """Edit a copy of the tree: --check must fail, and a render must fix it."""
    copy = tmp_path / "deploy" / "argocd"
    copy.parent.mkdir()
    subprocess.run(["cp", "-r", str(ARGOCD), str(copy.parent)], check=True)
    lua = copy / "health" / "szal.dev" / "Workflow" / "health.lua"
    lua.write_text(lua.read_text() + "-- edited\n")
    render = [sys.executable, str(copy / "render.py")]
    assert subprocess.run([*render, "--check"], capture_output=True).returncode == 1
    assert subprocess.run(render, capture_output=True).returncode == 0
    assert subprocess.run([*render, "--check"], capture_output=True).returncode == 0
    assert "-- edited" in (copy / "argocd-cm.yaml").read_text()
