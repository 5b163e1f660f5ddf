"""The wire messages: exact encoding, and strict checks of what arrives."""

import dataclasses
import json
import logging
import typing

import pytest

from mapreduce import protocol
from mapreduce.protocol import ProtocolError, UnknownMessage

# One example of every message, with its exact bytes on the wire as
# `json.dumps` writes them: keys in SPEC.md order, message_type first.
EXAMPLES = [
    (protocol.Shutdown(),
     '{"message_type": "shutdown"}'),
    (protocol.Register(worker_host="localhost", worker_port=6001),
     '{"message_type": "register", "worker_host": "localhost", '
     '"worker_port": 6001}'),
    (protocol.RegisterAck(),
     '{"message_type": "register_ack"}'),
    (protocol.Heartbeat(worker_host="localhost", worker_port=6002),
     '{"message_type": "heartbeat", "worker_host": "localhost", '
     '"worker_port": 6002}'),
    (protocol.NewManagerJob(
        input_directory="in", output_directory="out",
        mapper_executable="map.sh", reducer_executable="reduce.sh",
        num_mappers=4, num_reducers=3),
     '{"message_type": "new_manager_job", "input_directory": "in", '
     '"output_directory": "out", "mapper_executable": "map.sh", '
     '"reducer_executable": "reduce.sh", "num_mappers": 4, '
     '"num_reducers": 3}'),
    (protocol.NewMapTask(
        task_id=1, input_paths=["in/file02", "in/file06"],
        executable="map.sh", output_directory="shared/job-00000",
        num_partitions=3),
     '{"message_type": "new_map_task", "task_id": 1, '
     '"input_paths": ["in/file02", "in/file06"], "executable": "map.sh", '
     '"output_directory": "shared/job-00000", "num_partitions": 3}'),
    (protocol.NewReduceTask(
        task_id=2, executable="reduce.sh",
        input_paths=["j/maptask00000-part00002", "j/maptask00001-part00002"],
        output_directory="out"),
     '{"message_type": "new_reduce_task", "task_id": 2, '
     '"executable": "reduce.sh", "input_paths": '
     '["j/maptask00000-part00002", "j/maptask00001-part00002"], '
     '"output_directory": "out"}'),
    (protocol.Finished(task_id=0, worker_host="localhost", worker_port=6001),
     '{"message_type": "finished", "task_id": 0, "worker_host": '
     '"localhost", "worker_port": 6001}'),
    (protocol.TaskFailed(task_id=3, worker_host="localhost",
                         worker_port=6001, error="mapper exited with 1"),
     '{"message_type": "task_failed", "task_id": 3, "worker_host": '
     '"localhost", "worker_port": 6001, "error": "mapper exited with 1"}'),
]
IDS = [json.loads(text)["message_type"] for _, text in EXAMPLES]

# The client extensions (README: answers on the same connection).
EXTENSIONS = [
    (protocol.JobAccepted(job_id=4),
     '{"message_type": "job_accepted", "job_id": 4}'),
    (protocol.RequestRefused(error="shutting down"),
     '{"message_type": "request_refused", "error": "shutting down"}'),
    (protocol.StatusRequest(), '{"message_type": "status_request"}'),
    (protocol.StatusReply(status={"workers": []}),
     '{"message_type": "status_reply", "status": {"workers": []}}'),
    (protocol.JobRequest(job_id=2),
     '{"message_type": "job_request", "job_id": 2}'),
    (protocol.JobRequest(job_id=2, after=7),
     '{"message_type": "job_request", "job_id": 2, "after": 7}'),
    (protocol.JobReply(version=3, job={"job_id": 2}),
     '{"message_type": "job_reply", "version": 3, "job": {"job_id": 2}}'),
    (protocol.Rejoin(), '{"message_type": "rejoin"}'),
    (protocol.NewMapTask(
        task_id=1, input_paths=["in/a.gz"], executable="/bin/cat",
        output_directory="out", num_partitions=0,
        streaming=protocol.Streaming(combiner="/bin/uniq",
                                     environment={"A": "b"}),
        assignment=9),
     '{"message_type": "new_map_task", "task_id": 1, "input_paths": '
     '["in/a.gz"], "executable": "/bin/cat", "output_directory": "out", '
     '"num_partitions": 0, "streaming": {"combiner": "/bin/uniq", '
     '"environment": {"A": "b"}}, "assignment": 9}'),
    (protocol.Finished(task_id=1, worker_host="h", worker_port=2,
                       counters={"g": {"c": 3}}),
     '{"message_type": "finished", "task_id": 1, "worker_host": "h", '
     '"worker_port": 2, "counters": {"g": {"c": 3}}}'),
]

# Extension fields of wrong types: each makes its message malformed.
MALFORMED_EXTENSIONS = [
    '{"message_type": "finished", "task_id": 1, "worker_host": "h", '
    '"worker_port": 2, "counters": {"g": {"c": "3"}}}',
    '{"message_type": "finished", "task_id": 1, "worker_host": "h", '
    '"worker_port": 2, "counters": {"g": 3}}',
    '{"message_type": "new_reduce_task", "task_id": 1, "executable": "x", '
    '"input_paths": [], "output_directory": "o", "streaming": []}',
    '{"message_type": "new_reduce_task", "task_id": 1, "executable": "x", '
    '"input_paths": [], "output_directory": "o", '
    '"streaming": {"environment": {"A": 1}}}',
    '{"message_type": "new_map_task", "task_id": 1, "input_paths": [], '
    '"executable": "x", "output_directory": "o", "num_partitions": 1, '
    '"assignment": "7"}',
]


@pytest.mark.parametrize("text", MALFORMED_EXTENSIONS)
def test_malformed_extension_fields_are_refused(text):
    """An extension field of the wrong type, at any depth, is refused."""
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(text.encode())


def example(type_name):
    """Return the wire object of the example message of `type_name`."""
    return json.loads(EXAMPLES[IDS.index(type_name)][1])


def test_every_message_type_has_an_example():
    """The examples cover exactly the SPEC.md messages plus task_failed."""
    extensions = {json.loads(text)["message_type"]
                  for _, text in EXTENSIONS}
    assert sorted(set(IDS) | extensions) == sorted(protocol.MESSAGE_TYPES)
    assert sorted(IDS) == sorted([
        "shutdown", "register", "register_ack", "heartbeat",
        "new_manager_job", "new_map_task", "new_reduce_task", "finished",
        "task_failed",
    ])


@pytest.mark.parametrize("msg, text", EXAMPLES, ids=IDS)
def test_to_wire_has_spec_keys_in_spec_order(msg, text):
    """json.dumps(to_wire(msg)) is exactly the SPEC.md encoding."""
    assert json.dumps(protocol.to_wire(msg)) == text


@pytest.mark.parametrize("msg, text", EXTENSIONS)
def test_extensions_round_trip(msg, text):
    """Extension messages encode exactly so, and decode back.

    A field with a default (an optional extension key) is left out while
    it has its default value, and may be missing when received.
    """
    assert json.dumps(protocol.to_wire(msg)) == text
    assert protocol.from_wire(json.loads(text)) == msg


def test_extension_field_types_are_checked():
    """A wrong type in an extension field is a ProtocolError."""
    for obj in ({"message_type": "job_request", "job_id": 1, "after": "x"},
                {"message_type": "status_reply", "status": []},
                {"message_type": "job_accepted", "job_id": True}):
        with pytest.raises(ProtocolError):
            protocol.from_wire(obj)


@pytest.mark.parametrize("msg, text", EXAMPLES, ids=IDS)
def test_from_wire_decodes_the_spec_encoding(msg, text):
    """Decoding the wire bytes gives back the same message."""
    assert protocol.from_wire(json.loads(text)) == msg
    assert protocol.from_wire(protocol.to_wire(msg)) == msg


@pytest.mark.parametrize("msg, text", EXAMPLES, ids=IDS)
def test_from_wire_ignores_extra_keys(msg, text):
    """Keys beyond a message's fields are ignored (extensions are additive)."""
    obj = json.loads(text)
    obj["extension_field"] = {"anything": [1, 2]}
    obj["another"] = None
    assert protocol.from_wire(obj) == msg


def _field_cases():
    """Yield (message_type, field) for every field of every message."""
    for type_name in IDS:
        for field in example(type_name):
            if field != "message_type":
                yield type_name, field


FIELDS = list(_field_cases())


@pytest.mark.parametrize("type_name, field", FIELDS,
                         ids=[f"{t}-{f}" for t, f in FIELDS])
def test_from_wire_rejects_a_missing_field(type_name, field):
    """A message without one of its fields is a ProtocolError."""
    obj = example(type_name)
    del obj[field]
    with pytest.raises(ProtocolError, match=field) as info:
        protocol.from_wire(obj)
    assert not isinstance(info.value, UnknownMessage)


def _wrong_values(value):
    """Return values of the wrong type for a field whose example is value."""
    if isinstance(value, bool):
        raise AssertionError("no example field is a bool")
    if isinstance(value, int):
        return [True, False, str(value), float(value), None, [value],
                {"n": value}]
    if isinstance(value, str):
        return [1, 0, True, None, [value], {"s": value}, 1.5]
    assert isinstance(value, list)
    return ["a/b", [1], ["ok", 2], ["ok", None], [["nested"]], [True],
            None, {"0": "a"}, 3]


def _wrong_type_cases():
    """Yield (message_type, field, bad value) for every field."""
    for type_name, field in FIELDS:
        for bad in _wrong_values(example(type_name)[field]):
            yield type_name, field, bad


WRONG_TYPES = list(_wrong_type_cases())


@pytest.mark.parametrize(
    "type_name, field, bad", WRONG_TYPES,
    ids=[f"{t}-{f}-{json.dumps(b)}" for t, f, b in WRONG_TYPES])
def test_from_wire_rejects_a_field_of_the_wrong_type(type_name, field, bad):
    """Bools for ints, strings for ints, non-string list items: rejected."""
    obj = example(type_name)
    obj[field] = bad
    with pytest.raises(ProtocolError, match=field):
        protocol.from_wire(obj)


@pytest.mark.parametrize("type_name", ["register", "heartbeat", "finished",
                                       "task_failed"])
@pytest.mark.parametrize("port", [0, -1, 65536, 10 ** 20])
def test_from_wire_rejects_an_impossible_port(type_name, port):
    """A worker_port outside 1..65535 cannot be answered: rejected."""
    obj = example(type_name)
    obj["worker_port"] = port
    with pytest.raises(ProtocolError, match="worker_port"):
        protocol.from_wire(obj)


@pytest.mark.parametrize("port", [1, 65535])
def test_from_wire_accepts_the_extreme_ports(port):
    """Ports 1 and 65535 are valid."""
    obj = example("register")
    obj["worker_port"] = port
    assert protocol.from_wire(obj).worker_port == port


def test_from_wire_accepts_empty_lists_and_strings():
    """An empty input_paths (reduce of an empty input) is well formed."""
    obj = example("new_reduce_task")
    obj["input_paths"] = []
    obj["output_directory"] = ""
    msg = protocol.from_wire(obj)
    assert msg.input_paths == [] and msg.output_directory == ""


@pytest.mark.parametrize("obj", [
    [], [{"message_type": "shutdown"}], "shutdown", 1, 1.5, None, True,
])
def test_from_wire_rejects_non_objects(obj):
    """Only a JSON object can be a message."""
    with pytest.raises(ProtocolError) as info:
        protocol.from_wire(obj)
    assert not isinstance(info.value, UnknownMessage)


@pytest.mark.parametrize("obj", [
    {}, {"worker_host": "localhost", "worker_port": 6001},
    {"message_type": None}, {"message_type": 1}, {"message_type": True},
    {"message_type": ["shutdown"]}, {"message_type": {"a": 1}},
])
def test_from_wire_rejects_a_missing_or_bad_message_type(obj):
    """Without a message_type string there is nothing to decode."""
    with pytest.raises(ProtocolError) as info:
        protocol.from_wire(obj)
    assert not isinstance(info.value, UnknownMessage)


@pytest.mark.parametrize("type_name", [
    "", "Shutdown", "SHUTDOWN", "shutdown ", "reboot", "new_job", "x" * 1000,
])
def test_from_wire_raises_unknown_message_for_unknown_types(type_name):
    """An unknown message_type is UnknownMessage, a kind of ProtocolError."""
    with pytest.raises(UnknownMessage) as info:
        protocol.from_wire({"message_type": type_name, "task_id": 1})
    assert isinstance(info.value, ProtocolError)
    assert len(str(info.value)) < 200, "the message was not shortened"


# Why from_wire rejects an object: the exact text of its ProtocolError,
# which dispatch logs as "Ignored message: <text>". One line per case, so
# a new check (or a new decoding step) is one more line here.
REJECTIONS = [
    ([], "not a JSON object"),
    ("shutdown", "not a JSON object"),
    ({}, "no message_type string"),
    ({"message_type": 7}, "no message_type string"),
    ({"message_type": "reboot"}, "unknown message_type 'reboot'"),
    ({"message_type": "x" * 100}, f"unknown message_type {'x' * 80!r}"),
    ({"message_type": "x" * 80}, f"unknown message_type {'x' * 80!r}"),
    ({"message_type": "finished", "worker_host": "localhost",
      "worker_port": 6001},
     "finished: missing field 'task_id'"),
    ({"message_type": "finished", "task_id": "0",
      "worker_host": "localhost", "worker_port": 6001},
     "finished: field 'task_id' has the wrong type (str)"),
    ({"message_type": "register", "worker_host": "localhost",
      "worker_port": 6001.0},
     "register: field 'worker_port' has the wrong type (float)"),
    ({"message_type": "register", "worker_host": None, "worker_port": 1},
     "register: field 'worker_host' has the wrong type (NoneType)"),
    ({"message_type": "heartbeat", "worker_host": "localhost",
      "worker_port": 0},
     "heartbeat: worker_port 0 is not a port number"),
    ({"message_type": "register", "worker_host": "localhost",
      "worker_port": 65536},
     "register: worker_port 65536 is not a port number"),
]
REJECTION_IDS = [reason for _, reason in REJECTIONS]


@pytest.mark.parametrize("obj, reason", REJECTIONS, ids=REJECTION_IDS)
def test_from_wire_says_why_it_rejects(obj, reason):
    """The ProtocolError names what is wrong, in a short fixed text."""
    with pytest.raises(ProtocolError) as info:
        protocol.from_wire(obj)
    assert str(info.value) == reason


def declare(type_name, fields, defaults=None):
    """Declare message type `type_name` with `fields` ((name, type) pairs).

    Does what a decorated class in protocol.py does, from a table;
    `defaults` gives the default of each optional (extension) field.
    """
    namespace = {"__annotations__": dict(fields),
                 "__doc__": f"The test message {type_name}.",
                 **(defaults or {})}
    return protocol.message(type_name)(
        dataclasses.dataclass(frozen=True)(type("TestMessage", (), namespace)))


@pytest.fixture(name="message_types")
def fixture_message_types(monkeypatch):
    """Let a test declare messages; forget them when it ends."""
    types = dict(protocol.MESSAGE_TYPES)
    monkeypatch.setattr(protocol, "MESSAGE_TYPES", types)
    return types


def test_a_declared_message_is_encoded_decoded_and_registered(
        message_types):
    """@message makes a frozen message: fields in order, types checked."""
    cls = declare("test_progress", [("task_id", int),
                                    ("paths", typing.List[str]),
                                    ("note", str)])
    assert message_types["test_progress"] is cls
    assert cls.message_type == "test_progress"
    msg = cls(task_id=3, paths=["a", "b"], note="half")
    text = ('{"message_type": "test_progress", "task_id": 3, '
            '"paths": ["a", "b"], "note": "half"}')
    assert json.dumps(protocol.to_wire(msg)) == text
    assert protocol.from_wire(json.loads(text)) == msg
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.note = "done"
    with pytest.raises(ProtocolError, match="'paths' has the wrong type"):
        protocol.from_wire({"message_type": "test_progress", "task_id": 3,
                            "paths": [1], "note": "half"})


@pytest.mark.usefixtures("message_types")
def test_declared_extension_fields_are_optional_both_ways():
    """Fields with defaults: left out at their default, optional to receive.

    A field without a default stays required, and every optional field is
    looked at, whichever of them are missing.
    """
    cls = declare("test_options", [("task_id", int), ("label", str),
                                   ("retries", int)],
                  defaults={"label": "", "retries": 0})
    assert cls.defaults == {"label": "", "retries": 0}
    assert protocol.to_wire(cls(task_id=1)) == {
        "message_type": "test_options", "task_id": 1}
    assert protocol.to_wire(cls(task_id=1, retries=2)) == {
        "message_type": "test_options", "task_id": 1, "retries": 2}
    assert protocol.from_wire({"message_type": "test_options",
                               "task_id": 1, "retries": 2}) == cls(
        task_id=1, retries=2)
    assert protocol.from_wire({"message_type": "test_options",
                               "task_id": 1}) == cls(task_id=1)
    with pytest.raises(ProtocolError) as info:
        protocol.from_wire({"message_type": "test_options", "label": "x"})
    assert str(info.value) == "test_options: missing field 'task_id'"


@pytest.mark.usefixtures("message_types")
def test_a_field_type_without_a_check_is_a_type_error():
    """A field of a type from_wire cannot check fails loudly, never passes.

    Every field type needs its own check in protocol.py; a message declared
    with another type is a programming error, not a wire error.
    """
    declare("test_ratio", [("ratio", float)])
    with pytest.raises(TypeError) as info:
        protocol.from_wire({"message_type": "test_ratio", "ratio": 0.5})
    assert str(info.value) == "no check for <class 'float'>"


def test_messages_are_immutable():
    """Messages are frozen: a handler cannot change what was received."""
    msg = protocol.Register(worker_host="localhost", worker_port=6001)
    with pytest.raises(AttributeError):
        msg.worker_port = 6002


@pytest.fixture(name="log")
def fixture_log(caplog):
    """Give a logger whose records caplog keeps, from DEBUG up."""
    caplog.set_level(logging.DEBUG)
    return logging.getLogger("Manager:6000")


def test_dispatch_calls_the_handler_with_the_message(log, caplog):
    """A valid message reaches its handler, and is logged at DEBUG."""
    received = []
    protocol.dispatch(protocol.encode(example("finished")),
                      {protocol.Finished: received.append}, log)
    assert received == [protocol.Finished(task_id=0, worker_host="localhost",
                                          worker_port=6001)]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "Received Finished(task_id=0, "
                        "worker_host='localhost', worker_port=6001)")]


@pytest.mark.parametrize("obj", [
    [], {"message_type": "finished"}, {"message_type": "reboot"},
    {"message_type": "finished", "task_id": "0", "worker_host": "localhost",
     "worker_port": 6001},
])
def test_dispatch_logs_and_drops_malformed_messages(obj, log, caplog):
    """A malformed or unknown message is a WARNING and reaches no handler."""
    called = []
    handlers = {cls: called.append for cls in protocol.MESSAGE_TYPES.values()}
    protocol.dispatch(json.dumps(obj).encode(), handlers, log)
    assert not called
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert caplog.records[0].name == "Manager:6000"


@pytest.mark.parametrize("obj, reason", REJECTIONS, ids=REJECTION_IDS)
def test_dispatch_logs_why_it_drops_a_message(obj, reason, log, caplog):
    """The WARNING of a dropped message gives from_wire's reason."""
    protocol.dispatch(json.dumps(obj).encode(), {}, log)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"Ignored message: {reason}")]


@pytest.mark.parametrize("peer, source", [
    (None, ""), ("10.0.0.1:5000", " from 10.0.0.1:5000"),
])
def test_dispatch_logs_and_drops_messages_without_a_handler(
        peer, source, log, caplog):
    """A valid message this process does not take is a WARNING."""
    called = []
    protocol.dispatch(protocol.encode(example("new_map_task")),
                      {protocol.Finished: called.append}, log, peer=peer)
    assert not called
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING]
    assert warnings == [f"Ignored new_map_task message{source}: not meant "
                        "for this process"]


@pytest.mark.parametrize("msg, text", EXAMPLES, ids=IDS)
def test_encode_and_decode_are_the_spec_bytes(msg, text):
    """encode gives exactly the SPEC.md bytes; decode gives the message."""
    assert protocol.encode(msg) == text.encode()
    assert protocol.decode(text.encode()) == msg


@pytest.mark.parametrize("data, reason", [
    (b'{"unfinished": ', "not valid JSON"),
    (b"\xff\xfe not text", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b'"a string"', "not a JSON object"),
    (b"42", "not a JSON object"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
])
def test_decode_refuses_bytes_that_are_no_json_object(data, reason):
    """Bytes that are not one JSON object are a short ProtocolError."""
    with pytest.raises(ProtocolError, match=reason) as info:
        protocol.decode(data)
    assert len(str(info.value)) < 300


def test_decode_says_what_json_found_wrong():
    """The ProtocolError of bad JSON carries the JSON parser's reason."""
    with pytest.raises(ProtocolError) as info:
        protocol.decode(b'{"message_type": }')
    assert str(info.value) == (
        "not valid JSON (Expecting value: line 1 column 18 (char 17))")


@pytest.mark.parametrize("error, tail", [
    ("mapper exited with 1; stderr: Traceback\nKeyError",
     "Traceback\nKeyError"),
    ("mapper exited with 1; stderr: ", ""),
    ("reducer exited with 2; stderr: a; stderr: b", "a; stderr: b"),
    ("could not read input: no such file", None),
    ("stderr: without the separator", None),
    ("", None),
])
def test_stderr_tail_is_what_follows_the_first_marker(error, tail):
    """A task_failed error ends with the stderr tail after STDERR_MARKER.

    The tail itself may contain the marker: only the first one counts.
    """
    assert protocol.stderr_tail(error) == tail


def test_dispatch_names_the_peer_and_passes_arguments(log, caplog):
    """Extra arguments reach the handler; log lines name the peer."""
    received = []
    handlers = {protocol.Finished: lambda msg, *args: received.append(args)}
    protocol.dispatch(protocol.encode(example("finished")), handlers, log,
                      "reply", peer="10.0.0.1:5000")
    protocol.dispatch(b"[]", handlers, log, "reply", peer="10.0.0.1:5000")
    assert received == [("reply",)]
    assert all("from 10.0.0.1:5000" in record.getMessage()
               for record in caplog.records)


def test_a_message_must_be_a_frozen_dataclass():
    """Registering a plain or mutable class as a message fails at once."""
    plain = type("Plain", (), {})
    mutable = dataclasses.make_dataclass("Mutable", [("task_id", int)])
    with pytest.raises(TypeError, match="not a frozen dataclass"):
        protocol.message("plain")(plain)
    with pytest.raises(TypeError, match="not a frozen dataclass"):
        protocol.message("mutable")(mutable)
    assert "plain" not in protocol.MESSAGE_TYPES
