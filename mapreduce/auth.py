"""Signing and checking messages with a shared secret (HMAC-SHA256).

Without a secret nothing here is used, and the bytes on the wire are
exactly the specification's. With one, every message (TCP and heartbeat
alike) travels inside an *envelope*, itself one JSON object:

    {"message_type": "signed", "sender": str, "recipient": str,
     "time_ms": int, "nonce": str, "message": str, "mac": str}

`message` is the exact bytes of the inner message (`protocol.encode`'s
output), as a string; `time_ms` the sender's wall clock in milliseconds
since the epoch; `nonce` 32 random hex digits; `mac` the hex HMAC-SHA256,
under the secret, of the canonical bytes `canonical_bytes` builds from
every other field. A spec-only process that receives an envelope sees a
well-formed message of a type it does not know, and ignores it.

The receiver accepts an envelope only if its MAC is right, its time is
within `max_age` seconds of the receiver's clock (either way: the clocks
of a cluster are assumed to agree to well within that), its nonce has not
been seen within that window, its sender is not the receiver's own name
(a reflection), and, when the receiver says who it is, its recipient is
the receiver. A receiver may also refuse everything signed before it
started (`refuse_older_than_now`). Anything else raises `AuthError`,
whose text says why; the caller logs it and drops the message.
"""

import collections
import hashlib
import hmac
import json
import json.encoder
import os
import secrets
import stat
import threading
import time

from mapreduce import protocol

ENVELOPE_TYPE = protocol.SIGNED

# Bump when the canonical bytes change: old and new then refuse each other.
_VERSION = "mapreduce-hmac-sha256-v1"

# The envelope's keys, in wire order (message_type first).
_ENVELOPE_KEYS = ("message_type", "sender", "recipient", "time_ms", "nonce",
                  "message", "mac")

_NONCE_BYTES = 16
# An HMAC-SHA256 in hexadecimal.
_MAC_LENGTH = 2 * hashlib.sha256().digest_size

# JSON's string escaping, as `json.dumps` does it by default (ASCII only):
# the short fields are put together with it, byte for byte what
# `json.dumps` gives, without its general machinery (a message is sealed
# and opened on the loop thread, so every microsecond counts).
_quoted = json.encoder.encode_basestring_ascii

# A secret file is small; a bigger file is a mistake (a wrong path).
MAX_SECRET_BYTES = 64 * 1024
MIN_SECRET_BYTES = 16

SECRET_FILE_VARIABLE = "MAPREDUCE_SECRET_FILE"

# Seconds by which a process's clock may run ahead of its peers' without
# its start refusing their first messages (see `refuse_older_than_now`);
# NTP keeps a cluster's clocks within milliseconds.
START_GRACE = 1.0

# How to make a good secret, for error messages and the README.
MAKE_SECRET_HINT = ("(umask 077; head -c 32 /dev/urandom | base64 > "
                    "secret.key)")


class AuthError(ValueError):
    """A received message is refused; `str()` says why, in one line."""


class SecretError(ValueError):
    """A secret file cannot be used; `str()` says why and what to do."""


def canonical_bytes(sender, recipient, time_ms, nonce, message):
    """Return the bytes the MAC covers: every field but the MAC itself.

    A JSON array of the version and the short fields (JSON escapes every
    newline), then a newline, then the inner message's exact bytes: so no
    two different envelopes share the same canonical bytes.
    """
    # json.dumps([_VERSION, sender, recipient, time_ms, nonce]), faster.
    head = (f'[{_quoted(_VERSION)}, {_quoted(sender)}, {_quoted(recipient)}, '
            f'{int(time_ms)}, {_quoted(nonce)}]')
    return head.encode("ascii") + b"\n" + message


class ReplayCache:
    """The nonces of accepted messages, kept while they could be replayed.

    A message is accepted only within `max_age` seconds of its time, so a
    nonce needs remembering for at most 2 * `max_age` seconds after it
    arrived (a message dated `max_age` ahead stays fresh that long). The
    entries expire in arrival order, by the monotonic clock, so dropping
    the expired ones from the front is O(1) per message. At most
    `capacity` nonces are kept: when that many arrived within the window,
    new messages are refused (never accepted unchecked) until the oldest
    expire.
    """

    def __init__(self, lifetime, capacity, monotonic=time.monotonic):
        """Keep nonces for `lifetime` seconds, at most `capacity` of them."""
        self.lifetime = lifetime
        self.capacity = capacity
        self._monotonic = monotonic
        self._expiry = collections.OrderedDict()

    def __len__(self):
        """Return how many nonces are kept now."""
        return len(self._expiry)

    def add(self, nonce):
        """Record `nonce`, or raise AuthError if seen or if the cache is full.

        Drops expired nonces first.
        """
        now = self._monotonic()
        expiry = self._expiry
        while expiry:
            oldest, expires_at = next(iter(expiry.items()))
            if expires_at > now:
                break
            del expiry[oldest]
        if nonce in expiry:
            raise AuthError("replayed: this message was already received")
        if len(expiry) >= self.capacity:
            raise AuthError(f"too many signed messages in the last "
                            f"{self.lifetime:g}s (replay cache of "
                            f"{self.capacity} full)")
        expiry[nonce] = now + self.lifetime


class Authenticator:
    """Seals outgoing messages and opens received ones with one secret.

    `seal` may be called from any thread. `open` keeps the replay cache,
    under a lock held for microseconds: it never blocks for long, so the
    reactor's loop thread can call it. Each process (each client) has its
    own Authenticator; replay protection is per receiver.
    """

    def __init__(self, secret, identity="", *, max_age=30.0,
                 replay_capacity=100_000, clock=time.time):
        """Use bytes `secret`; `identity` names this process in `sender`.

        `max_age` is the freshness window in seconds (both ways);
        `replay_capacity` bounds the replay cache; `clock` is the wall
        clock (seconds since the epoch) that dates and checks messages.
        """
        if not secret:
            raise ValueError("an empty secret signs nothing")
        # The keyed hash before any message: copied for each one, which
        # spares deriving the key's pads every time.
        self._keyed = hmac.new(bytes(secret), digestmod=hashlib.sha256)
        self.identity = identity
        self.max_age = max_age
        self._replays = ReplayCache(2 * max_age, replay_capacity)
        self._lock = threading.Lock()
        self.clock = clock
        self._not_before_ms = 0

    def _mac(self, canonical):
        """Return the hex HMAC-SHA256 of bytes `canonical`."""
        keyed = self._keyed.copy()
        keyed.update(canonical)
        return keyed.hexdigest()

    def seal(self, data, recipient=""):
        """Return the envelope bytes carrying message bytes `data`.

        `data` must be UTF-8 text (as `protocol.encode` makes).
        `recipient` names the receiver as it knows itself (a Worker's
        `host:port`), or "" when any holder of the secret may open it.
        """
        message = data.decode("utf-8")
        time_ms = int(self.clock() * 1000)
        nonce = secrets.token_hex(_NONCE_BYTES)
        mac = self._mac(canonical_bytes(self.identity, recipient, time_ms,
                                        nonce, data))
        # protocol.encode of the envelope (keys in _ENVELOPE_KEYS' order),
        # byte for byte, faster.
        return (f'{{"message_type": {_quoted(ENVELOPE_TYPE)}, '
                f'"sender": {_quoted(self.identity)}, '
                f'"recipient": {_quoted(recipient)}, "time_ms": {time_ms}, '
                f'"nonce": {_quoted(nonce)}, "message": {_quoted(message)}, '
                f'"mac": {_quoted(mac)}}}').encode("ascii")

    def refuse_older_than_now(self, grace=0.0):
        """Refuse from now on every message signed before this moment.

        A process that starts remembers no nonce: call this when it starts
        serving, so that a message captured on its way to a previous
        process at the same address cannot be replayed to this one. With
        `grace` seconds, the moment is that much earlier: a peer whose
        clock is behind this one's by less than `grace` is not refused
        (an answer to this process's first message would otherwise be),
        and a previous process that ended less than `grace` seconds
        before this one started is not protected.
        """
        self._not_before_ms = int((self.clock() - grace) * 1000)

    def open(self, data, recipient=None):
        """Return the inner message bytes of envelope bytes `data`.

        Raises AuthError, saying why, if `data` is not an envelope, its
        MAC is wrong, it is stale or dated in the future, it was already
        received or signed before `refuse_older_than_now` was called,
        it claims to come from this process itself (a reflection), or
        (when `recipient` is given) it is meant for another receiver.
        """
        return self.open_from(data, recipient)[1]

    def open_from(self, data, recipient=None):
        """Return `(sender, inner message bytes)` of envelope bytes `data`.

        The sender is the name the envelope was signed in (so that an
        answer can be addressed to it); raises AuthError as `open` does.
        """
        sender, to, time_ms, nonce, inner, mac = _envelope_fields(data)
        expected = self._mac(canonical_bytes(sender, to, time_ms, nonce,
                                             inner))
        if not hmac.compare_digest(expected, mac):
            raise AuthError("bad signature (a different secret, or the "
                            "message was changed)")
        age = self.clock() - time_ms / 1000
        if age > self.max_age:
            raise AuthError(f"stale: signed {age:.1f}s ago (more than "
                            f"{self.max_age:g}s; are the clocks in step?)")
        if age < -self.max_age:
            raise AuthError(f"dated {-age:.1f}s in the future (more than "
                            f"{self.max_age:g}s; are the clocks in step?)")
        if time_ms < self._not_before_ms:
            raise AuthError("signed before this process started (a replay "
                            "meant for an earlier process?)")
        if self.identity and sender == self.identity:
            raise AuthError(f"reflected: signed in this process's own name "
                            f"{sender!r}")
        if recipient is not None and to != recipient:
            raise AuthError(f"meant for {to!r}, not for {recipient!r}")
        with self._lock:
            self._replays.add(nonce)
        return sender, inner

    @property
    def replay_cache_size(self):
        """Return how many nonces the replay cache holds now."""
        return len(self._replays)


def _envelope_fields(data):
    """Return (sender, recipient, time_ms, nonce, message, mac) of `data`.

    `message` is returned as bytes. Raises AuthError if `data` is not an
    envelope of the right shape.
    """
    try:
        obj = protocol.decode_object(data)
    except protocol.ProtocolError as exc:
        raise AuthError(f"not signed: {exc}") from exc
    if obj.get("message_type") != ENVELOPE_TYPE:
        kind = obj.get("message_type")
        raise AuthError(f"not signed: a plain {str(kind)[:80]!r} message")
    for key in _ENVELOPE_KEYS[1:]:
        if key != "time_ms" and not isinstance(obj.get(key), str):
            raise AuthError(f"malformed signed message: {key!r} is not a "
                            "string")
    time_ms = obj.get("time_ms")
    if (not isinstance(time_ms, int) or isinstance(time_ms, bool)
            or not 0 <= time_ms < 2 ** 53):
        raise AuthError("malformed signed message: 'time_ms' is not a time")
    nonce = obj["nonce"]
    if len(nonce) != 2 * _NONCE_BYTES:
        raise AuthError("malformed signed message: 'nonce' has the wrong "
                        "length")
    if not (obj["mac"].isascii() and len(obj["mac"]) == _MAC_LENGTH):
        raise AuthError("malformed signed message: 'mac' is not an "
                        "HMAC-SHA256 in hexadecimal")
    try:
        message = obj["message"].encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AuthError("malformed signed message: 'message' is not "
                        "text") from exc
    return (obj["sender"], obj["recipient"], time_ms, nonce, message,
            obj["mac"])


def load_secret(path):
    """Return the secret in the file at `path`, without a final newline.

    Raises SecretError with a one-line message naming `path` and the fix
    if the file cannot be read, is not a regular file, may be read or
    written by group or others, is empty, or is too short or too long.
    """
    try:
        # Non-blocking, so that a FIFO given by mistake does not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as secret_file:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SecretError(f"secret file {path}: not a regular file")
            if info.st_mode & 0o077:
                raise SecretError(
                    f"secret file {path} is open to group or others (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}): run chmod 600 {path}")
            secret = secret_file.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise SecretError(f"cannot read secret file {path}: "
                          f"{exc.strerror or exc}") from exc
    if len(secret) > MAX_SECRET_BYTES:
        raise SecretError(f"secret file {path}: larger than "
                          f"{MAX_SECRET_BYTES} bytes; is it the right file?")
    secret = secret[:-2] if secret.endswith(b"\r\n") else secret
    secret = secret[:-1] if secret.endswith(b"\n") else secret
    if not secret:
        raise SecretError(f"secret file {path} is empty; make one with "
                          f"{MAKE_SECRET_HINT}")
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError(f"secret file {path}: {len(secret)} bytes, fewer "
                          f"than {MIN_SECRET_BYTES}; make a longer one with "
                          f"{MAKE_SECRET_HINT}")
    return secret
