"""Tests of the reactor's network parts, with real sockets on loopback."""

import json
import logging
import os
import queue
import select
import socket
import threading
import time

import pytest

from mapreduce.reactor import (
    DatagramServer, MessageServer, Reactor, send_datagram, send_message,
)

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"
WAIT = 5.0  # Seconds to wait for something that should happen at once.


def start_server(loop, **options):
    """Start a MessageServer on `loop`; return it and its message queue."""
    messages = queue.Queue()
    server = loop.call(lambda: MessageServer(loop.reactor, HOST, 0,
                                             messages.put, **options))
    return server, messages


def connect(port):
    """Return a blocking client socket connected to `port` on loopback."""
    return socket.create_connection((HOST, port), timeout=WAIT)


def send_raw(port, data):
    """Send `data` on a fresh connection to `port`, then close it."""
    with connect(port) as sock:
        sock.sendall(data)


def wait_closed(sock, timeout=WAIT):
    """Wait until the peer closes `sock`; return how long that took."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def warnings_in(caplog):
    """Return the messages of the warnings logged so far."""
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.WARNING]


class Outcome:
    """Collect what send_message reports, for the test thread to wait on."""

    def __init__(self):
        """Start with nothing reported."""
        self.sent = []
        self.errors = []
        self.when = None
        self.done = threading.Event()

    def on_sent(self):
        """Record a successful send."""
        self.sent.append(True)
        self.when = time.monotonic()
        self.done.set()

    def on_error(self, error):
        """Record a failed send."""
        self.errors.append(error)
        self.when = time.monotonic()
        self.done.set()


@pytest.fixture(name="server")
def fixture_server(loop):
    """Give a MessageServer with default limits and its message queue."""
    server, messages = start_server(loop)
    yield server, messages
    loop.call(server.close)


@pytest.fixture(name="unanswered_port")
def fixture_unanswered_port():
    """Give a loopback port whose listen queue is full: connects hang.

    The listening socket never accepts and has a backlog of 0; connections
    are made until one of them gets no answer, so the next will not either.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.setblocking(False)
            filler.connect_ex((HOST, port))
            if not select.select([], [filler], [], 0.25)[1]:
                break
        else:
            pytest.skip("this kernel answers every connect on loopback")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_message_is_delivered(loop, server):
    """A message sent with send_message arrives exactly; on_sent runs."""
    server, messages = server
    message = {"type": "hello", "n": [1, 2.5, None, True],
               "text": "caf\u00e9 \u2603", "nested": {"a": {"b": []}}}
    outcome = Outcome()
    loop.call(lambda: send_message(loop.reactor, HOST, server.port, message,
                                   on_sent=outcome.on_sent,
                                   on_error=outcome.on_error))
    assert messages.get(timeout=WAIT) == message
    assert outcome.done.wait(WAIT)
    assert outcome.sent == [True]
    assert not outcome.errors


def test_large_message_is_delivered(loop, server):
    """A message near the size limit arrives whole."""
    server, messages = server
    message = {"blob": "x" * (900 * 1024)}
    outcome = Outcome()
    loop.call(lambda: send_message(loop.reactor, "localhost", server.port,
                                   message, on_sent=outcome.on_sent,
                                   on_error=outcome.on_error))
    assert messages.get(timeout=WAIT) == message
    assert outcome.done.wait(WAIT)
    assert outcome.sent == [True]


def test_send_without_callbacks(loop, server):
    """send_message works when the caller wants no report."""
    server, messages = server
    loop.call(send_message, loop.reactor, HOST, server.port, {"quiet": 1})
    assert messages.get(timeout=WAIT) == {"quiet": 1}


def test_two_hundred_concurrent_clients(server):
    """200 clients connected at the same time each get their message in."""
    server, messages = server
    clients = []
    try:
        payloads = [json.dumps({"client": number, "pad": "y" * number})
                    .encode() for number in range(200)]
        for payload in payloads:
            client = connect(server.port)
            clients.append(client)
            client.sendall(payload[:len(payload) // 2])
        # All 200 connections are open with half a message each.
        for client, payload in zip(clients, payloads):
            client.sendall(payload[len(payload) // 2:])
            client.shutdown(socket.SHUT_WR)
        received = [messages.get(timeout=WAIT) for _ in payloads]
    finally:
        for client in clients:
            client.close()
    assert sorted(message["client"] for message in received) == list(
        range(200))
    assert all(message["pad"] == "y" * message["client"]
               for message in received)


def test_two_hundred_concurrent_sends(loop, server):
    """200 send_message calls at once all arrive and all report success."""
    server, messages = server
    outcomes = [Outcome() for _ in range(200)]

    def send_all():
        """Start every send in the same turn of the loop."""
        for number, outcome in enumerate(outcomes):
            send_message(loop.reactor, HOST, server.port, {"n": number},
                         on_sent=outcome.on_sent, on_error=outcome.on_error)

    loop.call(send_all)
    received = sorted(messages.get(timeout=WAIT)["n"] for _ in outcomes)
    assert received == list(range(200))
    for outcome in outcomes:
        assert outcome.done.wait(WAIT)
        assert outcome.sent == [True]


def test_silent_and_oversize_clients_do_not_delay_others(loop, caplog):
    """A silent and an oversize client do not hold up a normal message."""
    read_timeout = 1.5
    server, messages = start_server(loop, max_size=1000,
                                    read_timeout=read_timeout)
    caplog.set_level(logging.WARNING)
    try:
        start = time.monotonic()
        silent = connect(server.port)
        oversize = connect(server.port)
        try:
            oversize.sendall(b"[" + b"1," * 2000)
            # Neither client closes: alone, each would hold a connection.
            sent = time.monotonic()
            send_raw(server.port, b'{"normal": true}')
            assert messages.get(timeout=WAIT) == {"normal": True}
            assert time.monotonic() - sent < 0.5
            assert wait_closed(oversize) < 0.5
            assert time.monotonic() - start < read_timeout
            loop.sync()
            assert any("larger than 1000 bytes" in warning
                       for warning in warnings_in(caplog))
            wait_closed(silent)
            waited = time.monotonic() - start
            assert read_timeout - 0.1 <= waited < read_timeout + 1.0
            loop.sync()
            assert any("not finished within" in warning
                       for warning in warnings_in(caplog))
        finally:
            silent.close()
            oversize.close()
        assert messages.empty()
    finally:
        loop.call(server.close)


def test_slow_client_finishing_in_time_is_delivered(loop):
    """A message sent in pieces arrives if it ends before the deadline."""
    server, messages = start_server(loop, read_timeout=2.0)
    try:
        with connect(server.port) as client:
            for piece in (b'{"sl', b'ow": ', b"[1, 2", b"]}"):
                client.sendall(piece)
                loop.sync()
            client.shutdown(socket.SHUT_WR)
            assert messages.get(timeout=WAIT) == {"slow": [1, 2]}
    finally:
        loop.call(server.close)


@pytest.mark.parametrize("data, reason", [
    (b'{"unfinished": ', "not valid JSON"),
    (b"\xff\xfe not text", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b'"a string"', "not a JSON object"),
    (b"42", "not a JSON object"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
])
def test_bad_messages_are_logged_and_dropped(loop, server, caplog, data,
                                             reason):
    """Invalid JSON and non-objects are logged and dropped; work goes on."""
    server, messages = server
    caplog.set_level(logging.WARNING)
    with connect(server.port) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        wait_closed(client)
    loop.sync()
    assert any(reason in warning for warning in warnings_in(caplog))
    send_raw(server.port, b'{"after": "bad"}')
    assert messages.get(timeout=WAIT) == {"after": "bad"}
    assert messages.empty()


def test_oldest_connection_is_dropped_beyond_the_limit(loop, caplog):
    """Past max_connections the oldest is closed; messages still arrive."""
    server, messages = start_server(loop, max_connections=3)
    caplog.set_level(logging.WARNING)
    idle = []
    try:
        for _ in range(3):
            idle.append(connect(server.port))
            loop.sync()
        oldest_port = idle[0].getsockname()[1]
        send_raw(server.port, b'{"number": 4}')
        assert messages.get(timeout=WAIT) == {"number": 4}
        assert wait_closed(idle[0]) < 0.5
        loop.sync()
        assert (f"Too many open connections: dropped {HOST}:{oldest_port}"
                in warnings_in(caplog))
        for client in idle[1:]:
            client.setblocking(False)
            with pytest.raises(BlockingIOError):
                client.recv(1)
        for client in idle[1:]:
            client.sendall(b'{"from": "idle"}')
            client.shutdown(socket.SHUT_WR)
        assert messages.get(timeout=WAIT) == {"from": "idle"}
        assert messages.get(timeout=WAIT) == {"from": "idle"}
        send_raw(server.port, b'{"number": 5}')
        assert messages.get(timeout=WAIT) == {"number": 5}
    finally:
        for client in idle:
            client.close()
        loop.call(server.close)


def test_refused_send_reaches_on_error_quickly(loop):
    """A send to a port where nobody listens fails fast through on_error."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind((HOST, 0))  # Bound, never listening: connects refused.
        outcome = Outcome()
        start = time.monotonic()
        loop.call(lambda: send_message(
            loop.reactor, HOST, closed.getsockname()[1], {"x": 1},
            timeout=WAIT, on_sent=outcome.on_sent,
            on_error=outcome.on_error))
        assert outcome.done.wait(WAIT)
    assert outcome.when - start < 1.0
    assert not outcome.sent
    assert len(outcome.errors) == 1
    assert isinstance(outcome.errors[0], ConnectionRefusedError)


def test_timed_out_send_reaches_on_error(loop, unanswered_port):
    """A send whose connect gets no answer fails after its timeout."""
    outcome = Outcome()
    timeout = 0.3
    start = time.monotonic()
    loop.call(lambda: send_message(
        loop.reactor, HOST, unanswered_port, {"x": 1}, timeout=timeout,
        on_sent=outcome.on_sent, on_error=outcome.on_error))
    assert outcome.done.wait(WAIT)
    assert timeout - 0.05 <= outcome.when - start < timeout + 0.5
    assert not outcome.sent
    assert len(outcome.errors) == 1
    assert isinstance(outcome.errors[0], TimeoutError)
    loop.sync()
    assert len(outcome.errors) == 1


def test_send_to_an_unusable_address_reaches_on_error(loop):
    """A send that cannot even start still reports through on_error."""
    outcome = Outcome()
    loop.call(lambda: send_message(
        loop.reactor, HOST, 0, {"x": 1}, timeout=WAIT,
        on_sent=outcome.on_sent, on_error=outcome.on_error))
    assert outcome.done.wait(WAIT)
    assert not outcome.sent
    assert len(outcome.errors) == 1
    assert isinstance(outcome.errors[0], OSError)


@pytest.fixture(name="datagrams")
def fixture_datagrams(loop):
    """Give a DatagramServer and its message queue."""
    messages = queue.Queue()
    server = loop.call(lambda: DatagramServer(loop.reactor, HOST, 0,
                                              messages.put))
    yield server, messages
    loop.call(server.close)


def test_datagrams_are_delivered(datagrams):
    """Objects sent with send_datagram arrive, each as it was sent."""
    server, messages = datagrams
    sent = [{"heartbeat": number, "host": "w\u00f6rker"}
            for number in range(100)]
    for message in sent:
        assert send_datagram(HOST, server.port, message)
    received = [messages.get(timeout=WAIT) for _ in sent]
    assert sorted(received, key=lambda m: m["heartbeat"]) == sent


def test_bad_datagrams_are_logged_and_dropped(loop, datagrams, caplog):
    """Invalid JSON and non-objects over UDP are logged and dropped."""
    server, messages = datagrams
    caplog.set_level(logging.WARNING)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for data in (b"not json", b"[1, 2]", b"\xff", b'{"good": 1}'):
            sender.sendto(data, (HOST, server.port))
        assert messages.get(timeout=WAIT) == {"good": 1}
    loop.sync()
    warnings = warnings_in(caplog)
    assert sum("not valid JSON" in warning for warning in warnings) == 2
    assert sum("not a JSON object" in warning for warning in warnings) == 1
    assert messages.empty()


def test_failed_datagram_send_is_logged(caplog):
    """send_datagram returns False and logs when the send fails."""
    log = logging.getLogger("test.datagram")
    caplog.set_level(logging.WARNING)
    too_big = {"blob": "x" * 70000}
    assert send_datagram(HOST, 9, too_big, log=log) is False
    assert any("Could not send a datagram" in warning
               for warning in warnings_in(caplog))


def open_fds():
    """Return the set of file descriptors open in this process."""
    return set(os.listdir("/proc/self/fd"))


def test_clean_stop_closes_everything():
    """After close and stop: no sockets, no fds, no threads are left."""
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    messages = queue.Queue()
    reactor = Reactor()
    thread = threading.Thread(target=reactor.run)
    thread.start()
    try:
        servers = queue.Queue()
        reactor.call_soon_threadsafe(lambda: servers.put((
            MessageServer(reactor, HOST, 0, messages.put),
            DatagramServer(reactor, HOST, 0, messages.put))))
        server, datagram_server = servers.get(timeout=WAIT)
        with connect(server.port) as client:
            send_raw(server.port, b'{"before": "stop"}')
            assert messages.get(timeout=WAIT) == {"before": "stop"}
            assert send_datagram(HOST, datagram_server.port, {"udp": 1})
            assert messages.get(timeout=WAIT) == {"udp": 1}
            reactor.call_soon_threadsafe(server.close)
            reactor.call_soon_threadsafe(datagram_server.close)
            reactor.call_soon_threadsafe(reactor.stop)
            thread.join(WAIT)
            assert not thread.is_alive()
            # The connection still open when the server closed is closed.
            assert wait_closed(client) < 1.0
    finally:
        if thread.is_alive():
            reactor.call_soon_threadsafe(reactor.stop)
            thread.join(WAIT)
        reactor.close()
    with pytest.raises(ConnectionRefusedError):
        connect(server.port)
    for kind, port in ((socket.SOCK_STREAM, server.port),
                       (socket.SOCK_DGRAM, datagram_server.port)):
        with socket.socket(socket.AF_INET, kind) as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind((HOST, port))
    assert set(threading.enumerate()) == threads_before
    assert open_fds() == fds_before
