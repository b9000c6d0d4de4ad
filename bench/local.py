"""Local runner benchmark (a script, not a test): ``python -m bench.local``.

Times ``szal run`` end to end, as a user runs it, on a Sequential chain of N
steps that each run ``true`` (default N = 100), with a fresh SQLite history
in a temporary directory. It reports:

- the wall time of the whole ``szal run`` process;
- the fixed cost: the wall time of ``szal validate`` on the same file
  (interpreter start, imports, YAML load and validation), which ``szal run``
  pays once;
- the cost per step: (run - fixed) / N;
- the cost of the process itself: starting and reaping N ``true`` processes
  one after another with asyncio (what any local runner must pay);
- hence the engine + runner + history overhead per step: per step minus
  process cost (planning, recording three upserts per plan into SQLite,
  environment and outputs file, the event loop's wake-ups).

The median of ``--repeat`` runs is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def chain(n: int) -> str:
    steps = "\n".join(f'  - {{name: s{i}, command: ["true"]}}' for i in range(n))
    return (
        "apiVersion: szal.dev/v1alpha1\nkind: Workflow\nmetadata: {name: chain}\n"
        f"spec:\n  mode: Sequential\n  steps:\n{steps}\n"
    )


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return took


async def spawn_chain(n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        proc = await asyncio.create_subprocess_exec("true", start_new_session=True)
        await proc.wait()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.steps
    szal = [sys.executable, "-m", "szal"]
    runs: list[float] = []
    fixed: list[float] = []
    spawns: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain.yaml"
        path.write_text(chain(n))
        for i in range(args.repeat):
            db = Path(tmp) / f"history-{i}.db"
            fixed.append(timed([*szal, "validate", "-q", str(path)]))
            runs.append(timed([*szal, "run", "--db", str(db), "--json", str(path)]))
            spawns.append(asyncio.run(spawn_chain(n)))
    run = statistics.median(runs)
    base = statistics.median(fixed)
    spawn = statistics.median(spawns)
    per_step = (run - base) / n
    print(f"szal run, {n}-step chain of `true`: {run:.3f} s wall (median of {args.repeat})")
    print(f"fixed cost (szal validate, same file):  {base:.3f} s")
    print(f"per step:                               {per_step * 1000:.2f} ms")
    print(f"process spawn+reap of `true` alone:     {spawn / n * 1000:.2f} ms per step")
    print(
        f"engine + runner + history overhead:     {(per_step - spawn / n) * 1000:.2f} ms per step"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
