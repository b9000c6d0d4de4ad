"""Following a cluster run until it ends: a watch, drawn as a live tree or as lines.

Who calls it: ``szal get RUN --watch`` and ``szal submit --watch``.

Decisions:

* **A real watch**, not polling: ``?watch=true`` on the run's collection
  with a ``metadata.name`` field selector from the resourceVersion just
  read; a watch the server ends (its timeout, ``410 Gone``) is resumed from
  a fresh read, so nothing is missed and nothing waits on a timer.
* **The same view as local runs**: on a terminal the live tree of
  :func:`szal.cli.progress.render_tree`; otherwise one line per phase
  change (``HH:MM:SS.mmm  step  Old -> New  message``), as ``szal run``
  prints into a pipe.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from szal.cli.cluster_api import RUNS, TERMINAL, Cluster, ClusterError, JsonDict, phase_of

Update = Callable[[JsonDict], None]


async def watch_run(cluster: Cluster, name: str, on_update: Update) -> JsonDict:
    """Call ``on_update`` with each new version of the run; return the terminal one."""
    from szal.runners.kubernetes.client import ApiError

    obj: JsonDict = await cluster.get_run(name)
    on_update(obj)
    while phase_of(obj) not in TERMINAL:
        params = {
            "watch": "true",
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": str(obj["metadata"]["resourceVersion"]),
            "timeoutSeconds": "120",
        }
        try:
            async with cluster.client.stream(
                cluster.path(RUNS), params=params, read_timeout=150
            ) as body:
                async for line in body:
                    if not line.strip():
                        continue
                    event: dict[str, Any] = json.loads(line)
                    kind = event.get("type")
                    if kind == "DELETED":
                        raise ClusterError(f"run {name!r} was deleted while watching")
                    if kind == "ERROR":
                        break  # 410 Gone and the like: read afresh below
                    if kind in ("ADDED", "MODIFIED"):
                        obj = dict(event["object"])
                        on_update(obj)
                        if phase_of(obj) in TERMINAL:
                            return obj
        except (ApiError, TimeoutError):
            pass  # resumed from a fresh read
        obj = await cluster.get_run(name)
        on_update(obj)
    return obj


class LiveView:
    """The run's tree on a terminal, redrawn on every update."""

    def __init__(self, name: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.name = name
        self.obj: JsonDict | None = None
        self.live = Live(
            get_renderable=self.render, console=Console(), refresh_per_second=8, transient=False
        )
        self.live.start()

    def __call__(self, obj: JsonDict) -> None:
        self.obj = obj

    def render(self) -> Any:
        from rich.text import Text

        if self.obj is None:
            return Text(f"{self.name}: reading…")
        return render_run(self.obj, time.time())

    def close(self) -> None:
        self.live.refresh()
        self.live.stop()


def render_run(obj: JsonDict, now: float, pods: list[JsonDict] | None = None) -> Any:
    """The tree of a cluster run (header and message only before it is pinned).

    With ``pods`` (``-o wide``) each step's line names its latest pod and exit code.
    """
    from rich.console import Group
    from rich.text import Text

    from szal.cli.cluster_api import run_view
    from szal.cli.progress import PHASE_STYLE, render_tree

    name = str(obj["metadata"]["name"])
    workflow, state = run_view(obj)
    status = obj.get("status") or {}
    if workflow is None:
        phase = phase_of(obj)
        head = Text.assemble(
            (str(((obj.get("spec") or {}).get("workflowRef") or {}).get("name") or ""), "bold"),
            f"  run {name}  ",
            (phase, PHASE_STYLE.get(phase, "")),
        )
        message = status.get("message")
        return Group(head, Text(str(message), style="dim")) if message else head
    extra = None
    if pods is not None:
        from szal.cli.cluster_api import latest_pods

        chosen = latest_pods(pods)
        extra = {}
        for step, record in (status.get("steps") or {}).items():
            pod = chosen.get(step)
            bits = [f"pod {pod['metadata']['name']}"] if pod else []
            if record.get("exitCode") is not None:
                bits.append(f"exit {record['exitCode']}")
            extra[step] = "  ".join(bits)
    return render_tree(workflow, name, state, now, extra)


class Lines:
    """One line per phase change of the run or a step (pipes, logs)."""

    def __init__(self) -> None:
        self.seen: dict[str | None, str] = {}

    def __call__(self, obj: JsonDict) -> None:
        status = obj.get("status") or {}
        now = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        name = str(obj["metadata"]["name"])
        changes: list[tuple[str | None, str, str]] = []
        for step, record in (status.get("steps") or {}).items():
            changes.append(
                (step, str(record.get("phase") or "Pending"), str(record.get("message") or ""))
            )
        changes.append((None, phase_of(obj), str(status.get("message") or "")))
        for who, phase, message in changes:
            old = self.seen.get(who)
            if old == phase:
                continue
            self.seen[who] = phase
            label = f"run {name}" if who is None else who
            tail = f": {message}" if message and (who is None or phase != "Running") else ""
            sys.stdout.write(f"{now}  {label}  {old or '-'} -> {phase}{tail}\n")
        sys.stdout.flush()

    def close(self) -> None:
        sys.stdout.flush()


async def follow(cluster: Cluster, name: str) -> JsonDict:
    """Watch the run to its end with the view that suits stdout; return the last version."""
    view: LiveView | Lines = LiveView(name) if sys.stdout.isatty() else Lines()
    try:
        return await watch_run(cluster, name, view)
    finally:
        view.close()


async def announce_created(cluster: Cluster, name: str, watch: bool, note: str = "") -> int:
    """Say a run was created (stderr when watching) and, with ``watch``, follow it.

    The exit code of ``submit`` and ``retry``: 0, or with ``watch`` 0 only
    when the run Succeeded.
    """
    print(f"workflowrun.szal.dev/{name} created{note}", file=sys.stderr if watch else sys.stdout)
    if not watch:
        return 0
    final = await follow(cluster, name)
    return 0 if phase_of(final) == "Succeeded" else 1
