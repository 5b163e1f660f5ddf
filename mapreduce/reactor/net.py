"""Network parts of the reactor: bytes over TCP and UDP.

The transports carry bytes; what the bytes mean is the caller's business.
A TCP message is everything sent on one connection: the sender connects,
sends every byte and closes (or half-closes, to read an answer); the
receiver reads to EOF, then may answer on the same connection. A UDP
message is one datagram. Nothing here blocks the loop, except `request`,
which is for command-line tools that have no loop.

A reactor may carry an *envelope* (`reactor.envelope`, None by default):
then every message's bytes pass through it at the edge, here and nowhere
else. `envelope.seal_to(data, address)` wraps what `send_message` and
`send_datagram` send to `address` (host, port); `envelope.open(data,
peer)` unwraps what a message or datagram server received, returning an
object with the inner bytes as `message`, or None when the message is
refused (the envelope logs why): the server then drops it unseen; and
`envelope.seal_reply(data, opened)` wraps an answer to an opened message.
Without an envelope the bytes are sent and delivered exactly as given.
"""

import dataclasses
import errno
import functools
import ipaddress
import os
import socket
import threading
import time
import weakref

from mapreduce.reactor.loop import Guard

MAX_MESSAGE_SIZE = 1 << 20
MAX_ANSWER_SIZE = 64 << 20
READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
SEND_TIMEOUT = 5.0
LINGER_TIMEOUT = 2.0
MAX_CONNECTIONS = 512
_ACCEPTS_PER_TURN = 64
_DATAGRAMS_PER_TURN = 64
_CHUNK = 65536


# Host names and their IPv4 addresses, as answered by the resolver: the
# newest RESOLVED_NAMES of them, kept for the life of the process.
RESOLVED_NAMES = 256
_resolved = {}
# Lookups run on loops and in resolver pools at once: the cache changes
# under this lock.
_resolved_lock = threading.Lock()


def resolve(host):
    """Return the IPv4 address of `host`; raises OSError when unknown.

    Answers are kept, so that a busy loop does not ask the resolver again
    for every message. A name that cannot be a host name at all (a NUL, a
    label too long for IDNA) is an OSError too. This may block while the
    resolver is asked: see `known_address`.
    """
    address = _resolved.get(host)
    if address is not None:
        return address
    try:
        address = socket.gethostbyname(host)
    except (TypeError, ValueError) as exc:
        raise OSError(f"bad host name {host[:80]!r}: {exc}") from exc
    with _resolved_lock:
        while len(_resolved) >= RESOLVED_NAMES:
            _resolved.pop(next(iter(_resolved)), None)
        _resolved[host] = address
    return address


def known_address(host):
    """Return the IPv4 address of `host` if no resolver is needed, or None.

    That is, when `host` is an address itself or its answer is kept.
    """
    address = _resolved.get(host)
    if address is not None:
        return address
    try:
        socket.inet_pton(socket.AF_INET, host)
    except (OSError, TypeError, ValueError):
        return None
    return host


def is_loopback(host):
    """Tell whether `host` is a loopback address (reachable only here).

    A name that does not resolve, or a wildcard such as 0.0.0.0, is not.
    """
    try:
        return ipaddress.ip_address(resolve(host)).is_loopback
    except (OSError, ValueError):
        return False


def format_peer(address):
    """Return 'host:port' for a socket address."""
    try:
        return f"{address[0]}:{address[1]}"
    except (TypeError, IndexError):
        return repr(address)


def _bound_socket(kind, address):
    """Return a non-blocking socket bound to `address` (listening, if TCP).

    SO_REUSEADDR lets a restarted server bind while old connections linger.
    """
    host, port = address
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((resolve(host), port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def write_some(sock, data, on_error):
    """Send what non-blocking `sock` takes of memoryview `data`.

    Return the rest (empty when all is sent), or None after calling
    `on_error(exception)` when the connection failed.
    """
    try:
        sent = sock.send(data)
    except BlockingIOError:
        return data
    except OSError as exc:
        on_error(exc)
        return None
    return data[sent:]


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one client may cost a stream server.

    `max_size`: bytes a client may send; `read_timeout`: seconds it has to
    send them; `write_timeout`: seconds it has to take the answer;
    `max_connections`: connections open at once (past it, the oldest is
    closed to make room).
    """

    max_size: int = MAX_MESSAGE_SIZE
    read_timeout: float = READ_TIMEOUT
    write_timeout: float = WRITE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS


class Server:
    """What every server shares: a bound socket watched by the loop.

    Subclasses say what to do when the socket is readable
    (`_on_readable`).
    """

    def __init__(self, reactor, kind, address):
        """Bind `address` (host, port; port 0 picks a free one)."""
        self.reactor = reactor
        self._sock = _bound_socket(kind, address)
        self.address = self._sock.getsockname()
        reactor.add_reader(self._sock, self._on_readable)

    @property
    def port(self):
        """Return the port this server is bound to."""
        return self.address[1]

    @property
    def log(self):
        """Return the logger of the process this server belongs to."""
        return self.reactor.log

    def close(self):
        """Stop listening; safe to call more than once."""
        if self._sock.fileno() >= 0:
            self.reactor.remove_reader(self._sock)
            self._sock.close()

    def _on_readable(self):
        """Handle what is waiting on the socket."""
        raise NotImplementedError


class Connection:
    """One accepted TCP connection: read, then write, each with a deadline.

    The server it belongs to gets what arrives (`data_received`, with b""
    at EOF), a missed read deadline (`read_timed_out`) and a failed read
    (`read_failed`). After `send`, the connection writes without blocking,
    half-closes, waits briefly for the client to close too (so that nothing
    unread turns into a reset that could destroy the answer), and closes.
    """

    def __init__(self, server, sock, peer):
        """Take over `sock` (non-blocking) for `server`."""
        self.server = server
        self.sock = sock
        self.peer = peer
        self.received = bytearray()
        self._timer = None
        self._outgoing = None

    @property
    def closed(self):
        """Tell whether the connection is closed."""
        return self.sock.fileno() < 0

    @property
    def answering(self):
        """Tell whether `send` was called (or the connection is closed)."""
        return self._outgoing is not None or self.closed

    def start_reading(self, timeout):
        """Watch for input, for at most `timeout` seconds."""
        reactor = self.server.reactor
        self._set_timer(timeout, self.server.read_timed_out, self)
        reactor.add_reader(self.sock, self._on_readable)

    def stop_reading(self):
        """Stop watching for input, and the read deadline."""
        self._cancel_timer()
        self.server.reactor.remove_reader(self.sock)

    def send(self, data):
        """Write `data` without blocking, within the write deadline; close.

        A client that hung up, or does not take the data in time, is
        logged at debug level and closed: it never disturbs the server.
        """
        if self.answering:
            return
        self.stop_reading()
        self._outgoing = memoryview(data)
        self._set_timer(self.server.limits.write_timeout, self._give_up,
                        "not taken within the write deadline")
        self._on_writable()
        if self._outgoing and not self.closed:
            self.server.reactor.add_writer(self.sock, self._on_writable)

    def close(self):
        """Close the connection and forget it; safe to call again."""
        if self.closed:
            return
        self._cancel_timer()
        reactor = self.server.reactor
        reactor.remove_reader(self.sock)
        reactor.remove_writer(self.sock)
        self.sock.close()
        self.server.forget(self)

    def _set_timer(self, delay, callback, *args):
        """Replace the current deadline by `callback(*args)` after `delay`."""
        self._cancel_timer()
        self._timer = self.server.reactor.call_later(delay, callback, *args)

    def _cancel_timer(self):
        """Drop the current deadline, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_readable(self):
        """Hand what arrived to the server."""
        try:
            data = self.sock.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            self.close()
            self.server.read_failed(self, exc)
            return
        self.server.data_received(self, data)

    def _on_writable(self):
        """Write what the socket takes; when all is written, finish."""
        rest = write_some(self.sock, self._outgoing, self._give_up)
        if rest is not None:
            self._outgoing = rest
            if not rest:
                self._finish()

    def _finish(self):
        """Half-close, then wait a little for the client's EOF, then close."""
        reactor = self.server.reactor
        reactor.remove_writer(self.sock)
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self._set_timer(LINGER_TIMEOUT, self.close)
        reactor.add_reader(self.sock, self._drain)

    def _drain(self):
        """Discard what the client still sends; close at its EOF."""
        try:
            if self.sock.recv(_CHUNK):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.close()

    def _give_up(self, reason):
        """Close a connection whose answer cannot be delivered."""
        self.server.log.debug("Could not answer %s: %s", self.peer, reason)
        self.close()


class StreamServer(Server):
    """A TCP server: accepts connections, within `limits`, for subclasses.

    Subclasses may start each new connection differently
    (`connection_made`), and take what it receives (`data_received`) and a
    missed read deadline (`read_timed_out`).
    """

    def __init__(self, reactor, address, limits=None):
        """Listen on `address` (host, port; port 0 picks a free one)."""
        self.limits = limits or Limits()
        self._connections = {}  # Oldest first.
        super().__init__(reactor, socket.SOCK_STREAM, address)

    @property
    def open_connections(self):
        """Return how many connections are open."""
        return len(self._connections)

    def connections(self):
        """Return the open connections, oldest first."""
        return list(self._connections)

    def close(self):
        """Stop listening and close every connection still open."""
        for connection in list(self._connections):
            connection.close()
        super().close()

    def forget(self, connection):
        """Stop counting a closed connection; called by the connection."""
        self._connections.pop(connection, None)

    def connection_made(self, connection):
        """Start a new connection."""
        connection.start_reading(self.limits.read_timeout)

    def data_received(self, connection, data):
        """Take bytes that arrived on `connection` (b"" at EOF)."""
        raise NotImplementedError

    def read_timed_out(self, connection):
        """Handle a connection that missed its read deadline."""
        raise NotImplementedError

    def read_failed(self, connection, error):
        """Log a connection (closed now) that failed while reading."""
        self.log.warning("Ignored what %s sent: %s", connection.peer, error)

    def _on_readable(self):
        """Accept the connections that are waiting, without blocking."""
        for _ in range(_ACCEPTS_PER_TURN):
            try:
                sock, address = self._sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self.log.warning("Could not accept a connection: %s", exc)
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                                 errno.ENOMEM):
                    # Out of resources: pause instead of spinning.
                    self.reactor.remove_reader(self._sock)
                    self.reactor.call_later(0.1, self._resume_accepting)
                return
            if len(self._connections) >= self.limits.max_connections:
                oldest = next(iter(self._connections))
                self.log.warning("Too many open connections: dropped %s",
                                 oldest.peer)
                oldest.close()
            sock.setblocking(False)
            connection = Connection(self, sock, format_peer(address))
            self._connections[connection] = None
            self.connection_made(connection)

    def _resume_accepting(self):
        """Watch the listening socket again after running out of files."""
        if self._sock.fileno() >= 0:
            self.reactor.add_reader(self._sock, self._on_readable)


class Reply:
    """Answers one message on the connection it came on.

    Call it with the bytes of the answer: they are written without blocking
    (within the server's write deadline), then the connection closes. It
    answers once; later calls, and calls after the client went away, are
    logged at debug level and do nothing. The connection lives as long as
    its reply: a reply that is dropped without being called (the handler
    did not keep it) closes its connection. Call it on the loop thread.
    """

    __slots__ = ("peer", "_connection", "_log", "_seal", "__weakref__")

    def __init__(self, connection, seal=None):
        """Answer on `connection`; close it when this reply is dropped.

        `seal(data)`, if given, wraps the answer's bytes before they go.
        """
        self.peer = connection.peer
        self._connection = connection
        self._log = connection.server.log
        self._seal = seal
        finalizer = weakref.finalize(self, _abandon, connection)
        finalizer.atexit = False

    def __call__(self, data):
        """Send bytes `data` back, then close the connection."""
        connection, self._connection = self._connection, None
        if connection is None:
            self._log.debug("Could not answer %s: answered already",
                            self.peer)
        elif connection.answering:
            self._log.debug("Could not answer %s: the connection is closed",
                            self.peer)
        else:
            connection.send(data if self._seal is None else self._seal(data))

    def __repr__(self):
        """Name the client this reply answers."""
        return f"Reply(peer={self.peer!r})"


def _abandon(connection):
    """Close a connection whose reply was dropped without being called.

    A reply may be dropped in another thread (the garbage collector runs
    wherever it is triggered): the closing is then handed to the loop.
    """
    reactor = connection.server.reactor
    if not reactor.in_loop_thread():
        reactor.call_soon_threadsafe(_abandon, connection)
    elif not connection.answering:
        connection.close()


class MessageServer(StreamServer):
    """A TCP server where each connection carries one message, as bytes.

    At EOF the bytes go to `on_message(data, reply)`, with a `Reply` that
    can answer on the same connection, then or later. A connection that
    stays open longer than the read deadline, or sends more than the size
    limit, is closed without delivering (see `Limits`).
    """

    def __init__(self, reactor, host, port, on_message, limits=None):
        """Listen on `host:port` (port 0 picks a free one)."""
        self.on_message = on_message
        self._guard = Guard(reactor.log, "message handler", on_message)
        super().__init__(reactor, (host, port), limits)

    def data_received(self, connection, data):
        """Collect the message; at EOF hand it over with its reply."""
        if data:
            connection.received += data
            if len(connection.received) > self.limits.max_size:
                self.log.warning(
                    "Ignored message from %s: larger than %d bytes",
                    connection.peer, self.limits.max_size)
                connection.close()
            return
        connection.stop_reading()
        message = bytes(connection.received)
        connection.received = None
        self._guard.log = self.log
        with self._guard:
            envelope = self.reactor.envelope
            if envelope is None:
                reply = Reply(connection)
            else:
                opened = envelope.open(message, connection.peer)
                if opened is None:
                    connection.close()
                    return
                message = opened.message
                reply = Reply(connection, functools.partial(
                    envelope.seal_reply, opened=opened))
            # The reply lives only in the handler's hands: unless kept, it
            # is dropped (and the connection closed) when the handler ends.
            self.on_message(message, reply)
            del reply
        if self._guard.failed:
            connection.close()

    def read_timed_out(self, connection):
        """Close a connection that did not finish its message in time."""
        self.log.warning("Ignored message from %s: not finished within %gs",
                         connection.peer, self.limits.read_timeout)
        connection.close()


class DatagramServer(Server):
    """A UDP server: each datagram goes to `on_message(data, peer)`."""

    def __init__(self, reactor, host, port, on_message):
        """Bind `host:port` (port 0 picks a free one)."""
        self.on_message = on_message
        super().__init__(reactor, socket.SOCK_DGRAM, (host, port))

    def _on_readable(self):
        """Deliver the datagrams that are waiting, a bounded number a turn."""
        for _ in range(_DATAGRAMS_PER_TURN):
            try:
                data, address = self._sock.recvfrom(_CHUNK)
            except BlockingIOError:
                return
            except OSError as exc:
                self.log.warning("Could not receive a datagram: %s", exc)
                return
            peer = format_peer(address)
            envelope = self.reactor.envelope
            if envelope is not None:
                opened = envelope.open(data, peer)
                if opened is None:
                    continue
                data = opened.message
            self.on_message(data, peer)


class _Outbound:
    """One outgoing message: connect, send every byte, close."""

    def __init__(self, reactor, payload, callbacks):
        """Get ready to send `payload`; report through `callbacks`.

        `callbacks` is (on_sent, on_error); either may be None.
        """
        self.reactor = reactor
        self.payload = memoryview(payload)
        self.callbacks = callbacks
        self.connected = False
        self.sock = None
        self.timer = None

    def start(self, address, timeout):
        """Start connecting to `address` without blocking.

        A host name whose address is not known yet is looked up in the
        reactor's resolver pool, when it has one, within the same time.
        """
        reactor = self.reactor
        self.timer = reactor.call_later(timeout, self._fail, TimeoutError(
            f"no answer from {address[0]}:{address[1]} within {timeout:g}s"))
        if reactor.resolver is None or known_address(address[0]):
            self._connect(address)
        else:
            reactor.run_in_pool(
                reactor.resolver, functools.partial(self._looked_up,
                                                    address[1]),
                resolve, address[0])

    def _looked_up(self, port, future):
        """Connect once the host's address is known; fail if it is not."""
        if self.timer is None:
            return  # Timed out meanwhile.
        if future.cancelled():
            self._fail(OSError("host name lookup cancelled"))
        elif future.exception() is not None:
            self._fail(future.exception())
        else:
            self._connect((future.result(), port))

    def _connect(self, address):
        """Start connecting to `address` (its host resolved or known)."""
        reactor = self.reactor
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setblocking(False)
            code = self.sock.connect_ex((resolve(address[0]), address[1]))
        except OSError as exc:
            reactor.call_soon(self._fail, exc)
            return
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            reactor.call_soon(self._fail, OSError(code, os.strerror(code)))
            return
        reactor.add_writer(self.sock, self._on_writable)

    def _on_writable(self):
        """Finish connecting, then send as much as the socket takes."""
        if not self.connected:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._fail(OSError(code, os.strerror(code)))
                return
            self.connected = True
        self.payload = write_some(self.sock, self.payload, self._fail)
        if self.payload is not None and not self.payload:
            self._finish()
            on_sent = self.callbacks[0]
            if on_sent is not None:
                on_sent()

    def _fail(self, error):
        """Give up on this message and report why."""
        if self.timer is None:
            return  # Already finished or failed.
        self._finish()
        on_error = self.callbacks[1]
        if on_error is not None:
            on_error(error)

    def _finish(self):
        """Release the socket and the deadline."""
        self.timer.cancel()
        self.timer = None
        if self.sock is not None:
            if self.sock.fileno() >= 0:
                self.reactor.remove_writer(self.sock)
            self.sock.close()


def send_message(reactor, address, data, *, timeout=SEND_TIMEOUT,
                 on_sent=None, on_error=None):
    """Send bytes `data` as one message to `address` without blocking.

    `address` is (host, port). Exactly one of `on_sent()` or
    `on_error(exception)` runs later on the loop: refused, unreachable and
    timed-out sends all reach `on_error`. The reactor's envelope, if any,
    seals `data` first.
    """
    if reactor.envelope is not None:
        data = reactor.envelope.seal_to(data, address)
    _Outbound(reactor, data, (on_sent, on_error)).start(address, timeout)


def send_datagram(host, port, data, log=None, envelope=None):
    """Send bytes `data` as one datagram to `host:port`; return success.

    `envelope`, if given (a reactor's), seals `data` first.
    """
    if envelope is not None:
        data = envelope.seal_to(data, (host, port))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(data, (resolve(host), port))
    except OSError as exc:
        if log is not None:
            log.warning("Could not send a datagram to %s:%s: %s",
                        host, port, exc)
        return False
    return True


def request(host, port, data, timeout, *, max_size=MAX_ANSWER_SIZE,
            on_sent=None):
    """Send `data` to `host:port` and return the answer; this blocks.

    For command-line tools, which have no loop: connect, send every byte,
    half-close, and read the answer to EOF, all within `timeout` seconds.
    `on_sent()`, if given, is called once every byte is sent, before the
    answer is read (so a caller can tell a message not delivered from one
    not answered). Returns b"" when the server closed without answering.
    Raises OSError on failure: TimeoutError (socket.timeout) when time
    runs out, and an OSError when the answer is larger than `max_size`
    bytes.
    """
    deadline = time.monotonic() + timeout

    def remaining():
        """Return the time left, or raise TimeoutError."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer from {host}:{port} within "
                               f"{timeout:g}s")
        return left

    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(remaining())
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        if on_sent is not None:
            on_sent()
        answer = bytearray()
        while True:
            sock.settimeout(remaining())
            chunk = sock.recv(_CHUNK)
            if not chunk:
                return bytes(answer)
            answer += chunk
            if len(answer) > max_size:
                raise OSError(f"the answer from {host}:{port} is larger "
                              f"than {max_size} bytes")
