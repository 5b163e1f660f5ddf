"""A signed cluster: who is who, and the reactor's envelope that signs.

With a secret, a process's reactor carries a `Signing` as its envelope
(see mapreduce.reactor.net): every message it sends, every answer and
every heartbeat is sealed (mapreduce.auth), and everything it receives
is opened and checked before anything reads it. What fails the check is
dropped, and a warning says why (`RefusalLog`: a flood cannot fill the
log).

Names in the envelopes: the Manager signs as, and only takes messages
meant for, `manager`; a Worker as its `host:port` (the address it
registers with, which the Manager sends to); a client as
`client-<random>`. A new message is meant for the name of its
destination (`name_of(address)`), an answer for the sender of the
message it answers. So a message captured on its way to one Worker is
refused by every other Worker and by the Manager, and one meant for the
Manager by every Worker.
"""

import secrets
import time
import typing

from mapreduce import auth

MANAGER_NAME = "manager"


def manager_name(_address):
    """Return the name of the Manager, wherever it is reached."""
    return MANAGER_NAME


def worker_name(address):
    """Return the name of the Worker at `address`: `host:port`."""
    return f"{address[0]}:{address[1]}"


def client_name():
    """Return a new name for a client: unique, so answers reach only it."""
    return "client-" + secrets.token_hex(8)


class Opened(typing.NamedTuple):
    """A message that passed the check: who signed it, and its bytes."""

    sender: str
    message: bytes


class RefusalLog:
    """Warnings about refused messages, at most `burst` per `period`.

    A flood of unsigned datagrams must not fill the disk: past `burst`
    warnings within `period` seconds, refusals are counted, and the count
    is logged with the first refusal after the period.
    """

    def __init__(self, burst=10, period=60.0, clock=time.monotonic):
        """Log at most `burst` warnings each `period` seconds of `clock`."""
        self.burst = burst
        self.period = period
        self._clock = clock
        self._window_end = None
        self._logged = 0
        self._unlogged = 0

    def warn(self, log, peer, reason):
        """Log on `log` that a message from `peer` was refused for `reason`."""
        now = self._clock()
        if self._window_end is None or now >= self._window_end:
            if self._unlogged:
                log.warning("Refused %d more messages in the last %gs "
                            "without a line each (see above for the kind)",
                            self._unlogged, self.period)
            self._window_end = now + self.period
            self._logged = self._unlogged = 0
        if self._logged >= self.burst:
            self._unlogged += 1
            return
        self._logged += 1
        more = (f"; more refusals in the next {self.period:g}s are "
                "counted, not logged" if self._logged == self.burst else "")
        log.warning("Refused a message from %s: %s%s", peer, reason, more)


class Signing:
    """Seals and checks a process's messages: its reactor's envelope.

    `authenticator` (mapreduce.auth) holds the secret and this process's
    name (`identity`), which is also the only recipient it accepts;
    `name_of(address)` names the process at a destination; `log()`
    returns the logger for refusals.
    """

    def __init__(self, authenticator, name_of, log):
        """Sign with `authenticator`; name destinations with `name_of`."""
        self.authenticator = authenticator
        self.name_of = name_of
        self.log = log
        self.refusals = RefusalLog()

    @property
    def name(self):
        """Return the name this process signs with and accepts."""
        return self.authenticator.identity

    @name.setter
    def name(self, name):
        """Sign as, and accept only messages meant for, `name`."""
        self.authenticator.identity = name

    def seal_to(self, data, address):
        """Return `data` sealed for the process at `address` (host, port)."""
        return self.authenticator.seal(data, self.name_of(address))

    def seal_reply(self, data, opened):
        """Return answer `data` sealed for the sender of message `opened`."""
        return self.authenticator.seal(data, opened.sender)

    def check(self, data):
        """Return `data` opened as an `Opened`; raise AuthError if refused."""
        return Opened(*self.authenticator.open_from(data, self.name))

    def open(self, data, peer):
        """Return `data` opened, or None after logging why it is refused."""
        try:
            return self.check(data)
        except auth.AuthError as exc:
            self.refusals.warn(self.log(), peer, exc)
            return None


def signing(secret, name, name_of, log):
    """Return the Signing for bytes `secret` (None: None, nothing signed)."""
    if secret is None:
        return None
    return Signing(auth.Authenticator(secret, name), name_of, log)
