"""Szál: a workflow engine for Kubernetes, with a local mode.

The package is layered from the ground up (checked by import-linter, see
``.importlinter``): ``spec`` and ``dsl`` import nothing of the project;
``engine`` is pure (no I/O, no clock); ``history`` holds the stores;
``runners`` drive the engine locally or on Kubernetes; ``cli`` sits on top.
"""

__version__ = "0.1.0"
