"""The live dashboard's HTTP server: the standard library's, in daemon threads.

``GET /`` the page (its chart code inlined), ``GET /events`` the Server-Sent-Events
stream (history first, then live events).
Bound to 127.0.0.1 unless told otherwise; on loopback it also refuses requests whose
``Host`` is not a loopback name, so a web page elsewhere cannot read the dashboard
through DNS rebinding.

Under many clients: at most `MAX_CONNECTIONS` connections are served at once (one
thread each); beyond that a connection is answered ``503`` and closed. A connection
that sends no request, or whose reader stops reading, is given up after
`SOCKET_TIMEOUT_SECONDS`. The listen backlog is `LISTEN_BACKLOG`, so a burst of
browsers connects without waiting for retransmissions. Every stream writes the hub's
shared bytes: a client costs a thread and its queue of references, not a copy of the
history.
"""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from flowdl._monitor.addresses import is_loopback
from flowdl._monitor.hub import Client, EventHub

# Seconds between keep-alive comments on an idle event stream.
HEARTBEAT_SECONDS = 15.0
# Seconds between checks that an idle stream's browser is still there.
_POLL_SECONDS = 1.0
# Seconds a connection may block a read or a write before it is given up.
SOCKET_TIMEOUT_SECONDS = 10.0
# Connections served at once; more are answered 503.
MAX_CONNECTIONS = 64
# Connections the kernel may hold waiting to be accepted.
LISTEN_BACKLOG = 128
# Over-cap connections being answered 503 at once; past this they are just closed.
_MAX_REFUSING = 32

_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 5\r\nConnection: close\r\nContent-Length: 58\r\n\r\n"
    b"the dashboard is serving too many connections; retry soon\n"
)


class DashboardServer:
    """Serves the dashboard page and the event stream of `hub` until `close`.

    Args:
        hub: the monitor's events.
        page: the live page's HTML.
        host: the address to bind.
        port: the port; 0 picks a free one.

    Raises:
        OSError: the address cannot be bound (in use, unknown host).
    """

    def __init__(self, hub: EventHub, page: str, host: str, port: int) -> None:
        self._httpd = _HTTPServer((host, port), hub, page.encode("utf-8"))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="flowdl-dashboard",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def address(self) -> tuple[str, int]:
        """The bound address and port, as the socket reports them."""
        bound = self._httpd.socket.getsockname()
        return str(bound[0]), int(bound[1])

    @property
    def url(self) -> str:
        """The page's URL."""
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def threads(self) -> list[threading.Thread]:
        """The server's threads still running (the acceptor and one per connection)."""
        alive = [self._thread] if self._thread.is_alive() else []
        return alive + self._httpd.connection_threads()

    def close(self, grace: float = 2.0) -> None:
        """Stop accepting, end every stream, and wait for the threads to end."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.hub.close_clients()
        self._httpd.join_connections(grace)
        self._httpd.hub.drop_clients()
        self._httpd.shut_connections()
        self._httpd.join_connections(grace)
        self._httpd.server_close()
        self._thread.join(grace)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], hub: EventHub, page: bytes) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.hub = hub
        self.page = page
        self.loopback_only = is_loopback(address[0])
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._connections_lock = threading.Lock()
        self._refusing = 0
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's full name, which can hang
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            full = len(self._connections) >= MAX_CONNECTIONS
            refuse = full and self._refusing < _MAX_REFUSING
            self._refusing += refuse
        if full:
            if refuse:
                threading.Thread(
                    target=self._refuse, args=(request,), name="flowdl-dashboard-503", daemon=True
                ).start()
            else:
                self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._serve_one,
            args=(request, client_address),
            name="flowdl-dashboard-connection",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[thread] = request
        thread.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(threading.current_thread(), None)

    def _refuse(self, request: socket.socket) -> None:
        """Answer 503 to a connection over the cap: read its request, reply, close."""
        try:
            request.settimeout(1.0)
            with contextlib.suppress(OSError):
                request.recv(65536)
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
        finally:
            self.shutdown_request(request)
            with self._connections_lock:
                self._refusing -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a browser closing a connection is not an error worth a traceback

    def connection_threads(self) -> list[threading.Thread]:
        with self._connections_lock:
            return [thread for thread in self._connections if thread.is_alive()]

    def shut_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections.values())
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def join_connections(self, timeout: float) -> None:
        for thread in self.connection_threads():
            thread.join(timeout)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = SOCKET_TIMEOUT_SECONDS
    server_version = "flowdl-dashboard"

    def do_GET(self) -> None:
        if not self._host_allowed():
            self._send(403, "text/plain; charset=utf-8", _MSG_HOST.encode("utf-8"))
            return
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", self.server.page)
        elif path == "/events":
            self._stream()
        elif path == "/favicon.ico":
            self._send(204, "image/x-icon", b"")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the training log is the terminal's; requests are not written there

    def _host_allowed(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = self.headers.get("Host", "")
        name = urlsplit(f"//{host}").hostname or ""
        return is_loopback(name)

    def _send(self, status: int, kind: str, body: bytes, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        history, client = self.server.hub.subscribe(self.connection)
        try:
            self.wfile.write(b"retry: 2000\n\n")
            for event in history:  # the hub's own bytes, written as they are
                self.wfile.write(event)
            del history
            quiet = 0.0
            while True:
                message: bytes | None = client.next(_POLL_SECONDS)
                if message == Client.CLOSED:
                    break
                if message is None:
                    if _hung_up(self.connection):
                        break  # the browser went away: free its slot now
                    quiet += _POLL_SECONDS
                    if quiet < HEARTBEAT_SECONDS:
                        continue
                    message = b": keep-alive\n\n"
                quiet = 0.0
                self.wfile.write(message)
        except (OSError, ValueError):
            pass  # the browser went away, or the stream was dropped
        finally:
            self.server.hub.unsubscribe(client)


def _hung_up(connection: socket.socket) -> bool:
    """Whether the peer closed `connection` (it sends nothing on an event stream)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


_MSG_HOST = (
    "This dashboard answers only to loopback names (127.0.0.1, localhost).\n"
    "Open it as http://127.0.0.1:PORT/ or through an SSH tunnel; to serve other\n"
    "hosts, start it with monitor.serve(host=...).\n"
)
