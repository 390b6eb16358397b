"""The dashboard's events: what a late joiner replays, and the clients that follow live.

Publishing never waits for a client. Every event is encoded once, and every client
shares those bytes (the history a late joiner replays is the same objects, never a
copy per client). Each client has its own bounded queue of references; a client that
falls too far behind (too many events, or too many bytes) is dropped (its connection
is shut), so a slow or vanished browser cannot block `Monitor.log` or grow memory.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
from typing import Any, NamedTuple

# How many unsent events a client may have before it is dropped.
CLIENT_QUEUE_SIZE = 512
# How many bytes of unsent events a client may have before it is dropped.
CLIENT_QUEUE_BYTES = 8 * 1024 * 1024


def sse_message(kind: str, data: Any) -> str:
    """One Server-Sent Event: ``event: kind`` and its JSON data on one line.

    Example:
        >>> sse_message("epoch", {"epoch": 1})
        'event: epoch\\ndata: {"epoch":1}\\n\\n'
    """
    payload = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return f"event: {kind}\ndata: {payload}\n\n"


class _Event(NamedTuple):
    kind: str
    data: dict[str, Any]
    message: bytes  # the Server-Sent Event, UTF-8: encoded once, shared by every client


def _event(kind: str, data: dict[str, Any]) -> _Event:
    return _Event(kind, data, sse_message(kind, data).encode("utf-8"))


class Client:
    """One connected event stream: a bounded queue of messages waiting to be sent.

    The queue holds the hub's shared bytes (no copies), at most `CLIENT_QUEUE_SIZE`
    messages and `CLIENT_QUEUE_BYTES` bytes; past either bound the client is dropped.
    """

    CLOSED = b"\x00closed"

    def __init__(self, connection: socket.socket | None) -> None:
        self._queue: queue.Queue[bytes] = queue.Queue(CLIENT_QUEUE_SIZE)
        self._connection = connection
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self.dropped = False

    def offer(self, message: bytes) -> None:
        """Queue `message`, or drop the client if its queue is full. Never blocks."""
        if self.dropped:
            return
        with self._bytes_lock:
            if self._queued_bytes + len(message) > CLIENT_QUEUE_BYTES:
                self.drop()
                return
            self._queued_bytes += len(message)
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.drop()

    def next(self, timeout: float) -> bytes | None:
        """The next message, `CLOSED` at the end, or ``None`` after `timeout` seconds."""
        if self.dropped:
            return self.CLOSED
        try:
            message = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._bytes_lock:
            self._queued_bytes -= len(message)
        return message

    def close(self) -> None:
        """End the stream once the queued messages are sent."""
        try:
            self._queue.put_nowait(self.CLOSED)
        except queue.Full:
            self.drop()

    def drop(self) -> None:
        """End the stream now: shut the connection so a blocked write returns."""
        self.dropped = True
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.shutdown(socket.SHUT_RDWR)


class EventHub:
    """The monitor's events in order, shared between the training thread and the server.

    A late joiner gets ``meta``, the latest ``graph``, every ``epoch`` and ``finish``
    (if training has finished), then live events. Subscribing takes the snapshot and
    registers the client under one lock, so no event is missed or sent twice.

    Example:
        >>> hub = EventHub()
        >>> hub.set_meta({"total_epochs": 2})
        >>> hub.add_epoch({"epoch": 1})
        >>> history, client = hub.subscribe(None)
        >>> [message.split(b"\\n")[0] for message in history]
        [b'event: meta', b'event: epoch']
        >>> hub.add_epoch({"epoch": 2}); client.next(timeout=1.0).split(b"\\n")[1]
        b'data: {"epoch":2}'
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta: _Event | None = None
        self._graph: _Event | None = None
        self._epochs: list[_Event] = []
        self._finish: _Event | None = None
        self._clients: set[Client] = set()

    def set_meta(self, data: dict[str, Any]) -> None:
        """Set the run's description (title, total epochs)."""
        self._replace("meta", data)

    def set_graph(self, data: dict[str, Any]) -> None:
        """Set the graph panel (a newer drawing replaces the older one)."""
        self._replace("graph", data)

    def set_finish(self, data: dict[str, Any]) -> None:
        """Mark the run finished."""
        self._replace("finish", data)

    def add_epoch(self, data: dict[str, Any]) -> None:
        """Add one epoch."""
        event = _event("epoch", data)
        with self._lock:
            self._epochs.append(event)
            self._broadcast(event.message)

    def history(self) -> list[bytes]:
        """Every event a late joiner receives, in order, as Server-Sent Events (shared)."""
        with self._lock:
            return [event.message for event in self._snapshot()]

    def events(self) -> list[dict[str, Any]]:
        """The same events as ``{"type": kind, "data": data}`` (for a frozen page)."""
        with self._lock:
            return [{"type": event.kind, "data": event.data} for event in self._snapshot()]

    def subscribe(self, connection: socket.socket | None) -> tuple[list[bytes], Client]:
        """The history so far (the hub's own bytes) and a new client for what follows."""
        client = Client(connection)
        with self._lock:
            self._clients.add(client)
            return [event.message for event in self._snapshot()], client

    def unsubscribe(self, client: Client) -> None:
        """Forget `client` (its stream has ended)."""
        with self._lock:
            self._clients.discard(client)

    def client_count(self) -> int:
        """How many streams are connected."""
        with self._lock:
            return len(self._clients)

    def close_clients(self) -> None:
        """Ask every stream to end after its queued events."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.close()

    def drop_clients(self) -> None:
        """End every stream now."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.drop()

    def _replace(self, kind: str, data: dict[str, Any]) -> None:
        event = _event(kind, data)
        with self._lock:
            setattr(self, f"_{kind}", event)
            self._broadcast(event.message)

    def _snapshot(self) -> list[_Event]:
        head = [message for message in (self._meta, self._graph) if message is not None]
        tail = [self._finish] if self._finish is not None else []
        return head + self._epochs + tail

    def _broadcast(self, message: bytes) -> None:
        for client in self._clients:
            client.offer(message)
