"""The Worker: registers with the Manager, beats, and runs tasks.

The Worker is a handler on the reactor. Tasks run one at a time in a
single-thread pool so that the loop keeps answering messages and sending
heartbeats; when a task ends, its result comes back to the loop thread,
which reports it to the Manager.
"""

import concurrent.futures
import functools

from mapreduce import protocol
from mapreduce.logs import get_logger, stop_on_signals
from mapreduce.reactor import MessageServer, Reactor, send_datagram
from mapreduce.reactor import send_message
from mapreduce.worker.tasks import (
    ProcessControl, TaskError, run_map_task, run_reduce_task,
)

HEARTBEAT_INTERVAL = 2.0
RETRY_INTERVAL = 1.0
SEND_TIMEOUT = 5.0
ACK_TIMEOUT = 10.0
SEND_ATTEMPTS = 3


def _kind(msg):
    """Return "map" or "reduce" for a task message."""
    return "map" if isinstance(msg, protocol.NewMapTask) else "reduce"


class Worker:
    """A MapReduce Worker; the constructor runs it until shutdown."""

    def __init__(self, host, port, manager_host, manager_port, *,
                 heartbeat_interval=HEARTBEAT_INTERVAL,
                 retry_interval=RETRY_INTERVAL, send_timeout=SEND_TIMEOUT):
        """Listen on TCP `host:port`, register, and run until shut down."""
        self.host = host
        self.manager_host = manager_host
        self.manager_port = manager_port
        self.heartbeat_interval = heartbeat_interval
        self.retry_interval = retry_interval
        self.send_timeout = send_timeout
        self.registered = False
        self.stopping = False
        self._register_timer = None
        self._register_failures = 0
        self._tasks = {}
        self._handlers = {
            protocol.Shutdown: self._on_shutdown,
            protocol.RegisterAck: self._on_register_ack,
            protocol.NewMapTask: self._on_map_task,
            protocol.NewReduceTask: self._on_reduce_task,
        }
        self.port = port
        self.log = get_logger("Worker", port)
        self.reactor = Reactor(self.log)
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="mapreduce-task")
        # Signals are caught from the start to the very end, so that one
        # arriving early or during clean-up still ends in a clean exit.
        with stop_on_signals(self.reactor, self._on_shutdown):
            self._serve(host, port)

    def _serve(self, host, port):
        """Listen, register, run the loop; then stop tasks and close."""
        server = None
        try:
            server = MessageServer(self.reactor, host, port, self._on_message)
            self.port = server.port
            # Now the port is known (it may have been 0): name the log by
            # it; the server logs through the reactor's logger too.
            self.log = self.reactor.log = get_logger("Worker", self.port)
            self.log.info("Listening on %s:%s, Manager at %s:%s", host,
                          self.port, self.manager_host, self.manager_port)
            self._register()
            self.reactor.run()
        finally:
            self._cancel_tasks()
            self.pool.shutdown(wait=True, cancel_futures=True)
            if server is not None:
                server.close()
            self.reactor.close()

    # Messages.

    def _on_message(self, data, reply):
        """Pass a received message to its handler, unless stopping."""
        if not self.stopping:
            protocol.dispatch(data, self._handlers, self.log,
                              peer=reply.peer)

    def _send_to_manager(self, msg, attempts=SEND_ATTEMPTS):
        """Send `msg` to the Manager, trying again a few times if it fails."""
        def failed(exc):
            if attempts > 1 and not self.stopping:
                self.log.warning("Could not send %s to the Manager (%s); "
                                 "trying again", msg.message_type, exc)
                self.reactor.call_later(self.retry_interval,
                                        self._send_to_manager, msg,
                                        attempts - 1)
            else:
                self.log.error("Could not send %r to the Manager: %s",
                               msg, exc)
        self.log.debug("Sending %r", msg)
        send_message(self.reactor, (self.manager_host, self.manager_port),
                     protocol.encode(msg), timeout=self.send_timeout,
                     on_error=failed)

    # Registration and heartbeats.

    def _register(self):
        """Send `register`, and again every so often until acknowledged."""
        self._register_timer = None
        if self.registered or self.stopping:
            return

        def retry_after(delay):
            if not self.registered and not self.stopping:
                self._register_timer = self.reactor.call_later(
                    delay, self._register)

        def failed(exc):
            self._register_failures += 1
            if self._register_failures == 1:
                self.log.warning("Cannot reach the Manager at %s:%s (%s); "
                                 "trying again every %gs", self.manager_host,
                                 self.manager_port, exc, self.retry_interval)
            retry_after(self.retry_interval)
        msg = protocol.Register(worker_host=self.host,
                                worker_port=self.port)
        self.log.debug("Sending %r", msg)
        # Delivered but never acknowledged (the Manager could not reach us
        # back): ask again, but rarely, since the Manager treats a second
        # register as a Worker that died and came back.
        send_message(self.reactor, (self.manager_host, self.manager_port),
                     protocol.encode(msg), timeout=self.send_timeout,
                     on_sent=lambda: retry_after(ACK_TIMEOUT),
                     on_error=failed)

    def _on_register_ack(self, _msg):
        """Start beating once the Manager has recorded this Worker."""
        if self.registered:
            return
        self.registered = True
        if self._register_timer is not None:
            self._register_timer.cancel()
        self.log.info("Registered with the Manager at %s:%s",
                      self.manager_host, self.manager_port)
        self._heartbeat()

    def _heartbeat(self):
        """Send one heartbeat and plan the next."""
        if self.stopping:
            return
        msg = protocol.Heartbeat(worker_host=self.host, worker_port=self.port)
        send_datagram(self.manager_host, self.manager_port,
                      protocol.encode(msg), self.log)
        self.reactor.call_later(self.heartbeat_interval, self._heartbeat)

    # Tasks.

    def _on_map_task(self, msg):
        """Queue a map task in the pool, unless it cannot make sense."""
        if not 1 <= msg.num_partitions <= protocol.MAX_PARTITIONS:
            self._refuse(msg, f"num_partitions must be between 1 and "
                              f"{protocol.MAX_PARTITIONS}, not "
                              f"{msg.num_partitions}")
            return
        self._start_task(msg, run_map_task, msg.task_id, msg.input_paths,
                         msg.executable, msg.output_directory,
                         msg.num_partitions)

    def _on_reduce_task(self, msg):
        """Queue a reduce task in the pool."""
        self._start_task(msg, run_reduce_task, msg.task_id, msg.executable,
                         msg.input_paths, msg.output_directory)

    def _refuse(self, msg, reason):
        """Report at once that task `msg` fails for `reason`."""
        self.log.error("Task %d failed: %s", msg.task_id, reason)
        self._send_to_manager(protocol.TaskFailed(
            task_id=msg.task_id, worker_host=self.host,
            worker_port=self.port, error=reason))

    def _start_task(self, msg, function, *args):
        """Run `function(*args)` in the pool; report when it ends."""
        control = ProcessControl(self.log)
        future = self.reactor.run_in_pool(
            self.pool, functools.partial(self._task_done, msg),
            self._run_task, msg, function, args, control)
        self._tasks[future] = control

    def _run_task(self, msg, function, args, control):
        """In the pool thread: run one task function."""
        self.log.info("Running %s task %d", _kind(msg), msg.task_id)
        return function(*args, control=control)

    def _task_done(self, msg, future):
        """On the loop: tell the Manager the task finished or failed."""
        self._tasks.pop(future, None)
        if self.stopping or future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self.log.info("Finished %s task %d", _kind(msg), msg.task_id)
            reply = protocol.Finished(task_id=msg.task_id,
                                      worker_host=self.host,
                                      worker_port=self.port)
        else:
            if isinstance(exc, TaskError):
                error = str(exc)
                self.log.error("Task %d failed: %s", msg.task_id, error)
            else:
                error = f"{type(exc).__name__}: {exc}"
                self.log.error("Task %d failed: %s", msg.task_id, error,
                               exc_info=exc)
            reply = protocol.TaskFailed(task_id=msg.task_id,
                                        worker_host=self.host,
                                        worker_port=self.port, error=error)
        self._send_to_manager(reply)

    def _cancel_tasks(self):
        """Stop the children of every running or queued task."""
        for control in self._tasks.values():
            control.cancel()

    # Shutdown.

    def _on_shutdown(self, _msg=None):
        """Stop as soon as possible: cancel tasks, leave the loop."""
        if self.stopping:
            return
        self.stopping = True
        self.log.info("Shutting down")
        self._cancel_tasks()
        self.reactor.stop()
