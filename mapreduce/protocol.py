"""The wire messages: the one place that knows message types and fields.

Each message type is a frozen dataclass whose fields are the message's keys,
in wire order. `to_wire` turns a message into the JSON object to send and
`from_wire` checks a received JSON object and turns it back into a message.
The bytes are this module's too: `encode` gives what goes on the wire,
`decode` checks what arrived, and `dispatch` hands it to its handler.

A field with a default is an *extension*: optional when received, and sent
only when its value differs from the default, so that a message of the
specification goes out with exactly the specification's keys. A field may
also be a `record`: a frozen dataclass carried as a JSON object, whose
fields follow the same rules.
"""

import dataclasses
import json
import typing


class ProtocolError(ValueError):
    """A received object is not a message this process understands."""


class UnknownMessage(ProtocolError):
    """A well-formed object whose `message_type` this process does not know.

    SPEC.md makes every extension additive: such messages are ignored.
    """


MESSAGE_TYPES = {}
# The message_type of a signed envelope (mapreduce.auth), which only a
# process with the cluster's secret opens.
SIGNED = "signed"


def message(type_name):
    """Register a frozen dataclass as the message `type_name`.

    Use it above `@dataclasses.dataclass(frozen=True)`: the fields are the
    message's keys, in wire order.
    """
    def register(cls):
        params = getattr(cls, "__dataclass_params__", None)
        if params is None or not params.frozen:
            raise TypeError(f"message {type_name!r}: {cls.__name__} is not "
                            "a frozen dataclass")
        cls.message_type = type_name
        MESSAGE_TYPES[type_name] = record(cls)
        return cls
    return register


def record(cls):
    """Describe frozen dataclass `cls` for the wire: fields and defaults."""
    hints = typing.get_type_hints(cls)
    cls.wire_fields = tuple((field.name, hints[field.name])
                            for field in dataclasses.fields(cls))
    cls.defaults = {}
    for field in dataclasses.fields(cls):
        if field.default_factory is not dataclasses.MISSING:
            cls.defaults[field.name] = field.default_factory()
        elif field.default is not dataclasses.MISSING:
            cls.defaults[field.name] = field.default
    cls.__repr__ = _repr
    return cls


def _repr(obj):
    """Show a record as its dataclass would, without fields at default."""
    shown = ", ".join(f"{name}={value!r}"
                      for name, value in vars(obj).items()
                      if name not in obj.defaults
                      or value != obj.defaults[name])
    return f"{type(obj).__name__}({shown})"


Environment = typing.Dict[str, str]
Counters = typing.Dict[str, typing.Dict[str, int]]


@record
@dataclasses.dataclass(frozen=True)
class Streaming:
    """Extension: what a `mapreduce-streaming` job adds to a job and tasks.

    Absent from a job of the specification, and from its tasks. A job's
    `input_paths` (files and directories) replace the listing of its
    input_directory; its tasks do not carry them. A task that carries this
    record also reports its counters in `finished`.
    """

    input_paths: typing.List[str] = dataclasses.field(default_factory=list)
    combiner: str = ""
    partitioner: str = ""
    environment: Environment = dataclasses.field(default_factory=dict)


@message("shutdown")
@dataclasses.dataclass(frozen=True)
class Shutdown:
    """Stop: submit to Manager, and Manager to every live Worker."""


@message("register")
@dataclasses.dataclass(frozen=True)
class Register:
    """A Worker announces itself to the Manager."""

    worker_host: str
    worker_port: int


@message("register_ack")
@dataclasses.dataclass(frozen=True)
class RegisterAck:
    """The Manager has recorded a Worker."""


@message("heartbeat")
@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """A Worker is alive (UDP, every 2 s)."""

    worker_host: str
    worker_port: int


@message("new_manager_job")
@dataclasses.dataclass(frozen=True)
class NewManagerJob:
    """A job from `mapreduce-submit`."""

    input_directory: str
    output_directory: str
    mapper_executable: str
    reducer_executable: str
    num_mappers: int
    num_reducers: int
    # Extension. With it, num_reducers 0 makes a map-only job.
    streaming: Streaming = Streaming()


@message("new_map_task")
@dataclasses.dataclass(frozen=True)
class NewMapTask:
    """Run the mapper over some input files and partition its output."""

    task_id: int
    input_paths: typing.List[str]
    executable: str
    output_directory: str
    num_partitions: int
    # Extensions. With `streaming`, num_partitions 0 means map-only: the
    # output goes straight to part-{task_id:05d} in output_directory.
    # `assignment` is sent only to a Worker that signs its messages.
    streaming: Streaming = Streaming()
    assignment: int = 0


@message("new_reduce_task")
@dataclasses.dataclass(frozen=True)
class NewReduceTask:
    """Merge sorted map outputs and run the reducer over them."""

    task_id: int
    executable: str
    input_paths: typing.List[str]
    output_directory: str
    # Extensions, as for NewMapTask.
    streaming: Streaming = Streaming()
    assignment: int = 0


@message("finished")
@dataclasses.dataclass(frozen=True)
class Finished:
    """A Worker has finished a task and moved its output in place."""

    task_id: int
    worker_host: str
    worker_port: int
    # Extensions, sent only when the task carried them: the counters its
    # programs reported (group -> counter -> amount), and its assignment.
    counters: Counters = dataclasses.field(default_factory=dict)
    assignment: int = 0


@message("task_failed")
@dataclasses.dataclass(frozen=True)
class TaskFailed:
    """Extension: a Worker could not complete a task, and says why."""

    task_id: int
    worker_host: str
    worker_port: int
    error: str
    assignment: int = 0


@message("rejoin")
@dataclasses.dataclass(frozen=True)
class Rejoin:
    """Extension: the Manager does not count this Worker; register again.

    Sent to a Worker that keeps beating while the Manager has it marked
    dead, or has never seen it register (situations the specification
    leaves undefined). The Worker drops the tasks it holds, then registers.
    """


# Extensions a client asks for; each is answered on its own connection.

@message("job_accepted")
@dataclasses.dataclass(frozen=True)
class JobAccepted:
    """Extension: the Manager has queued a job under this id.

    The answer to every `new_manager_job`, on its connection: a client of
    the specification closes without reading it, so it never sees it.
    """

    job_id: int


@message("request_refused")
@dataclasses.dataclass(frozen=True)
class RequestRefused:
    """Extension: the Manager cannot answer a request, and says why."""

    error: str


@message("status_request")
@dataclasses.dataclass(frozen=True)
class StatusRequest:
    """Extension: ask the Manager for its status snapshot."""


@message("status_reply")
@dataclasses.dataclass(frozen=True)
class StatusReply:
    """Extension: the Manager's status snapshot (see the README)."""

    status: dict


@message("job_request")
@dataclasses.dataclass(frozen=True)
class JobRequest:
    """Extension: ask for a job's state once it is newer than `after`.

    The Manager answers at once when the job's version is above `after`
    (or the job has ended), else when it changes, after a few seconds, or
    when the Manager shuts down.
    """

    job_id: int
    after: int = -1


@message("job_reply")
@dataclasses.dataclass(frozen=True)
class JobReply:
    """Extension: one job's summary and the version it has reached."""

    version: int
    job: dict


_PORT_FIELDS = ("worker_port",)

# How a Worker's `task_failed` error carries the failing executable's
# stderr: the tail follows this marker, at the end of the error text.
STDERR_MARKER = "; stderr: "

# The most reduce tasks (partitions) a job may have: every map task opens a
# file per partition, and every process in the cluster agrees on this.
MAX_PARTITIONS = 10000


def to_wire(msg):
    """Return the JSON object for `msg`: message_type first, then fields.

    Extension fields still at their default are left out.
    """
    obj = {"message_type": msg.message_type}
    obj.update(_fields_to_wire(msg))
    return obj


def _fields_to_wire(obj):
    """Return the JSON object of a record's fields, without defaults."""
    fields = {}
    for name, _ in obj.wire_fields:
        value = getattr(obj, name)
        if name not in obj.defaults or value != obj.defaults[name]:
            fields[name] = (_fields_to_wire(value)
                            if dataclasses.is_dataclass(value) else value)
    return fields


def stderr_tail(error):
    """Return the stderr tail a `task_failed` error ends with, or None."""
    _, marker, tail = error.partition(STDERR_MARKER)
    return tail if marker else None


def from_wire(obj):
    """Return the message in JSON object `obj`, or raise ProtocolError.

    Keys beyond the message's fields are ignored (extensions are additive).
    Raises UnknownMessage for a `message_type` this module does not know.
    """
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object")
    type_name = obj.get("message_type")
    if not isinstance(type_name, str):
        raise ProtocolError("no message_type string")
    cls = MESSAGE_TYPES.get(type_name)
    if cls is None and type_name == SIGNED:
        raise UnknownMessage("a signed message, but this process has no "
                             "secret (give every process of the cluster "
                             "the same --secret-file)")
    if cls is None:
        raise UnknownMessage(f"unknown message_type {type_name[:80]!r}")
    return _record_from_wire(cls, obj, type_name)


def _record_from_wire(cls, obj, where):
    """Return record `cls` made from JSON object `obj`, or raise."""
    values = {}
    for name, expected in cls.wire_fields:
        if name not in obj:
            if name in cls.defaults:
                continue
            raise ProtocolError(f"{where}: missing field {name!r}")
        value = obj[name]
        if dataclasses.is_dataclass(expected) and isinstance(value, dict):
            value = _record_from_wire(expected, value, f"{where}.{name}")
        elif not _has_type(value, expected):
            raise ProtocolError(f"{where}: field {name!r} has the wrong "
                                f"type ({type(value).__name__})")
        if name in _PORT_FIELDS and not 0 < value < 65536:
            raise ProtocolError(f"{where}: {name} {value} is not a port "
                                "number")
        values[name] = value
    return cls(**values)


def encode(msg):
    """Return the bytes that carry `msg` on the wire.

    `msg` is a message, or a plain JSON object (a dict) for an answer that
    is not a message, such as a status snapshot. The bytes are exactly
    `json.dumps` of the object: for a message, its keys in wire order.
    """
    obj = msg if isinstance(msg, dict) else to_wire(msg)
    return json.dumps(obj).encode("utf-8")


def decode_object(data):
    """Return the JSON object in bytes `data`, or raise ProtocolError."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not valid JSON ({str(exc)[:200]})") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object")
    return obj


def decode(data):
    """Return the message in bytes `data`, or raise ProtocolError."""
    return from_wire(decode_object(data))


def dispatch(data, handlers, log, *args, peer=None):
    """Decode bytes `data` and call the handler for its message type.

    `handlers` maps message classes to functions called as
    `handler(msg, *args)`. A message that is malformed, unknown, or has no
    handler here is logged (naming `peer`, when given) and dropped.
    """
    source = f" from {peer}" if peer else ""
    try:
        msg = decode(data)
    except ProtocolError as exc:
        log.warning("Ignored message%s: %s", source, exc)
        return
    log.debug("Received %r%s", msg, source)
    handler = handlers.get(type(msg))
    if handler is None:
        log.warning("Ignored %s message%s: not meant for this process",
                    msg.message_type, source)
        return
    handler(msg, *args)


def _has_type(value, expected):
    """Tell whether a decoded JSON value matches a field's annotation."""
    if expected is int:
        # JSON true/false decode to bool, which Python counts as int.
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in (str, bool, dict):
        return isinstance(value, expected)
    if dataclasses.is_dataclass(expected):
        return False  # Not a JSON object: a record is one.
    if typing.get_origin(expected) is dict:
        key_type, value_type = typing.get_args(expected)
        return (isinstance(value, dict)
                and all(_has_type(key, key_type)
                        and _has_type(item, value_type)
                        for key, item in value.items()))
    if typing.get_origin(expected) is list:
        (item_type,) = typing.get_args(expected)
        return (isinstance(value, list)
                and all(_has_type(item, item_type) for item in value))
    raise TypeError(f"no check for {expected!r}")
