"""The dashboard under many clients: one shared history, a connection cap answered 503,
idle connections timed out, a long listen backlog, and log() never waiting."""

from __future__ import annotations

import gc
import io
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import psutil
import pytest

import flowdl as fl
from flowdl._monitor import server
from tests.monitor.sse import get, open_stream

MB = 1024 * 1024


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stalled_client(port: int) -> socket.socket:
    """A client that asks for the event stream and never reads a byte of it."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    client.sendall(b"GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    return client


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def test_200_clients_that_never_read_share_one_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 256)  # hold all 200, none refused
    monkeypatch.setattr(server._Handler, "timeout", 120.0)  # stay stalled while measured
    monitor = fl.Monitor(10_000, output=io.StringIO(), resources=False)
    metrics = {f"metric number {i:03d}": float(i) for i in range(100)}
    for epoch in range(1, 501):
        monitor.log(epoch, metrics)
    history = sum(len(message) for message in monitor._hub.history())
    assert history > 3 * MB  # 200 copies of it would be 600 MB and more
    url = monitor.serve()
    port = urlsplit(url).port
    assert port is not None
    get(url, "/")  # warm the server's own allocations up
    before = rss()
    clients = [stalled_client(port) for _ in range(200)]
    try:
        wait_until(lambda: monitor._hub.client_count() == 200, "200 streams")
        logged = threading.Thread(
            target=lambda: [monitor.log(epoch, metrics) for epoch in range(501, 551)]
        )
        logged.start()
        logged.join(timeout=60.0)  # log never waits for a client: generous, not a timing
        assert not logged.is_alive(), "monitor.log blocked behind stalled clients"
        during = rss()
        assert monitor._hub.client_count() == 200  # still connected, still stalled
        added = (during - before) / MB
        assert added < 50, f"200 stalled clients added {added:.0f} MB"
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: monitor._hub.client_count() == 0, "the streams to end")
    assert monitor._server is not None
    wait_until(lambda: len(monitor._server.threads()) == 1, "the connection threads to end")
    after = rss()
    assert after - before < 50 * MB
    monitor.finish()


def test_connections_beyond_the_cap_are_answered_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 3)
    monitor = fl.Monitor(5, output=io.StringIO(), resources=False)
    try:
        url = monitor.serve()
        streams = [open_stream(url) for _ in range(3)]
        wait_until(lambda: monitor._hub.client_count() == 3, "three streams")
        status, headers, body = get(url, "/")
        assert status == 503
        assert headers["Retry-After"] == "5"
        assert b"too many connections" in body
        streams[0].close()
        wait_until(lambda: monitor._hub.client_count() == 2, "a stream to end")
        wait_until(lambda: get(url, "/")[0] == 200, "a free slot")
        for stream in streams[1:]:
            stream.close()
    finally:
        monitor.finish()


def test_a_connection_that_sends_nothing_is_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server._Handler, "timeout", 0.5)
    monitor = fl.Monitor(5, output=io.StringIO(), resources=False)
    try:
        port = urlsplit(monitor.serve()).port
        assert port is not None
        idle = socket.create_connection(("127.0.0.1", port))
        idle.settimeout(30.0)  # the server hangs up long before this
        assert idle.recv(1024) == b""  # closed by the server, without a request
        idle.close()
        assert monitor._server is not None
        wait_until(lambda: len(monitor._server.threads()) == 1, "the idle thread to end")
    finally:
        monitor.finish()


def test_the_listen_backlog_takes_a_burst() -> None:
    monitor = fl.Monitor(5, output=io.StringIO(), resources=False)
    try:
        url = monitor.serve()
        assert monitor._server is not None
        assert monitor._server._httpd.request_queue_size == server.LISTEN_BACKLOG >= 128
        host = urlsplit(url).hostname
        assert host == "127.0.0.1"  # loopback by default
    finally:
        monitor.finish()
