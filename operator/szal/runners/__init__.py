"""Runners: the imperative shells that drive the engine's planner.

``runners.local`` runs steps as processes on this machine (``szal run``);
``runners.kubernetes`` runs them as Pods or Jobs (the operator). Neither
imports the other (import-linter checks), and neither holds any workflow
semantics: those are the planner's.
"""
