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

A Manager that does not count this Worker (it marked it dead, or it is a
new Manager that never saw it register) sends `rejoin` (an extension).
The Worker then drops every task it holds, running or queued, reporting
none of them; it stops beating; once the tasks' processes are gone and
every report already on its way has been delivered (or given up), it
registers again as at start-up.
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
from mapreduce.worker.placing import sweep_local_dirs
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


class Registration:
    """Where a Worker's registration stands; loop thread only."""

    def __init__(self):
        """Not registered, nothing sent."""
        self.acknowledged = False
        self.pending = False  # A register is out, not acknowledged yet.
        self.timer = None  # The next try at registering.
        self.failures = 0  # Registers that could not be delivered.

    def cancel_timer(self):
        """Forget the next try at registering, if one is planned."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Deliveries:
    """Counts the messages on their way, to wait until none is."""

    def __init__(self):
        """None on its way."""
        self.count = 0
        self._waiting = []

    def done(self):
        """Count one message done with (sent, or given up)."""
        self.count -= 1
        if not self.count:
            waiting, self._waiting = self._waiting, []
            for callback in waiting:
                callback()

    def when_none(self, callback):
        """Run `callback()` once no message is on its way (now if none)."""
        if self.count:
            self._waiting.append(callback)
        else:
            callback()


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
        self.stopping = False
        self._registration = Registration()
        self._deliveries = Deliveries()
        self._beat_timer = None

    @property
    def log(self):
        """Return the Worker's logger."""
        return self.reactor.log

    @property
    def registered(self):
        """Tell whether the Manager has acknowledged the registration."""
        return self._registration.acknowledged

    def send(self, msg):
        """Send `msg` to the Manager, trying again a few times if it fails."""
        self._deliveries.count += 1
        self._send(msg, self.options.send_attempts)

    def _send(self, msg, attempts):
        """Make one attempt at delivering `msg`; `attempts` are left."""
        def failed(exc):
            if attempts > 1 and not self.stopping:
                self.log.warning("Could not send %s to the Manager (%s); "
                                 "trying again", msg.message_type, exc)
                self.reactor.call_later(self.options.retry_interval,
                                        self._send, msg, attempts - 1)
            else:
                self.log.error("Could not send %r to the Manager: %s",
                               msg, exc)
                self._deliveries.done()
        self.log.debug("Sending %r", msg)
        send_message(self.reactor, self.address.manager, protocol.encode(msg),
                     timeout=self.options.send_timeout,
                     on_sent=self._deliveries.done, on_error=failed)

    def when_delivered(self, callback):
        """Run `callback()` once no message is on its way (now if none)."""
        self._deliveries.when_none(callback)

    def register(self):
        """Send `register`, and again every so often until acknowledged."""
        registration = self._registration
        registration.cancel_timer()
        if registration.acknowledged or self.stopping:
            return
        registration.pending = True

        def retry_after(delay):
            if not registration.acknowledged and not self.stopping:
                registration.timer = self.reactor.call_later(delay,
                                                             self.register)

        def failed(exc):
            registration.failures += 1
            if registration.failures == 1:
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
        """Start beating once the Manager has recorded this Worker.

        An ack that answers no register of ours (a repeated one, or one
        that comes while the Worker drops its tasks) changes nothing.
        """
        registration = self._registration
        if registration.acknowledged or not registration.pending:
            return
        registration.acknowledged = True
        registration.pending = False
        registration.cancel_timer()
        self.log.info("Registered with the Manager at %s:%s",
                      *self.address.manager)
        self._heartbeat()

    def _heartbeat(self):
        """Send one heartbeat and plan the next."""
        self._beat_timer = None
        if self.stopping or not self.registered:
            return
        msg = protocol.Heartbeat(worker_host=self.address.host,
                                 worker_port=self.address.port)
        send_datagram(*self.address.manager, protocol.encode(msg), self.log,
                      self.reactor.envelope)
        self._beat_timer = self.reactor.call_later(
            self.options.heartbeat_interval, self._heartbeat)

    def unregister(self):
        """Stop beating: the Manager does not count this Worker any more."""
        self._registration.acknowledged = False
        if self._beat_timer is not None:
            self._beat_timer.cancel()
            self._beat_timer = None


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
        self._controls = {}  # Future -> ProcessControl, of every task held.
        self._dropped = set()  # Futures whose end is reported to no one.
        self._when_gone = None

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
        """On the loop: forget the task, then pass its end on.

        A dropped task's end goes to no one; once the last dropped task
        has ended, `drop`'s `when_gone` runs.
        """
        self._controls.pop(future, None)
        if future not in self._dropped:
            on_done(msg, future)
            return
        self._dropped.discard(future)
        self.reactor.log.info("Dropped %s task %d", _kind(msg), msg.task_id)
        if not self._dropped and self._when_gone is not None:
            when_gone, self._when_gone = self._when_gone, None
            when_gone()

    def sweep(self):
        """Remove, in the pool thread, the task directories of dead Workers.

        Tasks that come meanwhile wait for it, as they wait for a task.
        """
        self.reactor.run_in_pool(self._pool, self._swept, sweep_local_dirs,
                                 self.reactor.log)

    def _swept(self, future):
        """On the loop: log what went wrong in a sweep, if anything did."""
        if not future.cancelled() and future.exception() is not None:
            self.reactor.log.error("Could not sweep old task directories: "
                                   "%s", future.exception())

    def cancel(self):
        """Stop the children of every running or queued task."""
        for control in self._controls.values():
            control.cancel()

    def drop(self, when_gone):
        """Cancel every task held, to be reported to no one; return how many.

        Queued tasks never start; running ones have their children
        killed. `when_gone()` runs on the loop once every one of them has
        ended (at once if none is held).
        """
        dropped = len(self._controls)
        self._dropped.update(self._controls)
        for future, control in self._controls.items():
            future.cancel()
            control.cancel()
        if self._dropped:
            self._when_gone = when_gone
        else:
            when_gone()
        return dropped

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
            protocol.Rejoin: self._on_rejoin,
        }
        self._rejoining = False

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
        """Register with the Manager as soon as the loop runs.

        Meanwhile the task directories of Workers that died on this
        machine are swept.
        """
        self.link.register()
        self.tasks.sweep()

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

    def _on_rejoin(self, _msg):
        """Drop every task, stop beating, then register again.

        The registration waits until the dropped tasks' processes are
        gone and every report already on its way is delivered, so that
        the Manager hears nothing from before once it hears `register`.
        """
        if self._rejoining:
            return
        self._rejoining = True
        self.link.unregister()
        self.log.warning("The Manager does not count this Worker: dropping "
                         "the tasks it holds and registering again")
        dropped = self.tasks.drop(
            lambda: self.link.when_delivered(self._register_again))
        if dropped:
            self.log.info("Dropping %d task(s), reporting none", dropped)

    def _register_again(self):
        """Register again after a `rejoin`, now that all is quiet."""
        self._rejoining = False
        self.link.register()

    # Tasks.

    def _ignored_while_rejoining(self, msg):
        """Tell (and log) whether task `msg` comes while tasks are dropped."""
        if self._rejoining:
            self.log.warning("Ignored %s task %d: registering again with "
                             "the Manager", _kind(msg), msg.task_id)
        return self._rejoining

    def _on_map_task(self, msg):
        """Queue a map task in the pool, unless it cannot make sense.

        A streaming task may have 0 partitions: map-only.
        """
        if self._ignored_while_rejoining(msg):
            return
        least = 0 if carried(msg) is not None else 1
        if not least <= msg.num_partitions <= protocol.MAX_PARTITIONS:
            self._refuse(msg, f"num_partitions must be between {least} and "
                              f"{protocol.MAX_PARTITIONS}, not "
                              f"{msg.num_partitions}")
            return
        self.tasks.run(msg, run_map, (msg,), self._task_done)

    def _on_reduce_task(self, msg):
        """Queue a reduce task in the pool."""
        if self._ignored_while_rejoining(msg):
            return
        self.tasks.run(msg, run_reduce, (msg,), self._task_done)

    def _refuse(self, msg, reason, exc=None):
        """Log that task `msg` fails for `reason`; tell the Manager.

        `exc`, an exception no one expected, is logged with its traceback.
        """
        self.log.error("Task %d failed: %s", msg.task_id, reason,
                       exc_info=exc)
        self.link.send(protocol.TaskFailed(
            task_id=msg.task_id, worker_host=self.address.host,
            worker_port=self.address.port, error=reason,
            assignment=msg.assignment))

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
                counters=future.result().counters,
                assignment=msg.assignment))
            return
        if isinstance(exc, TaskError):
            self._refuse(msg, str(exc))
        else:
            self._refuse(msg, f"{type(exc).__name__}: {exc}", exc)


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
