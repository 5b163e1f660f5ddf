"""An event loop over selectors and its network parts; knows no MapReduce."""

from mapreduce.reactor.loop import Handle, Reactor
from mapreduce.reactor.net import (
    DatagramServer, MessageServer, send_datagram, send_message,
)
from mapreduce.reactor.pipes import LineReader

__all__ = [
    "DatagramServer", "Handle", "LineReader", "MessageServer", "Reactor",
    "send_datagram", "send_message",
]
