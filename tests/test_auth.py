"""Tests for mapreduce.auth: sealing, opening and loading a secret."""

import hashlib
import hmac
import json
import os
import time

import pytest

from mapreduce import auth, protocol

SECRET = b"correct horse battery staple"
REGISTER = protocol.encode(protocol.Register("10.0.0.2", 6001))


class FakeClock:
    """A wall clock that stands still until a test moves it."""

    def __init__(self, now=1_700_000_000.0):
        """Start at epoch second `now`."""
        self.now = now

    def __call__(self):
        """Return the current time."""
        return self.now


@pytest.fixture(name="clock")
def fixture_clock():
    """Return a clock shared by a sender and a receiver."""
    return FakeClock()


def pair(clock, **options):
    """Return a (sender, receiver) pair with the same secret and clock."""
    sender = auth.Authenticator(SECRET, "worker 10.0.0.2:6001", clock=clock)
    receiver = auth.Authenticator(SECRET, "manager", clock=clock, **options)
    return sender, receiver


def reseal(envelope, secret=SECRET, **changes):
    """Return `envelope` with `changes` applied, MAC recomputed for `secret`.

    Changes the signed fields the way someone holding `secret` could.
    """
    obj = json.loads(envelope)
    obj.update(changes)
    canonical = auth.canonical_bytes(obj["sender"], obj["recipient"],
                                     obj["time_ms"], obj["nonce"],
                                     obj["message"].encode("utf-8"))
    obj["mac"] = hmac.new(secret, canonical, hashlib.sha256).hexdigest()
    return json.dumps(obj).encode("utf-8")


def edit(envelope, **changes):
    """Return `envelope` with `changes` applied and the MAC left alone."""
    obj = json.loads(envelope)
    obj.update(changes)
    return json.dumps(obj).encode("utf-8")


def refused(receiver, data, *words, **kwargs):
    """Assert that `receiver` refuses `data`, saying every one of `words`."""
    with pytest.raises(auth.AuthError) as info:
        receiver.open(data, **kwargs)
    for word in words:
        assert word in str(info.value)
    assert "\n" not in str(info.value)


def test_round_trip_gives_the_exact_bytes(clock):
    """What is sealed opens to the same bytes, key order and all."""
    sender, receiver = pair(clock)
    for data in (REGISTER, b'{"message_type": "shutdown"}',
                 protocol.encode({"b": 1, "a": "\u00e9\u65e5 \\ \"x\"\n"}),
                 '{"x": "caf\u00e9"}'.encode("utf-8"), b"not even json"):
        assert receiver.open(sender.seal(data)) == data


def test_envelope_wire_form(clock):
    """The envelope is one JSON object, keys in the documented order."""
    sender, _ = pair(clock)
    envelope = sender.seal(REGISTER, recipient="10.0.0.1:6000")
    obj = json.loads(envelope)
    assert list(obj) == ["message_type", "sender", "recipient", "time_ms",
                         "nonce", "message", "mac"]
    assert obj["message_type"] == "signed"
    assert obj["sender"] == "worker 10.0.0.2:6001"
    assert obj["recipient"] == "10.0.0.1:6000"
    assert obj["time_ms"] == 1_700_000_000_000
    assert len(obj["nonce"]) == 32 and int(obj["nonce"], 16) >= 0
    assert obj["message"].encode("utf-8") == REGISTER
    assert len(obj["mac"]) == 64
    assert envelope == json.dumps(obj).encode("utf-8")
    assert json.loads(sender.seal(REGISTER))["nonce"] != obj["nonce"]


@pytest.mark.parametrize("text", ['"quoted" \\ back', "line\nbreak\x00\x1f",
                                  "caf\u00e9 \u4e2d \U0001F600 \u2028", ""])
def test_envelope_bytes_are_json_dumps_exactly(text):
    """Sealing writes exactly what `json.dumps` of the envelope gives.

    The envelope and the MAC's head are put together by hand for speed:
    with quotes, backslashes, control and non-ASCII characters in every
    string, the bytes must still be `json.dumps`'s.
    """
    sealer = auth.Authenticator(SECRET, text)
    data = json.dumps({"message_type": "shutdown", "x": text}).encode()
    envelope = sealer.seal(data, text + "!")
    obj = json.loads(envelope)
    assert envelope == json.dumps(obj).encode("utf-8")
    assert obj["message"].encode("utf-8") == data
    head = json.dumps(["mapreduce-hmac-sha256-v1", text, text + "!", 17,
                       text])
    assert auth.canonical_bytes(text, text + "!", 17, text, data) == (
        head.encode("utf-8") + b"\n" + data)
    receiver = auth.Authenticator(SECRET, "other")
    assert receiver.open(envelope, text + "!") == data


def test_a_spec_only_peer_sees_an_unknown_message(clock):
    """To the protocol, an envelope is a message type it does not know."""
    sender, _ = pair(clock)
    with pytest.raises(protocol.UnknownMessage):
        protocol.decode(sender.seal(REGISTER))


@pytest.mark.parametrize("field, value", [
    ("message", REGISTER.decode().replace("6001", "6002")),
    ("sender", "worker 10.0.0.3:6001"),
    ("recipient", "10.0.0.9:6001"),
    ("time_ms", 1_700_000_000_001),
    ("nonce", "0" * 32),
    ("mac", "0" * 64),
])
def test_tampered_fields_are_refused(clock, field, value):
    """Changing any one field without the secret breaks the signature."""
    sender, receiver = pair(clock)
    envelope = sender.seal(REGISTER)
    refused(receiver, edit(envelope, **{field: value}), "bad signature")
    assert receiver.open(envelope) == REGISTER


def test_mac_in_upper_case_is_refused(clock):
    """The MAC is compared as sent: lower-case hex only."""
    sender, receiver = pair(clock)
    envelope = sender.seal(REGISTER)
    mac = json.loads(envelope)["mac"]
    refused(receiver, edit(envelope, mac=mac.upper()), "bad signature")


def test_a_different_secret_is_refused(clock):
    """A process with another secret can neither forge nor read-and-sign."""
    _, receiver = pair(clock)
    stranger = auth.Authenticator(b"another secret of some length",
                                  clock=clock)
    refused(receiver, stranger.seal(REGISTER), "bad signature")


def test_replay_is_refused(clock):
    """The same envelope is accepted once."""
    sender, receiver = pair(clock)
    envelope = sender.seal(REGISTER)
    assert receiver.open(envelope) == REGISTER
    refused(receiver, envelope, "replayed")
    clock.now += 29
    refused(receiver, envelope, "replayed")


def test_replay_is_refused_as_long_as_it_is_fresh():
    """A nonce is remembered for as long as its envelope would be fresh.

    An envelope dated max_age ahead stays fresh for 2 * max_age on the
    receiver's clock; replayed all that time, it is refused every time,
    first as a replay and then as stale. Real clocks, a short max_age.
    """
    sender = auth.Authenticator(SECRET, clock=lambda: time.time() + 0.19)
    receiver = auth.Authenticator(SECRET, max_age=0.2)
    envelope = sender.seal(REGISTER)
    assert receiver.open(envelope) == REGISTER
    reasons = set()
    while "stale" not in reasons:
        with pytest.raises(auth.AuthError) as info:
            receiver.open(envelope)
        reasons.add(str(info.value).split(":", 1)[0])
    assert reasons == {"replayed", "stale"}


def test_stale_and_future_dated_are_refused(clock):
    """Outside max_age either way is refused; at the edges it is fresh."""
    sender, receiver = pair(clock)
    sent_at = clock.now
    envelopes = [sender.seal(REGISTER) for _ in range(4)]
    clock.now = sent_at + 30.001
    refused(receiver, envelopes[0], "stale", "30.0s ago")
    clock.now = sent_at - 30.001
    refused(receiver, envelopes[1], "future", "30.0s")
    clock.now = sent_at + 30
    assert receiver.open(envelopes[2]) == REGISTER
    clock.now = sent_at - 30
    assert receiver.open(envelopes[3]) == REGISTER


def test_signed_time_is_what_is_checked(clock):
    """Moving the date forward needs the secret; with it, it is checked."""
    sender, receiver = pair(clock)
    envelope = sender.seal(REGISTER)
    later = 1_700_000_000_000 + 31_000
    refused(receiver, edit(envelope, time_ms=later), "bad signature")
    refused(receiver, reseal(envelope, time_ms=later), "future")


def test_unsigned_is_refused(clock):
    """A plain message, or anything that is not an envelope, is refused."""
    _, receiver = pair(clock)
    refused(receiver, REGISTER, "not signed", "'register'")
    refused(receiver, b"", "not signed")
    refused(receiver, b"\xff\xfe", "not signed")
    refused(receiver, b"[1, 2]", "not signed")
    refused(receiver, b'{"message_type": "signed"}', "malformed")


@pytest.mark.parametrize("changes, word", [
    ({"time_ms": "1700000000000"}, "time_ms"),
    ({"time_ms": True}, "time_ms"),
    ({"time_ms": -1}, "time_ms"),
    ({"time_ms": 10 ** 400}, "time_ms"),
    ({"nonce": 7}, "nonce"),
    ({"nonce": "ab"}, "nonce"),
    ({"message": ["x"]}, "message"),
    ({"message": "\ud800"}, "message"),
    ({"mac": None}, "mac"),
    ({"mac": "\u00e9" * 64}, "mac"),
    ({"mac": "ab"}, "mac"),
    ({"sender": 1}, "sender"),
    ({"recipient": {}}, "recipient"),
])
def test_malformed_envelopes_are_refused(clock, changes, word):
    """Wrong types and shapes give AuthError, never another exception."""
    sender, receiver = pair(clock)
    refused(receiver, edit(sender.seal(REGISTER), **changes), "malformed",
            word)


def test_recipient_is_checked_when_the_receiver_names_itself(clock):
    """An envelope for one Worker is refused by another."""
    sender, receiver = pair(clock)
    for_one = sender.seal(REGISTER, recipient="10.0.0.2:6001")
    refused(receiver, for_one, "meant for '10.0.0.2:6001'",
            recipient="10.0.0.3:6001")
    refused(receiver, sender.seal(REGISTER), "meant for ''",
            recipient="10.0.0.3:6001")
    assert receiver.open(for_one, recipient="10.0.0.2:6001") == REGISTER
    assert receiver.open(sender.seal(REGISTER, "x")) == REGISTER


def test_a_restarted_receiver_refuses_what_was_signed_before(clock):
    """A message captured for a previous process cannot be replayed.

    A new receiver remembers no nonce; once it refuses what was signed
    before it started, a capture from before is refused, and what is
    signed from then on is accepted.
    """
    sender, first = pair(clock)
    captured = sender.seal(REGISTER)
    assert first.open(captured) == REGISTER
    clock.now += 5
    _, second = pair(clock)
    second.refuse_older_than_now()
    refused(second, captured, "signed before this process started")
    assert second.open(sender.seal(REGISTER)) == REGISTER
    _, third = pair(clock)
    assert third.open(captured) == REGISTER


def test_own_messages_reflected_back_are_refused(clock):
    """A process refuses an envelope that claims to come from itself."""
    sender, receiver = pair(clock)
    worker = auth.Authenticator(SECRET, "worker 10.0.0.2:6001", clock=clock)
    refused(worker, sender.seal(REGISTER), "reflected",
            "'worker 10.0.0.2:6001'")
    assert receiver.open(sender.seal(REGISTER)) == REGISTER
    anonymous = auth.Authenticator(SECRET, clock=clock)
    assert anonymous.open(anonymous.seal(REGISTER)) == REGISTER


def test_refused_envelopes_do_not_fill_the_replay_cache(clock):
    """Only accepted envelopes take room: a forger cannot fill it."""
    sender, receiver = pair(clock)
    envelope = sender.seal(REGISTER)
    for index in range(100):
        with pytest.raises(auth.AuthError):
            receiver.open(edit(envelope, nonce=f"{index:032x}"))
    assert receiver.replay_cache_size == 0
    receiver.open(envelope)
    assert receiver.replay_cache_size == 1


def test_replay_cache_is_bounded_under_a_flood(clock):
    """A flood of valid envelopes is refused past the cache's capacity.

    When full, new envelopes are refused (not accepted unchecked), and
    none already seen is forgotten.
    """
    sender, receiver = pair(clock, replay_capacity=1000)
    envelopes = [sender.seal(REGISTER) for _ in range(1500)]
    accepted = 0
    for envelope in envelopes:
        try:
            receiver.open(envelope)
            accepted += 1
        except auth.AuthError as exc:
            assert "replay cache of 1000 full" in str(exc)
    assert accepted == 1000
    assert receiver.replay_cache_size == 1000
    refused(receiver, envelopes[0], "replayed")
    refused(receiver, envelopes[999], "replayed")


def test_replay_cache_expires_in_arrival_order():
    """Expired nonces are dropped, and room is made for new ones."""
    now = [100.0]
    cache = auth.ReplayCache(lifetime=10, capacity=3,
                             monotonic=lambda: now[0])
    for nonce in "abc":
        cache.add(nonce)
        now[0] += 1
    with pytest.raises(auth.AuthError, match="full"):
        cache.add("d")
    now[0] = 110.0
    cache.add("d")
    assert len(cache) == 3
    with pytest.raises(auth.AuthError, match="replayed"):
        cache.add("b")
    now[0] = 200.0
    cache.add("b")
    assert len(cache) == 1


def test_seal_needs_text():
    """Sealing bytes that are not UTF-8 is a programming error."""
    with pytest.raises(ValueError):
        auth.Authenticator(SECRET).seal(b"\xff")
    with pytest.raises(ValueError):
        auth.Authenticator(b"")


def write_secret(tmp_path, content, mode=0o600, name="secret.key"):
    """Write a secret file with `content` and `mode`; return its path."""
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("content", [
    SECRET, SECRET + b"\n", SECRET + b"\r\n"])
def test_load_secret_strips_one_final_newline(tmp_path, content):
    """The file's bytes, without a final newline."""
    assert auth.load_secret(write_secret(tmp_path, content)) == SECRET


def test_load_secret_keeps_other_whitespace(tmp_path):
    """Only one final newline goes; other bytes are the secret."""
    content = b" " + SECRET + b"\n\n"
    assert auth.load_secret(write_secret(tmp_path, content)) == content[:-1]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o660])
def test_load_secret_refuses_a_file_open_to_others(tmp_path, mode):
    """Group or other permissions: refused, naming the path and the fix."""
    path = write_secret(tmp_path, SECRET, mode)
    with pytest.raises(auth.SecretError) as info:
        auth.load_secret(path)
    message = str(info.value)
    assert f"chmod 600 {path}" in message and f"{mode:04o}" in message
    assert "\n" not in message


@pytest.mark.parametrize("content, word", [
    (b"", "empty"), (b"\n", "empty"), (b"short\n", "fewer than 16"),
    (b"x" * (auth.MAX_SECRET_BYTES + 1), "larger than")])
def test_load_secret_refuses_bad_contents(tmp_path, content, word):
    """Empty, too short or too long: refused in one line."""
    path = write_secret(tmp_path, content)
    with pytest.raises(auth.SecretError) as info:
        auth.load_secret(path)
    assert word in str(info.value) and path in str(info.value)
    assert "\n" not in str(info.value)


def test_load_secret_refuses_what_is_not_a_readable_file(tmp_path):
    """A missing path, a directory or an unreadable file: one line each."""
    missing = str(tmp_path / "missing")
    with pytest.raises(auth.SecretError, match="cannot read .*missing"):
        auth.load_secret(missing)
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(auth.SecretError):
        auth.load_secret(str(directory))
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo, 0o600)
    with pytest.raises(auth.SecretError, match="not a regular file"):
        auth.load_secret(fifo)
    if os.geteuid() != 0:
        unreadable = write_secret(tmp_path, SECRET, 0o000, "unreadable")
        with pytest.raises(auth.SecretError, match="cannot read"):
            auth.load_secret(unreadable)
