"""GPU slots for local runs: which GPUs this machine has, and who holds them.

Discovery: ``SZAL_GPUS`` (a comma-separated list of device ids, e.g.
``SZAL_GPUS=0,1``; empty means none) wins, so tests and CI can pretend;
otherwise ``nvidia-smi --query-gpu=index`` when it is installed; otherwise
no GPUs. The count feeds validation (a step asking for more GPUs than exist
is invalid before anything runs) and the pool below.

Allocation is first come, first served: the runner holds a launch until
enough GPUs are free and gives the attempt exactly those ids in
``CUDA_VISIBLE_DEVICES``. Held launches are served in strict arrival order,
so a step waiting for two GPUs is not starved by later one-GPU steps. The
planner's ``maxParallel`` is a separate limit; a held launch counts against
it (as a Pending pod does on a cluster).
"""

from __future__ import annotations

import os
import shutil
import subprocess


def discover_gpus(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """GPU device ids usable by local steps (see the module docstring)."""
    env = os.environ if environ is None else environ
    if "SZAL_GPUS" in env:
        return tuple(part.strip() for part in env["SZAL_GPUS"].split(",") if part.strip())
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        done = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    if done.returncode != 0:
        return ()
    return tuple(line.strip() for line in done.stdout.splitlines() if line.strip())


class GpuPool:
    """Free and held GPU ids. Not thread-safe; the runner's event loop owns it."""

    def __init__(self, ids: tuple[str, ...]) -> None:
        self.ids = ids
        self._free = list(ids)

    @property
    def free(self) -> int:
        return len(self._free)

    def acquire(self, count: int) -> tuple[str, ...] | None:
        """The lowest ``count`` free ids, or None when not enough are free."""
        if count > len(self._free):
            return None
        taken, self._free = self._free[:count], self._free[count:]
        return tuple(taken)

    def release(self, ids: tuple[str, ...]) -> None:
        order = {gpu: i for i, gpu in enumerate(self.ids)}
        self._free = sorted({*self._free, *ids}, key=lambda gpu: order.get(gpu, len(order)))
