"""The pure engine: validation, resolution, state machines and the planner.

No I/O and no clock: the planner takes ``now`` and returns actions and the
next state. Both runners (local, Kubernetes) are thin shells around it.
"""
