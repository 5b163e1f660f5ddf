"""Talking to a Manager from a program: submit, ask for status, follow a job.

These are the protocol extensions of the README ("Answers on the same
connection") as blocking functions, for the command-line tools, scripts
and tests. `address` is a `(host, port)` pair, or an `Address` that
also signs (`manager_address`): then every request is sealed with the
cluster's secret and every answer must be sealed for this client (see
mapreduce.signing). Every failure is a `ClientError` whose message is one
line meant for a user.
"""

import logging
import time
import typing

from mapreduce import auth, defaults, protocol
from mapreduce.reactor.net import request
from mapreduce.signing import client_name, manager_name, signing


class ClientError(Exception):
    """The Manager could not be asked, or did not answer as a Manager."""


class Unreachable(ClientError):
    """Nothing answered at the address, or the connection broke."""


class NotAManager(ClientError):
    """Something answered, but not as a Manager does."""


class Refused(ClientError):
    """The Manager answered that it cannot do what was asked."""


class NoJobId(ClientError):
    """A job was delivered, but no job id came back for it."""


class Address(typing.NamedTuple):
    """A Manager's host and port, and the Signing of requests to it.

    `signing` None: the specification's plain messages.
    """

    host: str
    port: int
    signing: object = None


def manager_address(host, port, secret=None):
    """Return the Address of the Manager at `host:port`.

    With bytes `secret`, requests are signed and answers checked.
    """
    return Address(host, port, signing(
        secret, client_name(), manager_name,
        lambda: logging.getLogger(__name__)))


# Why a signed request may go unanswered, for error messages.
_SECRET_HINT = ("is it a Manager with the same secret? (a Manager drops, "
                "and logs, what is not signed with its own secret)")


def _signing(address):
    """Return the Signing of requests to `address`, or None."""
    return getattr(address, "signing", None)


def _where(address):
    """Return 'host:port'."""
    return f"{address[0]}:{address[1]}"


def _send(address, msg, timeout, on_sent=None):
    """Send `msg` and return the raw answer (b"" for none), opened.

    Raises Unreachable when the exchange fails, NotAManager when a signed
    request is answered with what is not signed for this client.
    """
    envelope = _signing(address)
    data = protocol.encode(msg)
    if envelope is not None:
        data = envelope.seal_to(data, address[:2])
    try:
        answer = request(address[0], address[1], data, timeout,
                         on_sent=on_sent)
    except OSError as exc:
        raise Unreachable(f"cannot reach the Manager at {_where(address)}: "
                          f"{exc.strerror or exc}") from exc
    if envelope is None or not answer:
        return answer
    try:
        return envelope.check(answer).message
    except auth.AuthError as exc:
        raise NotAManager(f"{_where(address)} answered, but not signed for "
                          f"this client: {exc}") from exc


def _decode(address, data):
    """Return the message in answer `data`, or raise NotAManager/Refused."""
    if not data:
        hint = (_SECRET_HINT if _signing(address) is not None
                else "is it a Manager (and not a Worker)?")
        raise NotAManager(f"no answer from {_where(address)}: {hint}")
    try:
        answer = protocol.decode(data)
    except protocol.ProtocolError as exc:
        raise NotAManager(f"{_where(address)} answered, but not as a "
                          f"Manager: {exc}") from exc
    if isinstance(answer, protocol.RequestRefused):
        raise Refused(f"the Manager at {_where(address)} refused: "
                      f"{answer.error}")
    return answer


def ask(address, msg, timeout=defaults.CONNECT_TIMEOUT):
    """Send `msg` to the Manager and return its answer, a message.

    Raises Unreachable, NotAManager (no answer, or not one of ours) or
    Refused (a `request_refused` answer).
    """
    return _decode(address, _send(address, msg, timeout))


def _expect(answer, kind, address):
    """Return `answer` if it is a `kind` message, else raise NotAManager."""
    if not isinstance(answer, kind):
        raise NotAManager(f"{_where(address)} answered "
                          f"{answer.message_type!r}, not "
                          f"{kind.message_type!r}")
    return answer


def _no_job_id(address, why):
    """Return the error for a job delivered without a job id coming back."""
    if _signing(address) is not None:
        return NoJobId(f"no job id came back from {_where(address)} "
                       f"({why}): {_SECRET_HINT}")
    return NoJobId(
        f"no job id came back from {_where(address)} ({why}): the job was "
        "sent, but that is probably not a Manager that acknowledges jobs "
        "(a Worker's port, or a Manager of the bare specification), so it "
        "may or may not run")


def submit(address, job, on_sent=None):
    """Submit `job` (a NewManagerJob) and return the id the Manager gave.

    The message is exactly the specification's; this Manager answers every
    job with its id on the same connection. `on_sent()`, if given, is
    called once the job is delivered. Raises Unreachable when it was not
    delivered, Refused when the Manager turned it away (shutting down),
    and NoJobId when it was delivered but no id came back.
    """
    delivered = []

    def sent():
        """Note the delivery; tell the caller."""
        delivered.append(True)
        if on_sent is not None:
            on_sent()

    try:
        data = _send(address, job, defaults.CONNECT_TIMEOUT, on_sent=sent)
    except Unreachable as exc:
        if not delivered:
            raise
        raise _no_job_id(address, str(exc.__cause__)) from exc
    if not data:
        raise _no_job_id(address, "it closed the connection without an "
                                  "answer")
    try:
        answer = _expect(_decode(address, data), protocol.JobAccepted,
                         address)
    except NotAManager as exc:
        raise _no_job_id(address, "it answered, but not as a Manager: "
                                  f"{exc.__cause__ or exc}") from exc
    return answer.job_id


def shut_down(address):
    """Send the Manager a `shutdown` (the specification's message).

    Raises Unreachable unless the message was delivered; the Manager
    answers nothing. A signed shutdown is confirmed by the Manager with
    the same message: without that, this raises NotAManager.
    """
    delivered = []
    try:
        answer = _send(address, protocol.Shutdown(),
                       defaults.CONNECT_TIMEOUT,
                       on_sent=lambda: delivered.append(True))
    except Unreachable:
        if not delivered:
            raise
        answer = b""
    if _signing(address) is not None:
        _expect(_decode(address, answer), protocol.Shutdown, address)


def status(address):
    """Return the Manager's status snapshot (see the README)."""
    answer = ask(address, protocol.StatusRequest())
    return _expect(answer, protocol.StatusReply, address).status


def job_state(address, job_id, after=-1):
    """Return `(version, summary)` of a job once newer than `after`.

    With `after` below the job's version this answers at once; else the
    Manager holds the question for a few seconds or until the job changes.
    """
    answer = ask(address, protocol.JobRequest(job_id=job_id, after=after),
                 timeout=defaults.POLL_TIMEOUT + defaults.CONNECT_TIMEOUT)
    answer = _expect(answer, protocol.JobReply, address)
    return answer.version, answer.job


ENDED = ("finished", "failed", "rejected", "abandoned")


def follow(address, job_id):
    """Yield a job's summary as it changes (and every few seconds).

    Ends after the summary of the job's end. A Manager that goes away is
    a ClientError.
    """
    version = -1
    while True:
        try:
            version, summary = job_state(address, job_id, version)
        except (Unreachable, NotAManager) as exc:
            raise Unreachable(f"lost the Manager at {_where(address)} while "
                              f"following job {job_id}: {exc}") from exc
        yield summary
        if summary["state"] in ENDED:
            return


def wait_for_job(address, job_id, timeout=None):
    """Wait until job `job_id` ends; return its last summary.

    Raises TimeoutError after `timeout` seconds (None: wait as long as it
    takes), and ClientError if the Manager goes away.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    for summary in follow(address, job_id):
        if summary["state"] in ENDED:
            return summary
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not end within "
                               f"{timeout:g}s (it is {summary['state']})")
    raise ClientError(f"lost job {job_id}")  # follow() always ends on one.
