"""A small HTTP/1.x server on the reactor, for a status page and its data.

One request per connection: the server reads the request head (within a
size and a time limit), asks `handler(method, path)` for the answer on the
loop thread, writes it without blocking (within a write deadline) and
closes. Only GET and HEAD are served; the request's headers and any body
are not used.
"""

import http
import urllib.parse

from mapreduce.reactor.loop import Guard
from mapreduce.reactor.net import Limits, StreamServer

MAX_HEAD_SIZE = 16384
HEAD_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
MAX_HTTP_CONNECTIONS = 64
HTTP_LIMITS = Limits(max_size=MAX_HEAD_SIZE, read_timeout=HEAD_TIMEOUT,
                     write_timeout=WRITE_TIMEOUT,
                     max_connections=MAX_HTTP_CONNECTIONS)
METHODS = ("GET", "HEAD")
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")


class HttpError(Exception):
    """A request that is answered with an error status, and why."""

    def __init__(self, status, reason):
        """Answer with `status` (an http.HTTPStatus); log `reason`."""
        super().__init__(reason)
        self.status = status


def parse_request_line(head):
    """Return (method, path) from a request head, or raise HttpError.

    `path` is the request target's path, without the query string, as
    sent (not percent-decoded).
    """
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError as exc:
        raise HttpError(http.HTTPStatus.BAD_REQUEST,
                        "request line is not ASCII") from exc
    parts = text.split(" ")
    if len(parts) != 3 or not all(parts):
        raise HttpError(http.HTTPStatus.BAD_REQUEST,
                        f"malformed request line {text[:80]!r}")
    method, target, version = parts
    if not version.startswith("HTTP/"):
        raise HttpError(http.HTTPStatus.BAD_REQUEST,
                        f"not an HTTP version: {version[:20]!r}")
    if not version.startswith("HTTP/1."):
        raise HttpError(http.HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                        f"version {version[:20]!r}")
    if not target.startswith("/") and "://" not in target:
        raise HttpError(http.HTTPStatus.BAD_REQUEST,
                        f"bad request target {target[:80]!r}")
    if method not in METHODS:
        raise HttpError(http.HTTPStatus.METHOD_NOT_ALLOWED,
                        f"method {method[:20]!r}")
    return method, urllib.parse.urlsplit(target).path or "/"


def format_response(status, content_type, body, method="GET"):
    """Return the bytes of a whole response; no body for HEAD.

    Raises ValueError for a status that is not an HTTP status, or a
    content type that would break the head.
    """
    status = http.HTTPStatus(status)
    if any(char in content_type for char in "\r\n\0"):
        raise ValueError(f"bad content type {content_type[:80]!r}")
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
    ]
    if status == http.HTTPStatus.METHOD_NOT_ALLOWED:
        lines.append(f"Allow: {', '.join(METHODS)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if method == "HEAD" else head + bytes(body)


def error_response(status):
    """Return the bytes of a short plain-text error answer."""
    status = http.HTTPStatus(status)
    body = f"{status.value} {status.phrase}\n".encode("ascii")
    return format_response(status, "text/plain; charset=utf-8", body)


def _head_end(received):
    """Return the index where the head ends in `received`, or -1."""
    ends = [received.find(mark) for mark in _HEAD_ENDS]
    ends = [end for end in ends if end >= 0]
    return min(ends) if ends else -1


class HttpServer(StreamServer):
    """An HTTP server: `handler(method, path)` answers each request.

    The handler runs on the loop thread and returns
    `(status, content_type, body)`; a handler that raises, or returns
    something else, gives a 500. Refusals: 400 for a malformed request
    line, 405 for a method other than GET and HEAD, 408 for a head not
    sent within the time limit, 431 for a head over the size limit, 505 for
    an HTTP version other than 1.x. See `Limits` (the default here is
    `HTTP_LIMITS`) for the size, time and connection limits.
    """

    def __init__(self, reactor, host, port, handler, limits=HTTP_LIMITS):
        """Listen on `host:port` (port 0 picks a free one)."""
        self.handler = handler
        self._guard = Guard(reactor.log, "HTTP handler", handler)
        super().__init__(reactor, (host, port), limits)

    def data_received(self, connection, data):
        """Collect the request head; answer once it is whole."""
        received = connection.received
        start = max(0, len(received) - 3)
        received += data
        end = _head_end(received[start:])
        if end >= 0:
            end += start
        if end > self.limits.max_size or (
                end < 0 and len(received) > self.limits.max_size):
            self._refuse(connection, HttpError(
                http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"head larger than {self.limits.max_size} bytes"))
        elif end >= 0:
            self._answer(connection, bytes(received[:end]))
        elif not data:
            if received:
                self._refuse(connection, HttpError(
                    http.HTTPStatus.BAD_REQUEST, "incomplete head"))
            else:
                connection.close()

    def read_timed_out(self, connection):
        """Answer 408 to a client that did not send its head in time."""
        self._refuse(connection, HttpError(
            http.HTTPStatus.REQUEST_TIMEOUT,
            f"head not sent within {self.limits.read_timeout:g}s"))

    def read_failed(self, connection, error):
        """Log a client whose connection failed (browsers do reset)."""
        self.log.info("HTTP client %s went away: %s", connection.peer, error)

    def _answer(self, connection, head):
        """Answer a whole request head."""
        try:
            method, path = parse_request_line(head)
        except HttpError as error:
            self._refuse(connection, error)
            return
        guard = self._guard
        guard.log = self.log
        with guard:
            response = format_response(*self.handler(method, path),
                                       method=method)
        if guard.failed:
            response = error_response(http.HTTPStatus.INTERNAL_SERVER_ERROR)
        self.log.debug("HTTP %s %s from %s: %s", method, path[:200],
                       connection.peer, response.split(b"\r\n", 1)[0])
        connection.received = None
        connection.send(response)

    def _refuse(self, connection, error):
        """Answer a request that cannot be served with an error status."""
        self.log.info("Refused HTTP request from %s: %d %s (%s)",
                      connection.peer, error.status.value,
                      error.status.phrase, error)
        connection.received = None
        connection.send(error_response(error.status))
