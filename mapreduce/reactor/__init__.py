"""An event loop over selectors and its network parts; knows no MapReduce."""

from mapreduce.reactor.loop import Guard, Handle, Reactor
from mapreduce.reactor.net import (
    DatagramServer, Limits, MessageServer, Reply, request, send_datagram,
    send_message,
)
from mapreduce.reactor.pipes import LineReader, LineSplitter
from mapreduce.reactor.web import HTTP_LIMITS, HttpServer

__all__ = [
    "HTTP_LIMITS", "DatagramServer", "Guard", "Handle", "HttpServer",
    "LineReader", "LineSplitter", "Limits", "MessageServer", "Reactor",
    "Reply", "request", "send_datagram", "send_message",
]
