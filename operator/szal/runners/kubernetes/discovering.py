"""Waiting for Szál's CRDs before the operator starts kopf.

kopf runs with resource scanning off (KOPF-NOTES.md section 4: it would
otherwise need cluster-wide CRD access). Started before the CRDs exist, its
watches would find nothing and never look again: the operator would report
ready and serve no run (issue 12). So :func:`wait_for_crds` asks the API
server's discovery document for ``szal.dev/v1alpha1`` until it lists both
resources, says once in the log what it waits for, shows the same text as
the ``/readyz`` body (503) meanwhile, and returns when they appear.

Called by :meth:`szal.runners.kubernetes.operator.Operator.run`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from szal.runners.kubernetes.client import ApiClient, ApiError, NotFound, api_group_path
from szal.runners.kubernetes.metrics import MetricsServer
from szal.spec import API_VERSION, GROUP

logger = logging.getLogger(__name__)

RESOURCES = ("workflows", "workflowruns")


async def served_resources(client: ApiClient) -> set[str] | None:
    """The plurals the API server serves in ``szal.dev/v1alpha1``; None when the group is absent.

    Also how the cluster CLI tells "no such run" from "no CRDs"
    (:mod:`szal.cli.cluster_api`).
    """
    try:
        document = await client.get(api_group_path(API_VERSION))
    except NotFound:
        return None
    return {str(r.get("name")) for r in document.get("resources") or []}


async def missing_resources(client: ApiClient) -> list[str]:
    """The CRDs (``<plural>.szal.dev``) the API server does not serve yet; [] when all are there."""
    served = await served_resources(client) or set()
    return [f"{plural}.{GROUP}" for plural in RESOURCES if plural not in served]


async def wait_for_crds(
    client: ApiClient, metrics: MetricsServer | None, stop_flag: Any, interval: float
) -> bool:
    """Wait until every CRD is served; False if ``stop_flag`` was set meanwhile."""
    said = False
    if metrics is not None:
        # The first answer can take the client's whole retry budget when the
        # API server is away: /readyz says so meanwhile, not just "starting".
        metrics.waiting_for = "waiting for the API server (checking for the CRDs)"
    while True:
        try:
            missing = await missing_resources(client)
        except ApiError as error:  # the API server away: the same wait, another reason
            missing = [f"the API server ({error})"]
        if not missing:
            if said:
                logger.info("the CRDs are installed: starting")
            if metrics is not None:
                metrics.waiting_for = None
            return True
        waiting = "waiting for the CRDs: " + ", ".join(missing)
        if metrics is not None:
            metrics.waiting_for = waiting
        if not said:
            logger.warning("%s (kubectl apply -f crds/, or install the chart)", waiting)
            said = True
        if stop_flag is not None and stop_flag.is_set():
            return False
        await asyncio.sleep(interval)
