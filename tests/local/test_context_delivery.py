"""A long ``SZAL_CONTEXT`` reaches a local step as a file (issue 12), through ``szal run``.

Covers: the issue's reproduction, 40 Sequential steps each leaving 3.9 KB
of outputs (step 34 used to fail with ``Argument list too long``: its
context passed Linux's 128 KiB limit for one variable), now succeeding;
every step reads the whole context it can see, as a variable while it is
short and from ``SZAL_CONTEXT_FILE`` (``context.json`` beside the outputs
file) once it is longer than 32 KiB. Not covered: the threshold's edge
(tests/engine/test_visibility.py) and Pods (tests/kubernetes/test_pods.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.local.conftest import Result

Szal = Callable[..., Result]
Write = Callable[[str], Path]

STEPS = 40
PROBE = """\
python3 - <<'PY'
import json, os
if "SZAL_CONTEXT_FILE" in os.environ:
    assert "SZAL_CONTEXT" not in os.environ
    path = os.environ["SZAL_CONTEXT_FILE"]
    assert os.path.dirname(path) == os.path.dirname(os.environ["SZAL_OUTPUTS"])
    via, context = os.path.basename(path), json.load(open(path))
else:
    via, context = "env", json.loads(os.environ["SZAL_CONTEXT"])
blobs = sorted(len(s["outputs"]["blob"]) for s in context["steps"].values())
out = {"via": via, "seen": len(context["steps"]), "blobs": sorted(set(blobs)), "blob": "x" * 3900}
json.dump(out, open(os.environ["SZAL_OUTPUTS"], "w"))
PY
"""


def test_forty_steps_of_3_9_kb_outputs_succeed(
    szal_inline: Szal, workflow_file: Write, db: Path
) -> None:
    steps = "".join(f"  - name: s{i:02d}\n" for i in range(STEPS))
    script = "".join(f"      {line}\n" for line in PROBE.splitlines())
    path = workflow_file(
        "apiVersion: szal.dev/v1alpha1\nkind: Workflow\nmetadata: {name: big}\nspec:\n"
        f"  template:\n    script: |\n{script}  steps:\n{steps}"
    )
    result = szal_inline("run", "--db", db, "--json", path)
    assert result.code == 0, result.err
    assert result.status["phase"] == "Succeeded"
    outputs = [result.status["steps"][f"s{i:02d}"]["outputs"] for i in range(STEPS)]
    assert [o["seen"] for o in outputs] == list(range(STEPS))  # every earlier step, whole
    assert all(o["blobs"] == ([3900] if i else []) for i, o in enumerate(outputs))
    vias = [o["via"] for o in outputs]
    assert vias[:8] == ["env"] * 8  # up to 32 KiB: still the variable
    assert vias[-7:] == ["context.json"] * 7  # 33 steps of 3.9 KB and more: a file
    assert set(vias) == {"env", "context.json"}
