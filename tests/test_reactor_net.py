"""Tests of the reactor's network parts, with real sockets on loopback.

The transports carry bytes: what is sent arrives exactly, whatever it is.
"""

import concurrent.futures
import json
import logging
import os
import queue
import select
import socket
import struct
import threading
import time

import pytest

from mapreduce.localcluster import wait_for
from mapreduce.reactor import (
    DatagramServer, Limits, MessageServer, Reactor, request, send_datagram,
    send_message,
)
from tests.util import SlowResolver

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"
WAIT = 5.0  # Seconds to wait for something that should happen at once.


class Inbox(queue.Queue):
    """What a server received, for the test thread: JSON, or bytes."""

    def on_message(self, data, *_):
        """Keep a message; a MessageServer's reply is dropped unused."""
        self.put(data)

    def get(self, block=True, timeout=None):
        """Return the next message, decoded when it is JSON."""
        data = super().get(block, timeout)
        try:
            return json.loads(data)
        except ValueError:
            return data


def start_server(loop, **limits):
    """Start a MessageServer on `loop`; return it and its Inbox."""
    messages = Inbox()
    server = loop.call(lambda: MessageServer(
        loop.reactor, HOST, 0, messages.on_message, Limits(**limits)))
    return server, messages


def encode(obj):
    """Return the JSON bytes of `obj`."""
    return json.dumps(obj).encode()


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
    loop.call(lambda: send_message(loop.reactor, (HOST, server.port),
                                   encode(message),
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
    loop.call(lambda: send_message(loop.reactor, ("localhost", server.port),
                                   encode(message), on_sent=outcome.on_sent,
                                   on_error=outcome.on_error))
    assert messages.get(timeout=WAIT) == message
    assert outcome.done.wait(WAIT)
    assert outcome.sent == [True]


def test_send_without_callbacks(loop, server):
    """send_message works when the caller wants no report."""
    server, messages = server
    loop.call(send_message, loop.reactor, (HOST, server.port),
              encode({"quiet": 1}))
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
            send_message(loop.reactor, (HOST, server.port),
                         encode({"n": number}), on_sent=outcome.on_sent,
                         on_error=outcome.on_error)

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


@pytest.mark.parametrize("data", [
    b'{"unfinished": ', b"\xff\xfe not text", b"", b"[1, 2, 3]", b"42",
    b"[" * 100000 + b"]" * 100000,
])
def test_any_bytes_are_delivered_as_they_are(loop, server, caplog, data):
    """The transport does not judge: any bytes arrive exactly, unlogged."""
    server, messages = server
    caplog.set_level(logging.WARNING)
    with connect(server.port) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        wait_closed(client)
    assert queue.Queue.get(messages, timeout=WAIT) == data
    loop.sync()
    assert not warnings_in(caplog)


def test_reset_connection_is_logged_and_dropped(loop, server, caplog):
    """A client that resets mid-message is a warning; work goes on."""
    server, messages = server
    caplog.set_level(logging.WARNING)
    client = connect(server.port)
    client.sendall(b'{"half": ')
    loop.sync()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      struct.pack("ii", 1, 0))
    client.close()
    wait_for(lambda: loop.call(lambda: server.open_connections) == 0, WAIT)
    assert any("Ignored what" in warning for warning in warnings_in(caplog))
    send_raw(server.port, b'{"after": "reset"}')
    assert messages.get(timeout=WAIT) == {"after": "reset"}
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
            loop.reactor, (HOST, closed.getsockname()[1]), b"{}",
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
        loop.reactor, (HOST, unanswered_port), b"{}", timeout=timeout,
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
        loop.reactor, (HOST, 0), b"{}", timeout=WAIT,
        on_sent=outcome.on_sent, on_error=outcome.on_error))
    assert outcome.done.wait(WAIT)
    assert not outcome.sent
    assert len(outcome.errors) == 1
    assert isinstance(outcome.errors[0], OSError)


@pytest.fixture(name="datagrams")
def fixture_datagrams(loop):
    """Give a DatagramServer and its message queue."""
    messages = Inbox()
    server = loop.call(lambda: DatagramServer(loop.reactor, HOST, 0,
                                              messages.on_message))
    yield server, messages
    loop.call(server.close)


def test_datagrams_are_delivered(datagrams):
    """Objects sent with send_datagram arrive, each as it was sent."""
    server, messages = datagrams
    sent = [{"heartbeat": number, "host": "w\u00f6rker"}
            for number in range(100)]
    for message in sent:
        assert send_datagram(HOST, server.port, encode(message))
    received = [messages.get(timeout=WAIT) for _ in sent]
    assert sorted(received, key=lambda m: m["heartbeat"]) == sent


def test_any_datagram_is_delivered_with_its_sender(loop, caplog):
    """Datagrams arrive as they were sent, with the sender's address."""
    received = queue.Queue()
    server = loop.call(lambda: DatagramServer(
        loop.reactor, HOST, 0, lambda data, peer: received.put((data, peer))))
    caplog.set_level(logging.WARNING)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind((HOST, 0))
            peer = f"{HOST}:{sender.getsockname()[1]}"
            sent = [b"not json", b"[1, 2]", b"\xff", b""]
            for data in sent:
                sender.sendto(data, (HOST, server.port))
            assert [received.get(timeout=WAIT) for _ in sent] == [
                (data, peer) for data in sent]
        loop.sync()
        assert not warnings_in(caplog)
    finally:
        loop.call(server.close)


def test_failed_datagram_send_is_logged(caplog):
    """send_datagram returns False and logs when the send fails."""
    log = logging.getLogger("test.datagram")
    caplog.set_level(logging.WARNING)
    too_big = {"blob": "x" * 70000}
    assert send_datagram(HOST, 9, encode(too_big), log=log) is False
    assert any("Could not send a datagram" in warning
               for warning in warnings_in(caplog))


def open_fds():
    """Return the set of file descriptors open in this process."""
    return set(os.listdir("/proc/self/fd"))


def test_clean_stop_closes_everything():
    """After close and stop: no sockets, no fds, no threads are left."""
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    messages = Inbox()
    reactor = Reactor()
    thread = threading.Thread(target=reactor.run)
    thread.start()
    try:
        servers = queue.Queue()
        reactor.call_soon_threadsafe(lambda: servers.put((
            MessageServer(reactor, HOST, 0, messages.on_message),
            DatagramServer(reactor, HOST, 0, messages.on_message))))
        server, datagram_server = servers.get(timeout=WAIT)
        with connect(server.port) as client:
            send_raw(server.port, b'{"before": "stop"}')
            assert messages.get(timeout=WAIT) == {"before": "stop"}
            assert send_datagram(HOST, datagram_server.port,
                                 encode({"udp": 1}))
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


# Answers on the same connection.


class Replier:
    """A message handler that answers with a function of the message.

    `answer(data)` returns the bytes to send back, or None to keep the
    reply for later (it is then put in `held`).
    """

    def __init__(self, answer):
        """Answer with `answer(data)`."""
        self.answer = answer
        self.held = queue.Queue()
        self.peers = []

    def on_message(self, data, reply):
        """Answer now, or hold the reply."""
        self.peers.append(reply.peer)
        answer = self.answer(data)
        if answer is None:
            self.held.put((data, reply))
        else:
            reply(answer)


def start_replier(loop, answer, **limits):
    """Start a MessageServer answering with `answer`; return both."""
    replier = Replier(answer)
    server = loop.call(lambda: MessageServer(
        loop.reactor, HOST, 0, replier.on_message, Limits(**limits)))
    return server, replier


def request_in_thread(port, data, timeout=WAIT):
    """Start `request` in a thread; return a queue for its outcome."""
    outcome = queue.Queue(maxsize=1)

    def run():
        """Put the answer, or the OSError raised."""
        try:
            outcome.put(request(HOST, port, data, timeout))
        except OSError as exc:
            outcome.put(exc)

    threading.Thread(target=run, daemon=True).start()
    return outcome


def debug_messages(caplog):
    """Return the messages of the debug records logged so far."""
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.DEBUG]


def test_request_gets_the_reply(loop):
    """A handler's reply comes back to `request` on the same connection."""
    server, replier = start_replier(loop, lambda data: data[::-1] * 1000)
    try:
        assert request(HOST, server.port, b"abc", WAIT) == b"cba" * 1000
        client_ports = {int(peer.rsplit(":", 1)[1])
                        for peer in replier.peers}
        assert len(client_ports) == 1
        assert replier.peers[0].startswith(f"{HOST}:")
    finally:
        loop.call(server.close)


def test_no_reply_closes_the_connection_at_once(loop, server):
    """A handler that neither answers nor keeps the reply: EOF at once."""
    server, messages = server
    start = time.monotonic()
    assert request(HOST, server.port, b'{"n": 1}', WAIT) == b""
    assert time.monotonic() - start < 1.0
    assert messages.get(timeout=WAIT) == {"n": 1}
    assert loop.call(lambda: server.open_connections) == 0


def test_a_kept_reply_answers_later(loop, caplog):
    """A reply kept by the handler answers later; others go on meanwhile."""
    server, replier = start_replier(
        loop, lambda data: None if data == b"wait" else b"now")
    caplog.set_level(logging.DEBUG)
    try:
        waiting = request_in_thread(server.port, b"wait")
        _, reply = replier.held.get(timeout=WAIT)
        assert loop.call(lambda: server.open_connections) == 1
        for _ in range(3):
            assert request(HOST, server.port, b"other", WAIT) == b"now"
        assert waiting.empty()
        loop.call(reply, b"later")
        assert waiting.get(timeout=WAIT) == b"later"
        loop.call(reply, b"again")
        assert "answered already" in " ".join(debug_messages(caplog))
        assert loop.call(lambda: server.open_connections) == 0
    finally:
        loop.call(server.close)


def test_a_kept_reply_dropped_unanswered_closes(loop):
    """A kept reply that is dropped without an answer closes its client."""
    server, replier = start_replier(loop, lambda data: None)
    try:
        waiting = request_in_thread(server.port, b"wait")
        held = [replier.held.get(timeout=WAIT)]
        assert waiting.empty()
        loop.call(held.clear)
        assert waiting.get(timeout=WAIT) == b""
        assert loop.call(lambda: server.open_connections) == 0
    finally:
        loop.call(server.close)


class ThreadNoting(MessageServer):
    """A MessageServer that notes the thread where connections end."""

    def __init__(self, *args):
        """Start with no connection ended."""
        self.closing_threads = []
        super().__init__(*args)

    def forget(self, connection):
        """Note the thread, then forget the connection."""
        self.closing_threads.append(threading.get_ident())
        super().forget(connection)


def test_a_reply_dropped_in_another_thread_closes_on_the_loop(loop):
    """A reply dropped outside the loop's thread has the loop close it."""
    replier = Replier(lambda data: None)
    server = loop.call(lambda: ThreadNoting(loop.reactor, HOST, 0,
                                            replier.on_message))
    try:
        waiting = request_in_thread(server.port, b"wait")
        held = [replier.held.get(timeout=WAIT)]
        held.clear()  # The last reference goes, in this thread.
        assert waiting.get(timeout=WAIT) == b""
        loop.sync()
        assert server.closing_threads == [loop.thread.ident]
    finally:
        loop.call(server.close)


def test_client_gone_before_the_reply_is_harmless(loop, caplog):
    """Clients that hang up before their answer disturb nobody."""
    server, replier = start_replier(
        loop, lambda data: None if data == b"wait" else b"now")
    caplog.set_level(logging.DEBUG)
    try:
        replies = []
        for _ in range(2):
            with connect(server.port) as client:
                client.sendall(b"wait")
                client.shutdown(socket.SHUT_WR)
                replies.append(replier.held.get(timeout=WAIT)[1])
        # Both clients have closed: answer them anyway, small and large.
        for size, reply in zip((10, 8 << 20), replies):
            loop.call(reply, b"x" * size)
        wait_for(lambda: loop.call(lambda: server.open_connections) == 0,
                 WAIT)
        assert request(HOST, server.port, b"other", WAIT) == b"now"
        assert not [record for record in caplog.records
                    if record.levelno >= logging.WARNING]
    finally:
        loop.call(server.close)


def test_client_that_never_reads_is_cut_off(loop, caplog):
    """A client that never reads a large answer is closed at the deadline.

    Meanwhile other clients are answered at once.
    """
    write_timeout = 1.0
    big = b"y" * (32 << 20)
    server, _ = start_replier(
        loop, lambda data: big if data == b"big" else b"small",
        write_timeout=write_timeout)
    caplog.set_level(logging.DEBUG)
    try:
        with connect(server.port) as stuck:
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.sendall(b"big")
            stuck.shutdown(socket.SHUT_WR)
            start = time.monotonic()
            for _ in range(5):
                asked = time.monotonic()
                assert request(HOST, server.port, b"hi", WAIT) == b"small"
                assert time.monotonic() - asked < 0.5
            wait_for(lambda: loop.call(
                lambda: server.open_connections) == 0, WAIT)
            waited = time.monotonic() - start
            assert write_timeout - 0.2 <= waited < write_timeout + 1.0
        assert any("not taken within the write deadline" in message
                   for message in debug_messages(caplog))
    finally:
        loop.call(server.close)


def test_kept_replies_count_against_the_connection_limit(loop, caplog):
    """Waiting clients are connections: past the limit the oldest goes."""
    server, replier = start_replier(loop, lambda data: None,
                                    max_connections=2)
    caplog.set_level(logging.DEBUG)
    try:
        first = request_in_thread(server.port, b"1")
        replies = [replier.held.get(timeout=WAIT)[1]]
        second = request_in_thread(server.port, b"2")
        replies.append(replier.held.get(timeout=WAIT)[1])
        third = request_in_thread(server.port, b"3")
        assert first.get(timeout=WAIT) == b""
        replies.append(replier.held.get(timeout=WAIT)[1])
        assert loop.call(lambda: server.open_connections) == 2
        loop.call(replies[0], b"too late")
        assert "the connection is closed" in " ".join(
            debug_messages(caplog))
        assert any("Too many open connections" in warning
                   for warning in warnings_in(caplog))
        assert second.empty() and third.empty()
    finally:
        loop.call(server.close)
    assert second.get(timeout=WAIT) == b""
    assert third.get(timeout=WAIT) == b""
    del replies


def test_request_times_out(loop):
    """`request` gives up with TimeoutError when no answer comes in time."""
    server, replier = start_replier(loop, lambda data: None)
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            request(HOST, server.port, b"wait", 0.5)
        assert 0.45 <= time.monotonic() - start < 1.5
        assert replier.held.get(timeout=WAIT)[0] == b"wait"
    finally:
        loop.call(server.close)


def test_request_refuses_an_oversized_answer(loop):
    """`request` stops reading past its size limit."""
    server, _ = start_replier(loop, lambda data: b"z" * 100000)
    try:
        with pytest.raises(OSError, match="larger than 1000 bytes"):
            request(HOST, server.port, b"", WAIT, max_size=1000)
    finally:
        loop.call(server.close)


def test_request_to_a_closed_port_is_refused():
    """`request` raises ConnectionRefusedError where nobody listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind((HOST, 0))
        with pytest.raises(ConnectionRefusedError):
            request(HOST, closed.getsockname()[1], b"x", WAIT)


def test_failing_handler_closes_the_connection(loop, caplog):
    """A handler that raises is logged; its client gets EOF; work goes on."""
    def answer(data):
        """Fail on b"bad", answer anything else."""
        if data == b"bad":
            raise RuntimeError("handler bug")
        return b"fine"

    server, _ = start_replier(loop, answer)
    caplog.set_level(logging.WARNING)
    try:
        assert request(HOST, server.port, b"bad", WAIT) == b""
        assert request(HOST, server.port, b"good", WAIT) == b"fine"
        errors = [record for record in caplog.records
                  if record.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "Error in message handler" in errors[0].getMessage()
        assert "handler bug" in caplog.text
    finally:
        loop.call(server.close)


@pytest.fixture(name="resolver_pool")
def fixture_resolver_pool(loop):
    """Give the loop's reactor a pool to look host names up in."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    loop.reactor.resolver = pool
    yield pool
    loop.call(lambda: setattr(loop.reactor, "resolver", None))
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("fails", [False, True])
def test_host_names_are_looked_up_off_the_loop(loop, server, resolver_pool,
                                               monkeypatch, fails):
    """While a name is being looked up, the loop goes on; then it sends.

    A name that does not resolve is reported to on_error.
    """
    server, messages = server
    slow = SlowResolver(f"slow-{os.getpid()}-{fails}.invalid", fails)
    monkeypatch.setattr(socket, "gethostbyname", slow)
    outcome = Outcome()
    assert resolver_pool is loop.reactor.resolver
    loop.call(lambda: send_message(loop.reactor, (slow.name, server.port),
                                   encode({"n": 1}), on_sent=outcome.on_sent,
                                   on_error=outcome.on_error))
    # The loop runs this while the lookup is still waiting.
    assert loop.call(lambda: not slow.done.is_set())
    slow.release.set()
    assert outcome.done.wait(WAIT)
    if fails:
        assert [type(error) for error in outcome.errors] == [socket.gaierror]
        assert messages.empty()
    else:
        assert messages.get(timeout=WAIT) == {"n": 1}
        assert outcome.sent == [True]
