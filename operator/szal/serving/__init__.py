"""The live surface: one aiohttp application with the REST API, the stream
hub (SSE and WebSocket) and, later, the web UI (DESIGN.md section 8).

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
- :mod:`szal.serving.app` - the application factory and its settings.
"""
