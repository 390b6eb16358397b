"""Reading the dashboard's event stream in tests, with http.client."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit


def open_stream(url: str, timeout: float = 10.0) -> http.client.HTTPResponse:
    """GET /events of the dashboard at `url`; the response is the open stream."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    connection.request("GET", "/events")
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    return response


def read_events(stream: http.client.HTTPResponse, count: int) -> list[tuple[str, Any]]:
    """The next `count` events of `stream` as ``(kind, data)``; comments and retry skipped."""
    events: list[tuple[str, Any]] = []
    kind, data = "message", ""
    while len(events) < count:
        line = stream.readline().decode("utf-8")
        if not line:
            raise AssertionError(f"the stream ended after {len(events)} events: {events}")
        line = line.rstrip("\n")
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            data += line[len("data: ") :]
        elif line == "" and data:
            events.append((kind, json.loads(data)))
            kind, data = "message", ""
    return events


def get(url: str, path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """A plain GET: status, headers, body."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10.0)
    headers = {"Host": host} if host is not None else {}
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body
