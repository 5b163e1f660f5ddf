"""Tests of the reactor's HTTP server, with real sockets on loopback."""

import dataclasses
import http.client
import logging
import queue
import socket
import threading
import time

import pytest

from mapreduce.localcluster import wait_for
from mapreduce.reactor import HttpServer
from mapreduce.reactor.net import format_peer
from mapreduce.reactor.web import HTTP_LIMITS

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"
WAIT = 5.0  # Seconds to wait for something that should happen at once.
PAGE = b"<!doctype html><title>t</title>" + b"p" * 1000


class Site:
    """A handler that records requests and answers from a table."""

    def __init__(self, answers=None):
        """Answer paths in `answers`; anything else is a 404."""
        self.answers = {"/": (200, "text/html; charset=utf-8", PAGE)}
        self.answers.update(answers or {})
        self.requests = []

    def handle(self, method, path):
        """Record the request and look up its answer."""
        self.requests.append((method, path))
        answer = self.answers.get(path, (404, "text/plain", b"nothing\n"))
        if callable(answer):
            return answer()
        return answer


@pytest.fixture(name="site")
def fixture_site():
    """Give a fresh Site."""
    return Site()


def start(loop, site, **limits):
    """Start an HttpServer for `site` on `loop`, with changed limits."""
    return loop.call(lambda: HttpServer(
        loop.reactor, HOST, 0, site.handle,
        dataclasses.replace(HTTP_LIMITS, **limits)))


@pytest.fixture(name="server")
def fixture_server(loop, site):
    """Give an HttpServer with the default limits."""
    server = loop.call(lambda: HttpServer(loop.reactor, HOST, 0,
                                          site.handle))
    yield server
    loop.call(server.close)


def exchange(port, data, timeout=WAIT):
    """Send raw `data`, half-close, and return everything answered."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def read_all(sock):
    """Read `sock` to EOF; a reset after some data counts as EOF."""
    answer = bytearray()
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    except ConnectionResetError:
        pass
    return bytes(answer)


def parse(response):
    """Return (status, headers dict, body) of raw response bytes."""
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split(" ")[1]), headers, body


def get(port, path="/", timeout=WAIT):
    """GET `path` with http.client; return (status, headers, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def infos(caplog):
    """Return the messages of the INFO records logged so far."""
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.INFO]


def test_get_answers_with_the_handlers_answer(server, site):
    """A GET gets the handler's status, type and body, and closes."""
    status, headers, body = get(server.port, "/?refresh=1")
    assert (status, body) == (200, PAGE)
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Length"] == str(len(PAGE))
    assert headers["Connection"] == "close"
    assert site.requests == [("GET", "/")]
    status, _, body = get(server.port, "/api/jobs/7")
    assert (status, body) == (404, b"nothing\n")
    assert site.requests[-1] == ("GET", "/api/jobs/7")


def test_status_line_uses_the_standard_phrase(server):
    """The reason phrase is http.HTTPStatus's."""
    response = exchange(server.port, b"GET /x HTTP/1.0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 404 Not Found\r\n")


def test_head_gets_the_head_only(server, site):
    """HEAD is answered like GET, without the body."""
    response = exchange(server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = parse(response)
    assert status == 200
    assert headers["Content-Length"] == str(len(PAGE))
    assert body == b""
    assert site.requests == [("HEAD", "/")]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "get"])
def test_other_methods_are_not_allowed(server, site, method):
    """Methods other than GET and HEAD get 405 and never reach the site."""
    response = exchange(server.port,
                        f"{method} / HTTP/1.1\r\n\r\n".encode())
    status, headers, _ = parse(response)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert not site.requests


@pytest.mark.parametrize("head, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\n\r\n", 400),
    (b"GET nopath HTTP/1.1\r\n\r\n", 400),
    (b"GET / FTP/1.0\r\n\r\n", 400),
    (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
])
def test_malformed_requests_are_refused(server, site, caplog, head, status):
    """A malformed request is answered with an error, logged, not served."""
    caplog.set_level(logging.INFO)
    assert parse(exchange(server.port, head))[0] == status
    assert not site.requests
    assert any(f"{status}" in message for message in infos(caplog))
    assert get(server.port)[0] == 200


def test_bare_newlines_end_a_head_too(server, site):
    """A head ended by two bare newlines is understood."""
    assert parse(exchange(server.port, b"GET / HTTP/1.0\n\n"))[0] == 200
    assert site.requests == [("GET", "/")]


def test_a_probe_without_bytes_is_closed_quietly(server, site, caplog):
    """A connection that sends nothing and closes gets nothing."""
    caplog.set_level(logging.INFO)
    assert exchange(server.port, b"") == b""
    assert not site.requests
    assert not infos(caplog)


def test_oversized_head_is_refused(loop, site):
    """A head over the size limit gets 431 and never reaches the site."""
    server = start(loop, site, max_size=2048)
    try:
        small = b"GET / HTTP/1.1\r\nX: " + b"a" * 1900 + b"\r\n\r\n"
        assert parse(exchange(server.port, small))[0] == 200
        for big in (b"GET / HTTP/1.1\r\nX: " + b"a" * 3000 + b"\r\n\r\n",
                    b"GET /" + b"a" * 100000):
            assert parse(exchange(server.port, big))[0] == 431
        assert site.requests == [("GET", "/")]
    finally:
        loop.call(server.close)


def test_slow_loris_is_cut_off_and_others_are_served(loop, site, caplog):
    """A client trickling its head gets 408 at the time limit.

    Meanwhile others are answered, while it is still connected.
    """
    caplog.set_level(logging.INFO)
    head_timeout = 3.0
    server = start(loop, site, read_timeout=head_timeout)
    try:
        with socket.create_connection((HOST, server.port),
                                      timeout=WAIT) as slow:
            peer = format_peer(slow.getsockname())
            start_time = time.monotonic()
            for piece in (b"GET / HT", b"TP/1.1\r\n", b"X-a: 1\r\n"):
                slow.sendall(piece)
                assert get(server.port)[0] == 200
                assert loop.call(lambda: peer in [
                    connection.peer for connection in server.connections()])
            response = read_all(slow)
            waited = time.monotonic() - start_time
        assert parse(response)[0] == 408
        assert head_timeout - 0.1 <= waited < head_timeout + 1.0
        assert site.requests == [("GET", "/")] * 3
        assert any("408" in message for message in infos(caplog))
    finally:
        loop.call(server.close)


def test_client_that_never_reads_is_cut_off(loop, site, caplog):
    """A client that never reads a large answer is closed at the deadline.

    Meanwhile others are answered, while it is still connected: a loop
    that waited on it would answer them only once it is cut off.
    """
    caplog.set_level(logging.DEBUG)
    site.answers["/big"] = (200, "application/octet-stream",
                            b"b" * (32 << 20))
    write_timeout = 3.0
    server = start(loop, site, write_timeout=write_timeout)
    try:
        with socket.create_connection((HOST, server.port),
                                      timeout=WAIT) as stuck:
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.sendall(b"GET /big HTTP/1.1\r\n\r\n")
            peer = format_peer(stuck.getsockname())
            start_time = time.monotonic()
            for _ in range(5):
                assert get(server.port)[0] == 200
                assert loop.call(lambda: peer in [
                    connection.peer for connection in server.connections()])
            wait_for(lambda: loop.call(
                lambda: server.open_connections) == 0, WAIT)
            waited = time.monotonic() - start_time
        assert write_timeout - 0.2 <= waited < write_timeout + 1.0
        assert "not taken within the write deadline" in caplog.text
    finally:
        loop.call(server.close)


def test_many_clients_at_once(loop, site):
    """100 clients with half-sent heads at once are all answered."""
    server = start(loop, site, max_connections=200)
    clients = []
    try:
        for number in range(100):
            client = socket.create_connection((HOST, server.port),
                                              timeout=WAIT)
            clients.append(client)
            client.sendall(f"GET /{number} HT".encode())
        for client in clients:
            client.sendall(b"TP/1.1\r\n\r\n")
        statuses = [parse(read_all(client))[0] for client in clients]
    finally:
        for client in clients:
            client.close()
        loop.call(server.close)
    assert statuses == [404] * 100
    assert sorted(path for _, path in site.requests) == sorted(
        f"/{number}" for number in range(100))


def test_connection_cap_drops_the_oldest(loop, site, caplog):
    """Past the connection cap the oldest idle client goes; work goes on."""
    caplog.set_level(logging.WARNING)
    server = start(loop, site, max_connections=4)
    idle = []
    try:
        for _ in range(10):
            idle.append(socket.create_connection((HOST, server.port),
                                                 timeout=WAIT))
        asked = time.monotonic()
        assert get(server.port)[0] == 200
        assert time.monotonic() - asked < 0.5
        assert read_all(idle[0]) == b""
        assert loop.call(lambda: server.open_connections) <= 4
        assert "Too many open connections" in caplog.text
    finally:
        for client in idle:
            client.close()
        loop.call(server.close)


@pytest.mark.parametrize("answer", [
    lambda: 1 / 0,
    lambda: (999, "text/plain", b"x"),
    lambda: (200, "text/plain\r\nSet-Cookie: a=b", b"x"),
    lambda: (200, "text/plain", "not bytes"),
    lambda: (200, "text/plain"),
    lambda: None,
])
def test_a_failing_handler_gives_500(server, site, caplog, answer):
    """A handler that raises or answers nonsense gives 500, logged."""
    site.answers["/bad"] = answer
    caplog.set_level(logging.ERROR)
    status, headers, _ = get(server.port, "/bad")
    assert status == 500
    assert "Set-Cookie" not in headers
    assert "Error in HTTP handler" in caplog.text
    assert get(server.port)[0] == 200


def test_close_drops_open_connections(loop, site):
    """Closing the server closes its connections and its port."""
    server = start(loop, site)
    with socket.create_connection((HOST, server.port), timeout=WAIT) as idle:
        idle.sendall(b"GET / HT")
        loop.sync()
        loop.call(server.close)
        assert read_all(idle) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, server.port), timeout=WAIT)


def test_served_from_another_thread_while_busy(loop, site):
    """Requests from several threads at once are all answered."""
    results = queue.Queue()

    def fetch():
        """GET the page and report the status."""
        results.put(get(server.port)[0])

    server = start(loop, site)
    try:
        threads = [threading.Thread(target=fetch) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert [results.get(timeout=WAIT) for _ in threads] == [200] * 20
    finally:
        loop.call(server.close)
