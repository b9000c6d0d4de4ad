"""One step attempt as a local process: start it, stop it, read what it left.

The local runner calls :func:`start_process` for every Launch. Decisions:

- **Own process group** (``start_new_session=True``): stopping an attempt
  signals the whole group, so a ``sh -c`` and everything it started
  (grandchildren included) go together. When the group leader exits, the
  rest of its group is SIGKILLed too, as a container's processes die with
  its main process; a step cannot leave stray background jobs behind.
- **Stop** is SIGTERM to the group, then SIGKILL after the grace period
  (Kubernetes' pod deletion, locally).
- **Output** (stdout and stderr interleaved, as ``kubectl logs`` shows it)
  goes to a file in the attempt's private directory rather than a pipe: a
  pipe held open by a grandchild would keep us waiting for EOF, and a full
  pipe would block the step. The runner stores the file into history when
  the attempt ends.
- **Outputs** are read from ``$SZAL_OUTPUTS`` (an empty file per attempt):
  empty means no outputs; otherwise it must be a JSON object of at most
  4 KiB (a Pod's termination message limit), else the attempt fails with a
  message saying why, whatever its exit code.
- **Context**: a ``SZAL_CONTEXT`` longer than
  :data:`~szal.engine.environment.CONTEXT_ENV_LIMIT` is written to
  ``context.json`` next to the outputs file and named by
  ``SZAL_CONTEXT_FILE`` instead (Linux refuses one variable over 128 KiB).
- **Exit codes** of processes killed by a signal are reported as 128 + the
  signal number (137 for SIGKILL), as a container runtime reports them.
  A command that cannot be executed is exit code 127 (not found) or 126.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from szal.engine.environment import deliver_context

OUTPUTS_LIMIT = 4096
#: Captured output kept per attempt; beyond it the head is dropped.
LOG_LIMIT = 4 * 1024 * 1024


@dataclass(slots=True)
class Exited:
    """How a process ended."""

    exit_code: int
    message: str | None = None


@dataclass(slots=True)
class LocalProcess:
    """A running (or finished) attempt process and its private directory."""

    process: asyncio.subprocess.Process | None
    directory: Path
    outputs_path: Path
    log_path: Path
    start_error: Exited | None = None
    kill_timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def wait(self) -> Exited:
        """Wait for the group leader to exit, then clear out the rest of its group."""
        if self.process is None:
            assert self.start_error is not None
            return self.start_error
        code = await self.process.wait()
        if self.kill_timer is not None:
            self.kill_timer.cancel()
            self.kill_timer = None
        signal_group(self.process.pid, signal.SIGKILL)
        if code < 0:
            signum = -code
            return Exited(128 + signum, f"killed by {signal.Signals(signum).name}")
        return Exited(code)

    def stop(self, grace_period: float) -> None:
        """SIGTERM the group now and SIGKILL it after ``grace_period`` seconds."""
        if self.process is None or self.process.returncode is not None:
            return
        signal_group(self.process.pid, signal.SIGTERM)
        if self.kill_timer is None:
            pid = self.process.pid
            self.kill_timer = asyncio.get_running_loop().call_later(
                grace_period, signal_group, pid, signal.SIGKILL
            )

    def kill(self) -> None:
        """SIGKILL the group at once (a second Ctrl-C)."""
        if self.process is not None and self.process.returncode is None:
            signal_group(self.process.pid, signal.SIGKILL)

    def read_log(self) -> str:
        try:
            size = self.log_path.stat().st_size
            with self.log_path.open("rb") as fh:
                if size > LOG_LIMIT:
                    fh.seek(size - LOG_LIMIT)
                data = fh.read()
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace")
        if size > LOG_LIMIT:
            text = f"[szal: first {size - LOG_LIMIT} bytes of output dropped]\n" + text
        return text

    def read_outputs(self) -> tuple[dict[str, Any] | None, str | None]:
        """(outputs, None) or (None, error message)."""
        return read_outputs(self.outputs_path)

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def read_outputs(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Parse an outputs file: (outputs, None) or (None, a message naming the problem)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read outputs file: {exc.strerror}"
    if not data.strip():
        return None, None
    if len(data) > OUTPUTS_LIMIT:
        return None, f"outputs file is {len(data)} bytes, over the {OUTPUTS_LIMIT}-byte limit"
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"outputs file is not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"outputs file must hold a JSON object, not {type(value).__name__}"
    return value, None


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def start_process(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    tmp_root: Path | None = None,
) -> LocalProcess:
    """Start ``argv`` in a new session with ``SZAL_OUTPUTS`` pointing at a fresh file.

    A long ``SZAL_CONTEXT`` in ``env`` is handed over as ``context.json`` in
    the attempt's directory (``SZAL_CONTEXT_FILE``).
    """
    directory = Path(tempfile.mkdtemp(prefix="szal-attempt-", dir=tmp_root))
    outputs_path = directory / "outputs.json"
    outputs_path.touch()
    log_path = directory / "output.log"
    delivered, context = deliver_context(dict(env), str(directory / "context.json"))
    if context is not None:
        (directory / "context.json").write_text(context, encoding="utf-8")
    full_env = {**delivered, "SZAL_OUTPUTS": str(outputs_path)}
    handle = LocalProcess(None, directory, outputs_path, log_path)
    if not argv:
        handle.start_error = Exited(127, "step has no command or script")
        return handle
    with log_path.open("wb") as log:
        try:
            handle.process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except FileNotFoundError:
            if cwd is not None and not os.path.isdir(cwd):  # noqa: ASYNC240 (error path only)
                handle.start_error = Exited(127, f"workingDir does not exist: {cwd}")
            else:
                handle.start_error = Exited(127, f"command not found: {argv[0]}")
        except PermissionError:
            handle.start_error = Exited(126, f"permission denied: {argv[0]}")
        except OSError as exc:
            handle.start_error = Exited(126, f"cannot execute {argv[0]}: {exc.strerror}")
    return handle
