"""The live surface: one aiohttp application with the REST API, the stream
hub (SSE and WebSocket), the web UI and metrics (DESIGN.md section 8).

Who serves it: ``szal serve`` (local history, loopback only) and the
operator (``szal operator --api-port``). The package sits between the
runners and the CLI in the layers (``.importlinter``): it reads history
through :class:`~szal.history.store.ExecutionStore` and, on a cluster, live
runs through the Kubernetes runner's client; nothing below it knows it
exists. Modules:

- :mod:`szal.serving.encoding` - history records as JSON (one shape for REST and streams);
- :mod:`szal.serving.sources` - where runs come from (the history store; on a
  cluster, merged with live runs);
- :mod:`szal.serving.rest` - the ``/api/v1/`` handlers and their parameter checks;
- :mod:`szal.serving.openapi` - the OpenAPI document of that API;
- :mod:`szal.serving.hub` - one broadcast per run, bounded per-client buffers;
- :mod:`szal.serving.streaming` - the SSE and WebSocket handlers over the hub;
- :mod:`szal.serving.webui` - the web UI (static files in ``ui/``);
- :mod:`szal.serving.metrics` - run, step and stream metrics for Prometheus;
- :mod:`szal.serving.cluster`, :mod:`szal.serving.auth`,
  :mod:`szal.serving.notifying`, :mod:`szal.serving.operating` - the
  operator's side: live runs, TokenReview/SubjectAccessReview, the hub's
  notify hook, and the server ``--api-port`` starts;
- :mod:`szal.serving.app` - the application factory.
"""
