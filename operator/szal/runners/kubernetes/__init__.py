"""The Kubernetes runner: the operator that runs WorkflowRuns as Pods and Jobs.

Modules: ``client`` (async API client), ``observing`` (pods as observations),
``pods`` (manifests), ``reconciler`` (one run's loop), ``operator`` (kopf
wiring), ``events``, ``metrics``, ``archiving`` (history mirror hook),
``admission`` and ``tls`` (webhooks). See docs/operator.md.
"""
