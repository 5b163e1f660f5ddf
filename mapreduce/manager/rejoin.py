"""When to tell a beating Worker that the Manager does not count it.

A Worker the Manager has marked dead, or never saw register (the Manager
restarted, say), may still be alive and beating: after a long pause, a
healed network partition, or a restart of the Manager. The specification
ignores such heartbeats. The `rejoin` extension tells such a Worker to
register again, once it has kept beating for `rejoin_after` seconds, and
then at most once every `rejoin_after` seconds while it goes on beating.

Heartbeats are datagrams that anyone can forge, naming any host and port,
and each `rejoin` is a connection to that address. So the watch never
connects to one address more often than once per `rejoin_after`, and it
follows at most `limit` strangers (addresses the Manager never saw
register) at a time: a flood of forged heartbeats is turned away, not
remembered. Workers the Manager knows (dead ones) are bounded by the
registry and always followed.
"""

import collections
import dataclasses

# What `RejoinWatch.beat` says to do about a heartbeat.
REJOIN = "rejoin"  # Send `rejoin` to its address now.
TURNED_AWAY = "turned away"  # Too many strangers: log that (now and then).


@dataclasses.dataclass
class _Beating:
    """How long an address has been beating, and when it was last told."""

    first: float
    last: float
    stranger: bool
    told: object = None  # When it was last sent `rejoin`, or None.


class RejoinWatch:
    """Follows the heartbeats the Manager does not count; loop thread only.

    `beat(address, now, stranger)` takes one such heartbeat and says
    what to do: REJOIN, TURNED_AWAY (once per `rejoin_after` at most,
    while strangers are turned away) or nothing (None). An address that
    stops beating for `forget_after` seconds is forgotten, so its next
    beat starts a new count.
    """

    def __init__(self, rejoin_after, forget_after, limit):
        """Tell after `rejoin_after` s; forget after `forget_after` s."""
        self.rejoin_after = rejoin_after
        self.forget_after = forget_after
        self.limit = limit
        self.turned_away = 0  # Heartbeats of strangers past the limit.
        self._turned_away_told = None  # When TURNED_AWAY was last said.
        self._beating = collections.OrderedDict()  # Oldest last beat first.
        self._strangers = 0

    def __len__(self):
        """Return how many addresses are followed now."""
        return len(self._beating)

    def beat(self, address, now, stranger):
        """Take a heartbeat from `address`; return what to do about it.

        `stranger` says the Manager never saw `address` register.
        """
        self._forget_silent(now)
        beating = self._beating.get(address)
        if beating is None:
            if stranger and self._strangers >= self.limit:
                return self._turn_away(now)
            beating = self._beating[address] = _Beating(now, now, stranger)
            self._strangers += stranger
        else:
            beating.last = now
            self._beating.move_to_end(address)
        if not self._due(beating.first, now) or (
                beating.told is not None and not self._due(beating.told,
                                                           now)):
            return None
        beating.told = now
        return REJOIN

    def _due(self, since, now):
        """Tell whether `rejoin_after` seconds have passed since `since`."""
        return now - since >= self.rejoin_after

    def _turn_away(self, now):
        """Count a stranger turned away; say so once in a while."""
        self.turned_away += 1
        told = self._turned_away_told
        if told is not None and not self._due(told, now):
            return None
        self._turned_away_told = now
        return TURNED_AWAY

    def forget(self, address):
        """Stop following `address` (it has registered)."""
        beating = self._beating.pop(address, None)
        if beating is not None:
            self._strangers -= beating.stranger

    def _forget_silent(self, now):
        """Forget every address silent for `forget_after` seconds."""
        while self._beating:
            address, beating = next(iter(self._beating.items()))
            if now - beating.last < self.forget_after:
                return
            self.forget(address)
