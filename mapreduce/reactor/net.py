"""Network parts of the reactor: JSON objects over TCP and UDP.

A TCP message is one JSON object on a fresh connection: the sender connects,
sends every byte and closes; the receiver reads to EOF and decodes. A UDP
message is one JSON object in one datagram. Nothing here blocks the loop.
"""

import errno
import functools
import json
import os
import socket

MAX_MESSAGE_SIZE = 1 << 20
READ_TIMEOUT = 10.0
SEND_TIMEOUT = 5.0
MAX_CONNECTIONS = 512
_ACCEPTS_PER_TURN = 64
_DATAGRAMS_PER_TURN = 64


@functools.lru_cache(maxsize=256)
def resolve(host):
    """Return the IPv4 address of `host`; raises OSError when unknown.

    Answers are kept for the life of the process, so that a busy loop does
    not ask the resolver again for every message. A name that cannot be a
    host name at all (a NUL, a label too long for IDNA) is an OSError too.
    """
    try:
        return socket.gethostbyname(host)
    except (TypeError, ValueError) as exc:
        raise OSError(f"bad host name {host[:80]!r}: {exc}") from exc


def decode_json(data, peer, log):
    """Return the JSON object in `data`, or None after logging why not."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        log.warning("Ignored message from %s: not valid JSON (%s)",
                    peer, str(exc)[:200])
        return None
    if not isinstance(obj, dict):
        log.warning("Ignored message from %s: not a JSON object", peer)
        return None
    return obj


def encode_json(obj):
    """Return the bytes that carry `obj` on the wire."""
    return json.dumps(obj).encode("utf-8")


def _format_peer(address):
    """Return 'host:port' for a socket address."""
    try:
        return f"{address[0]}:{address[1]}"
    except (TypeError, IndexError):
        return repr(address)


def _bound_socket(kind, host, port):
    """Return a non-blocking socket bound to host:port (listening, if TCP).

    SO_REUSEADDR lets a restarted server bind while old connections linger.
    """
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


class MessageServer:
    """A TCP server where each connection carries one JSON object.

    Connections are read without blocking and handed to `on_message(obj)`
    at EOF. A connection that stays open longer than `read_timeout`, or
    sends more than `max_size` bytes, is closed without delivering; when
    `max_connections` are open, the oldest is closed to make room.
    """

    def __init__(self, reactor, host, port, on_message, *,
                 max_size=MAX_MESSAGE_SIZE, read_timeout=READ_TIMEOUT,
                 max_connections=MAX_CONNECTIONS):
        """Listen on `host:port` (port 0 picks a free one)."""
        self.reactor = reactor
        self.on_message = on_message
        self.max_size = max_size
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self._connections = {}
        self._sock = _bound_socket(socket.SOCK_STREAM, host, port)
        self.address = self._sock.getsockname()
        reactor.add_reader(self._sock, self._accept)

    @property
    def port(self):
        """Return the port this server listens on."""
        return self.address[1]

    @property
    def log(self):
        """Return the logger of the process this server belongs to."""
        return self.reactor.log

    def close(self):
        """Stop listening and drop every connection still open."""
        for conn in list(self._connections):
            self._drop(conn)
        if self._sock.fileno() >= 0:
            self.reactor.remove_reader(self._sock)
            self._sock.close()

    def _accept(self):
        """Accept the connections that are waiting, without blocking."""
        for _ in range(_ACCEPTS_PER_TURN):
            try:
                conn, address = self._sock.accept()
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
            if len(self._connections) >= self.max_connections:
                oldest = next(iter(self._connections))
                self.log.warning("Too many open connections: dropped %s",
                                 self._connections[oldest][1])
                self._drop(oldest)
            conn.setblocking(False)
            timer = self.reactor.call_later(self.read_timeout, self._expire,
                                            conn)
            self._connections[conn] = (bytearray(), _format_peer(address),
                                       timer)
            self.reactor.add_reader(conn, self._read, conn)

    def _resume_accepting(self):
        """Watch the listening socket again after running out of files."""
        if self._sock.fileno() >= 0:
            self.reactor.add_reader(self._sock, self._accept)

    def _read(self, conn):
        """Read what `conn` has; at EOF decode and deliver the message."""
        buffer, peer, _ = self._connections[conn]
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self.log.warning("Ignored message from %s: %s", peer, exc)
            self._drop(conn)
            return
        if data:
            buffer += data
            if len(buffer) > self.max_size:
                self.log.warning(
                    "Ignored message from %s: larger than %d bytes",
                    peer, self.max_size)
                self._drop(conn)
            return
        self._drop(conn)
        obj = decode_json(bytes(buffer), peer, self.log)
        if obj is not None:
            self.on_message(obj)

    def _expire(self, conn):
        """Close a connection that did not finish its message in time."""
        peer = self._connections[conn][1]
        self.log.warning("Ignored message from %s: not finished within %gs",
                         peer, self.read_timeout)
        self._drop(conn)

    def _drop(self, conn):
        """Forget and close one connection."""
        _, _, timer = self._connections.pop(conn)
        timer.cancel()
        self.reactor.remove_reader(conn)
        conn.close()


class DatagramServer:
    """A UDP server: each datagram is one JSON object for `on_message`."""

    def __init__(self, reactor, host, port, on_message):
        """Bind `host:port` (port 0 picks a free one)."""
        self.reactor = reactor
        self.on_message = on_message
        self._sock = _bound_socket(socket.SOCK_DGRAM, host, port)
        self.address = self._sock.getsockname()
        reactor.add_reader(self._sock, self._read)

    @property
    def port(self):
        """Return the port this server is bound to."""
        return self.address[1]

    @property
    def log(self):
        """Return the logger of the process this server belongs to."""
        return self.reactor.log

    def close(self):
        """Stop receiving."""
        if self._sock.fileno() >= 0:
            self.reactor.remove_reader(self._sock)
            self._sock.close()

    def _read(self):
        """Deliver the datagrams that are waiting, a bounded number a turn."""
        for _ in range(_DATAGRAMS_PER_TURN):
            try:
                data, address = self._sock.recvfrom(65536)
            except BlockingIOError:
                return
            except OSError as exc:
                self.log.warning("Could not receive a datagram: %s", exc)
                return
            obj = decode_json(data, _format_peer(address), self.log)
            if obj is not None:
                self.on_message(obj)


class _Outbound:
    """One outgoing message: connect, send every byte, close."""

    def __init__(self, reactor, address, payload, timeout, on_sent,
                 on_error):
        """Start connecting without blocking; report through callbacks."""
        self.reactor = reactor
        self.address = address
        self.payload = memoryview(payload)
        self.on_sent = on_sent
        self.on_error = on_error
        self.connected = False
        self.sock = None
        self.timer = reactor.call_later(timeout, self._fail, TimeoutError(
            f"no answer from {address[0]}:{address[1]} within {timeout:g}s"))
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
        try:
            sent = self.sock.send(self.payload)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(exc)
            return
        self.payload = self.payload[sent:]
        if not self.payload:
            self._finish()
            if self.on_sent is not None:
                self.on_sent()

    def _fail(self, error):
        """Give up on this message and report why."""
        if self.timer is None:
            return  # Already finished or failed.
        self._finish()
        if self.on_error is not None:
            self.on_error(error)

    def _finish(self):
        """Release the socket and the deadline."""
        self.timer.cancel()
        self.timer = None
        if self.sock is not None:
            if self.sock.fileno() >= 0:
                self.reactor.remove_writer(self.sock)
            self.sock.close()


def send_message(reactor, host, port, obj, *, timeout=SEND_TIMEOUT,
                 on_sent=None, on_error=None):
    """Send `obj` as one JSON message to `host:port` without blocking.

    Exactly one of `on_sent()` or `on_error(exception)` runs later on the
    loop: refused, unreachable and timed-out sends all reach `on_error`.
    """
    _Outbound(reactor, (host, port), encode_json(obj), timeout, on_sent,
              on_error)


def send_datagram(host, port, obj, log=None):
    """Send `obj` as one JSON datagram to `host:port`; return success."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(encode_json(obj), (resolve(host), port))
    except OSError as exc:
        if log is not None:
            log.warning("Could not send a datagram to %s:%s: %s",
                        host, port, exc)
        return False
    return True
