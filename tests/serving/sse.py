"""A small Server-Sent Events reader for the stream tests (and the benchmark).

:func:`messages` parses an aiohttp response body into :class:`Message`
values, comments included (``event`` is ``":"`` for a comment line), so a
test sees heartbeats as well as events.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class Message:
    event: str
    data: str = ""
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


async def messages(response: aiohttp.ClientResponse) -> AsyncIterator[Message]:
    """The messages of an SSE response, until the server closes it."""
    fields: dict[str, str] = {}
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\n").rstrip("\r")
        if not line:
            if data:  # a block without data (retry:) dispatches nothing
                yield Message(fields.get("event", "message"), "\n".join(data), fields.get("id"))
            fields, data = {}, []
        elif line.startswith(":"):
            yield Message(":", line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
