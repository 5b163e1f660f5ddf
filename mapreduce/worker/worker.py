"""The Worker process: build it, start it, stop it; or run it until shutdown.

`WorkerServer` is a Worker as an object: build it (nothing happens),
`start()` it (it listens, registers, and its loop runs in a thread of its
own) and `stop()` it (tasks cancelled, every thread joined); or `run()` it
in the calling thread. `Worker(host, port, manager_host, manager_port)` is
the specification's blocking API on top: it runs until a shutdown
message, SIGINT or SIGTERM.

The Worker is a handler on the reactor. The `ManagerLink` registers,
beats and delivers messages to the Manager; the `TaskPool` runs tasks one
at a time in a pool thread, so that the loop keeps answering messages and
sending heartbeats, while the loop reads the children's stderr. When a
task ends, its result comes back to the loop thread, which reports it.
"""

import concurrent.futures
import dataclasses
import functools

from mapreduce import defaults, protocol
from mapreduce.logs import get_logger
from mapreduce.reactor import MessageServer, Reactor, send_datagram
from mapreduce.reactor import send_message
from mapreduce.service import Service
from mapreduce.signing import manager_name, worker_name
from mapreduce.worker.stderr import LoopStderr
from mapreduce.worker.streaming import carried
from mapreduce.worker.tasks import (
    ProcessControl, TaskError, run_map, run_reduce,
)


@dataclasses.dataclass
class WorkerOptions:
    """A Worker's timings, in seconds (see mapreduce.defaults); its secret."""

    heartbeat_interval: float = defaults.HEARTBEAT_INTERVAL
    retry_interval: float = defaults.RETRY_INTERVAL
    send_timeout: float = defaults.SEND_TIMEOUT
    ack_timeout: float = defaults.ACK_TIMEOUT
    send_attempts: int = defaults.SEND_ATTEMPTS
    # The cluster's secret (bytes): sign and check every message; None:
    # the specification's plain messages.
    secret: object = None


@dataclasses.dataclass
class WorkerAddress:
    """Where a Worker listens, and where its Manager does."""

    host: str
    port: int
    manager_host: str
    manager_port: int

    @property
    def manager(self):
        """Return the Manager's (host, port)."""
        return (self.manager_host, self.manager_port)


def _kind(msg):
    """Return "map" or "reduce" for a task message."""
    return "map" if isinstance(msg, protocol.NewMapTask) else "reduce"


class ManagerLink:
    """A Worker's side of talking to the Manager; loop thread only.

    It registers (again every so often until acknowledged), beats once
    registered, and delivers messages, trying a few times.
    """

    def __init__(self, reactor, address, options):
        """Talk from `address` (a WorkerAddress) with `options`' timings."""
        self.reactor = reactor
        self.address = address
        self.options = options
        self.registered = False
        self.stopping = False
        self._register_timer = None
        self._register_failures = 0

    @property
    def log(self):
        """Return the Worker's logger."""
        return self.reactor.log

    def send(self, msg, attempts=None):
        """Send `msg` to the Manager, trying again a few times if it fails."""
        if attempts is None:
            attempts = self.options.send_attempts

        def failed(exc):
            if attempts > 1 and not self.stopping:
                self.log.warning("Could not send %s to the Manager (%s); "
                                 "trying again", msg.message_type, exc)
                self.reactor.call_later(self.options.retry_interval,
                                        self.send, msg, attempts - 1)
            else:
                self.log.error("Could not send %r to the Manager: %s",
                               msg, exc)
        self.log.debug("Sending %r", msg)
        send_message(self.reactor, self.address.manager, protocol.encode(msg),
                     timeout=self.options.send_timeout, on_error=failed)

    def register(self):
        """Send `register`, and again every so often until acknowledged."""
        self._register_timer = None
        if self.registered or self.stopping:
            return

        def retry_after(delay):
            if not self.registered and not self.stopping:
                self._register_timer = self.reactor.call_later(
                    delay, self.register)

        def failed(exc):
            self._register_failures += 1
            if self._register_failures == 1:
                self.log.warning("Cannot reach the Manager at %s:%s (%s); "
                                 "trying again every %gs",
                                 *self.address.manager, exc,
                                 self.options.retry_interval)
            retry_after(self.options.retry_interval)
        msg = protocol.Register(worker_host=self.address.host,
                                worker_port=self.address.port)
        self.log.debug("Sending %r", msg)
        # Delivered but never acknowledged (the Manager could not reach us
        # back): ask again, but rarely, since the Manager treats a second
        # register as a Worker that died and came back.
        send_message(self.reactor, self.address.manager, protocol.encode(msg),
                     timeout=self.options.send_timeout,
                     on_sent=lambda: retry_after(self.options.ack_timeout),
                     on_error=failed)

    def on_register_ack(self, _msg):
        """Start beating once the Manager has recorded this Worker."""
        if self.registered:
            return
        self.registered = True
        if self._register_timer is not None:
            self._register_timer.cancel()
        self.log.info("Registered with the Manager at %s:%s",
                      *self.address.manager)
        self._heartbeat()

    def _heartbeat(self):
        """Send one heartbeat and plan the next."""
        if self.stopping:
            return
        msg = protocol.Heartbeat(worker_host=self.address.host,
                                 worker_port=self.address.port)
        send_datagram(*self.address.manager, protocol.encode(msg), self.log,
                      self.reactor.envelope)
        self.reactor.call_later(self.options.heartbeat_interval,
                                self._heartbeat)


class TaskPool:
    """Runs tasks one at a time in a pool thread; their stderr on the loop.

    `run` and `cancel` are called on the loop thread; `close` once the
    loop is done.
    """

    def __init__(self, reactor):
        """Run tasks for the Worker of `reactor`."""
        self.reactor = reactor
        self.stderr = LoopStderr(reactor)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="mapreduce-task")
        self._controls = {}

    def run(self, msg, function, args, on_done):
        """Run task `function(*args)`; then `on_done(msg, future)` here."""
        control = ProcessControl(self.reactor.log,
                                 read_stderr=self.stderr.watch)
        future = self.reactor.run_in_pool(
            self._pool, functools.partial(self._done, msg, on_done),
            self._run, msg, function, args, control)
        self._controls[future] = control

    def _run(self, msg, function, args, control):
        """In the pool thread: run one task function."""
        self.reactor.log.info("Running %s task %d", _kind(msg), msg.task_id)
        return function(*args, control=control)

    def _done(self, msg, on_done, future):
        """On the loop: forget the task, then pass its end on."""
        self._controls.pop(future, None)
        on_done(msg, future)

    def cancel(self):
        """Stop the children of every running or queued task."""
        for control in self._controls.values():
            control.cancel()

    def close(self):
        """Cancel the tasks, wait for the pool thread, close the pipes."""
        self.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.stderr.close()


class WorkerServer(Service):
    """A Worker that code can build, start and stop."""

    name = "worker"
    exposure = ("anyone who can reach this port can make this Worker run "
                "any program, and shut it down")

    def __init__(self, host, port, manager_host, manager_port, *,
                 options=None):
        """Build a Worker for TCP `host:port`; nothing runs yet.

        Its Manager listens at `manager_host:manager_port`; `options` are
        WorkerOptions (default: the timings of mapreduce.defaults).
        """
        super().__init__(Reactor())
        self.address = WorkerAddress(host, port, manager_host, manager_port)
        self.link = ManagerLink(self.reactor, self.address,
                                options or WorkerOptions())
        self.sign_with(self.options.secret, manager_name)
        self.tasks = TaskPool(self.reactor)
        self._handlers = {
            protocol.Shutdown: lambda _msg: self.shut_down(),
            protocol.RegisterAck: self.link.on_register_ack,
            protocol.NewMapTask: self._on_map_task,
            protocol.NewReduceTask: self._on_reduce_task,
        }

    @property
    def port(self):
        """Return the port the Worker listens on (known once open)."""
        return self.address.port

    @property
    def host(self):
        """Return the address the Worker listens on."""
        return self.address.host

    @property
    def signed_name(self):
        """Return the Worker's name in envelopes: where it listens."""
        return worker_name((self.address.host, self.address.port))

    @property
    def options(self):
        """Return the WorkerOptions."""
        return self.link.options

    @property
    def registered(self):
        """Tell whether the Manager has acknowledged the registration."""
        return self.link.registered

    # Life cycle.

    def listen(self, closing):
        """Listen for messages; tasks are closed before the listener.

        The log is named once, here, when the port is known (it may have
        been 0); nothing is logged before.
        """
        server = MessageServer(self.reactor, self.address.host,
                               self.address.port, self._on_message)
        closing.callback(server.close)
        closing.callback(self.tasks.close)
        self.address.port = server.port
        self.reactor.log = get_logger("Worker", server.port)
        self.log.info("Listening on %s:%s, Manager at %s:%s",
                      self.address.host, self.address.port,
                      *self.address.manager)

    def before_run(self):
        """Register with the Manager as soon as the loop runs."""
        self.link.register()

    def shut_down(self):
        """Stop as soon as possible: cancel tasks, leave the loop."""
        if self.link.stopping:
            return
        self.link.stopping = True
        self.log.info("Shutting down")
        self.tasks.cancel()
        self.reactor.stop()

    # Messages.

    def _on_message(self, data, reply):
        """Pass a received message to its handler, unless stopping."""
        if not self.link.stopping:
            protocol.dispatch(data, self._handlers, self.log,
                              peer=reply.peer)

    # Tasks.

    def _on_map_task(self, msg):
        """Queue a map task in the pool, unless it cannot make sense.

        A streaming task may have 0 partitions: map-only.
        """
        least = 0 if carried(msg) is not None else 1
        if not least <= msg.num_partitions <= protocol.MAX_PARTITIONS:
            self._refuse(msg, f"num_partitions must be between {least} and "
                              f"{protocol.MAX_PARTITIONS}, not "
                              f"{msg.num_partitions}")
            return
        self.tasks.run(msg, run_map, (msg,), self._task_done)

    def _on_reduce_task(self, msg):
        """Queue a reduce task in the pool."""
        self.tasks.run(msg, run_reduce, (msg,), self._task_done)

    def _refuse(self, msg, reason):
        """Report at once that task `msg` fails for `reason`."""
        self.log.error("Task %d failed: %s", msg.task_id, reason)
        self.link.send(protocol.TaskFailed(
            task_id=msg.task_id, worker_host=self.address.host,
            worker_port=self.address.port, error=reason))

    def _task_done(self, msg, future):
        """On the loop: tell the Manager the task finished or failed."""
        if self.link.stopping or future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self.log.info("Finished %s task %d", _kind(msg), msg.task_id)
            # Counters stay {} (absent) unless the task carried `streaming`.
            self.link.send(protocol.Finished(
                task_id=msg.task_id, worker_host=self.address.host,
                worker_port=self.address.port,
                counters=future.result().counters))
            return
        if isinstance(exc, TaskError):
            error = str(exc)
            self.log.error("Task %d failed: %s", msg.task_id, error)
        else:
            error = f"{type(exc).__name__}: {exc}"
            self.log.error("Task %d failed: %s", msg.task_id, error,
                           exc_info=exc)
        self.link.send(protocol.TaskFailed(
            task_id=msg.task_id, worker_host=self.address.host,
            worker_port=self.address.port, error=error))


class Worker(WorkerServer):
    """The specification's Worker: the constructor runs it until shutdown."""

    def __init__(self, host, port, manager_host, manager_port, **settings):
        """Listen on TCP `host:port`, register, and run until shut down.

        `settings` are WorkerOptions (heartbeat_interval, ...). Returns
        once every thread of the Worker has ended.
        """
        super().__init__(host, port, manager_host, manager_port,
                         options=WorkerOptions(**settings))
        self.run_blocking()
