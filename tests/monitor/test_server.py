"""The live dashboard's server: loopback, history for late joiners, clients that vanish
or stall never disturb log(), finish() leaves nothing running, user strings escaped."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import psutil
import pytest

import flowdl as fl
from flowdl._monitor.hub import CLIENT_QUEUE_SIZE
from flowdl._monitor.server import DashboardServer
from tests.monitor.conftest import FakeClock
from tests.monitor.sse import get, open_stream, read_events

HOSTILE = '</script><img src=x onerror="alert(1)">&amp;\u2028'


@pytest.fixture
def monitor() -> Iterator[fl.Monitor]:
    made = fl.Monitor(50, output=io.StringIO(), resources=False, clock=FakeClock(), title="run")
    yield made
    made.finish()


def served(monitor: fl.Monitor) -> DashboardServer:
    server = monitor._server
    assert server is not None
    return server


def wait_until(condition: object, what: str, seconds: float = 10.0) -> None:
    """Poll `condition` (a callable) until it holds; fail naming `what` after `seconds`."""
    end = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def dashboard_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("flowdl-dashboard")]


def test_binds_to_loopback(monitor: fl.Monitor) -> None:
    url = monitor.serve()
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    assert served(monitor).address[0] == "127.0.0.1"
    listening = [
        c
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == parts.port
    ]
    assert [c.laddr.ip for c in listening] == ["127.0.0.1"]
    assert monitor.url == url
    assert "dashboard: " + url in monitor._writer._output.getvalue()  # type: ignore[union-attr]


def test_other_host_names_are_refused_on_loopback(monitor: fl.Monitor) -> None:
    url = monitor.serve()
    status, _, body = get(url, "/", host="attacker.example:8080")
    assert status == 403
    assert b"loopback names" in body
    assert get(url, "/", host=f"localhost:{urlsplit(url).port}")[0] == 200


def test_binding_another_address_is_explicit_and_said(monitor: fl.Monitor) -> None:
    url = monitor.serve(host="0.0.0.0")
    assert served(monitor).address[0] == "0.0.0.0"
    assert url.startswith("http://0.0.0.0:")
    assert "reachable from other machines" in monitor._writer._output.getvalue()  # type: ignore[union-attr]
    port = urlsplit(url).port
    assert port is not None
    assert get(f"http://127.0.0.1:{port}/", "/", host="anything.example")[0] == 200


def test_page_assets_and_404(monitor: fl.Monitor) -> None:
    url = monitor.serve()
    status, headers, body = get(url, "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"<script src=" not in body  # the chart code is inside the page
    assert b"window.flowdlCharts" in body
    assert b"connect-src 'self'" in body
    assert len(body) < 100_000
    assert get(url, "/nothing")[0] == 404


def test_late_joiner_gets_the_history_then_live_epochs(monitor: fl.Monitor) -> None:
    monitor.log(1, {"loss": 1.0})
    monitor.log(2, {"loss": 0.5})
    url = monitor.serve()
    monitor.log(3, {"loss": 0.25})
    stream = open_stream(url)
    history = read_events(stream, 4)
    assert [kind for kind, _ in history] == ["meta", "epoch", "epoch", "epoch"]
    assert history[0][1]["total_epochs"] == 50
    assert history[0][1]["title"] == "run"
    assert [data["epoch"] for _, data in history[1:]] == [1, 2, 3]
    assert [data["metrics"]["loss"] for _, data in history[1:]] == [1.0, 0.5, 0.25]
    assert history[3][1]["text"]["metrics"]["loss"] == "0.2500"
    monitor.log(4, {"loss": 0.125})
    monitor.log(5, {"loss": float("nan")})
    live = read_events(stream, 2)
    assert [data["epoch"] for _, data in live] == [4, 5]
    assert live[1][1]["metrics"]["loss"] is None
    assert live[1][1]["text"]["metrics"]["loss"] == "nan"
    monitor.finish()
    assert read_events(stream, 1)[0][0] == "finish"
    assert stream.read() == b""  # the server ended the stream
    stream.close()


def test_two_clients_see_the_same_events(monitor: fl.Monitor) -> None:
    url = monitor.serve()
    first, second = open_stream(url), open_stream(url)
    wait_until(lambda: monitor._hub.client_count() == 2, "two clients")
    for epoch in (1, 2, 3):
        monitor.log(epoch, {"loss": 1.0 / epoch})
    assert read_events(first, 4) == read_events(second, 4)
    first.close()
    second.close()


def test_a_client_that_disconnects_mid_stream_does_not_disturb_log(monitor: fl.Monitor) -> None:
    url = monitor.serve()
    stream = open_stream(url)
    monitor.log(1, {"loss": 1.0})
    read_events(stream, 2)
    stream.close()  # the browser tab is closed
    for epoch in range(2, 12):
        monitor.log(epoch, {"loss": 1.0 / epoch})  # no exception, no wait
    wait_until(lambda: monitor._hub.client_count() == 0, "the server to notice")
    assert [row["epoch"] for row in monitor.history] == list(range(1, 12))
    late = open_stream(url)
    assert len(read_events(late, 12)) == 12
    late.close()


def test_a_stalled_client_is_dropped_and_never_blocks_log() -> None:
    monitor = fl.Monitor(600, output=io.StringIO(), resources=False)
    url = monitor.serve()
    port = urlsplit(url).port
    assert port is not None
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(b"GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads
    wait_until(lambda: monitor._hub.client_count() == 1, "the stalled client to subscribe")
    (client,) = monitor._hub._clients
    big = {f"metric number {i:03d}": float(i) for i in range(400)}
    for epoch in range(1, 601):
        monitor.log(epoch, big)  # ~40 KB an event: the server's write blocks within 100
    assert client.dropped  # it fell more than CLIENT_QUEUE_SIZE events behind
    assert CLIENT_QUEUE_SIZE < 600
    wait_until(lambda: monitor._hub.client_count() == 0, "the dropped client to go")
    monitor.finish()
    assert dashboard_threads() == []
    stalled.close()


def test_finish_ends_a_stream_whose_write_is_blocked() -> None:
    monitor = fl.Monitor(150, output=io.StringIO(), resources=False)
    port = urlsplit(monitor.serve()).port
    assert port is not None
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(b"GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    wait_until(lambda: monitor._hub.client_count() == 1, "the client to subscribe")
    big = {f"metric number {i:03d}": float(i) for i in range(400)}
    for epoch in range(1, 151):
        monitor.log(epoch, big)
    monitor.finish()  # shuts the connection rather than waiting for the reader
    assert monitor._hub.client_count() == 0
    assert dashboard_threads() == []
    stalled.close()


def test_a_client_too_far_behind_is_dropped() -> None:
    from flowdl._monitor.hub import EventHub

    hub = EventHub()
    _, client = hub.subscribe(None)
    for epoch in range(CLIENT_QUEUE_SIZE + 1):
        hub.add_epoch({"epoch": epoch})
    assert client.dropped
    assert client.next(timeout=0.0) == client.CLOSED


def test_finish_stops_the_server_and_its_threads() -> None:
    before = set(threading.enumerate())
    monitor = fl.Monitor(5, output=io.StringIO(), resources=False)
    url = monitor.serve()
    streams = [open_stream(url) for _ in range(3)]
    wait_until(lambda: monitor._hub.client_count() == 3, "three clients")
    assert len(dashboard_threads()) == 4  # the acceptor and one per stream
    monitor.log(1)
    monitor.finish()
    assert dashboard_threads() == []
    assert set(threading.enumerate()) <= before
    assert monitor.url is None
    port = urlsplit(url).port
    assert port is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    for stream in streams:
        with contextlib.suppress(OSError):
            stream.read()
        stream.close()
    monitor.finish()  # again: nothing to do


def test_serve_is_checked(monitor: fl.Monitor) -> None:
    with pytest.raises(ValueError, match="port is out of range"):
        monitor.serve(port=70000)
    url = monitor.serve()
    with pytest.raises(ValueError, match="already served") as caught:
        monitor.serve()
    assert url in str(caught.value)
    other = fl.Monitor(2, output=io.StringIO(), resources=False)
    port = urlsplit(url).port
    with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1") as refused:
        other.serve(port=port or 0)
    assert "port=0 for a free one" in str(refused.value)
    other.finish()
    with pytest.raises(ValueError, match="has finished"):
        other.serve()


def test_hostile_metric_names_are_escaped(monitor: fl.Monitor) -> None:
    monitor = fl.Monitor(3, output=io.StringIO(), resources=False, title=HOSTILE)
    try:
        url = monitor.serve()
        monitor.log(1, {HOSTILE: 1.0})
        _status, _, body = get(url, "/")
        page = body.decode("utf-8")
        assert "<img src=x" not in page
        assert "&lt;/script&gt;&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
        stream = open_stream(url)
        events = read_events(stream, 2)
        assert events[1][1]["names"] == [HOSTILE]  # JSON carries it intact
        stream.close()
    finally:
        monitor.finish()


def test_watch_sends_the_drawing_or_says_why_not(monitor: fl.Monitor) -> None:
    class Drawn:
        label = "model"

        def svg(self) -> str:
            return '<svg xmlns="http://www.w3.org/2000/svg"><text>x</text></svg>'

    class NoGraphviz:
        def svg(self) -> str:
            raise RuntimeError("install Graphviz: apt-get install graphviz")

    url = monitor.serve()
    monitor.watch(NoGraphviz())
    stream = open_stream(url)
    _, graph = read_events(stream, 2)[1]
    assert graph["svg"] is None
    assert (
        graph["message"]
        == "the graph could not be drawn: install Graphviz: apt-get install graphviz"
    )
    monitor.watch(Drawn())
    _, graph = read_events(stream, 1)[0]
    assert graph["label"] == "model"
    assert graph["svg"].startswith("<svg")
    monitor.watch(object())
    _, graph = read_events(stream, 1)[0]
    assert graph["message"] == "object has no svg() method to draw itself"
    stream.close()
    late = open_stream(url)
    kinds = [kind for kind, _ in read_events(late, 2)]
    assert kinds == ["meta", "graph"]  # only the latest drawing is replayed
    late.close()
