"""The local runner: steps as subprocesses, GPU slots, history in SQLite.

Used by ``szal run``. Nothing here imports kopf, kubernetes, aiohttp or
asyncpg (import-linter checks).
"""

from szal.runners.local.gpus import GpuPool, discover_gpus
from szal.runners.local.running import LocalRunner, LocalSettings, RunListener

__all__ = ["GpuPool", "LocalRunner", "LocalSettings", "RunListener", "discover_gpus"]
