"""The Manager: accepts jobs, hands tasks to Workers, watches them live.

The Manager is a handler on the reactor: every message and deadline runs on
the loop thread, so the registry, the job queue and the task assignment
need no locks.
"""

import collections
import itertools
import os
import shutil
import tempfile

from mapreduce import protocol
from mapreduce.logs import get_logger, stop_on_signals
from mapreduce.manager.job import Job, Stage
from mapreduce.manager.registry import (
    BUSY, DEAD, JOINING, READY, WorkerRegistry,
)
from mapreduce.manager.safety import job_problem
from mapreduce.reactor import (
    DatagramServer, MessageServer, Reactor, send_message,
)

HEARTBEAT_TIMEOUT = 10.0
MAX_ATTEMPTS = 3
SEND_TIMEOUT = 5.0


class Manager:
    """A MapReduce Manager; the constructor runs it until shutdown."""

    def __init__(self, host, port, shared_dir=None, *,
                 heartbeat_timeout=HEARTBEAT_TIMEOUT,
                 max_attempts=MAX_ATTEMPTS, send_timeout=SEND_TIMEOUT):
        """Listen on TCP and UDP `host:port` and run until shut down.

        The shared directory for intermediate files is made inside
        `shared_dir` (default: the system temp dir) and removed at the end.
        """
        self.host = host
        self.heartbeat_timeout = heartbeat_timeout
        self.max_attempts = max_attempts
        self.send_timeout = send_timeout
        self.registry = WorkerRegistry()
        self.jobs = collections.deque()
        self.job = None
        self._job_ids = itertools.count()
        self._shutting_down = False
        self._handlers = {
            protocol.Shutdown: self._on_shutdown,
            protocol.Register: self._on_register,
            protocol.Heartbeat: self._on_heartbeat,
            protocol.NewManagerJob: self._on_new_job,
            protocol.Finished: self._on_finished,
            protocol.TaskFailed: self._on_task_failed,
        }
        # UDP carries heartbeats only: a datagram needs no connection, so
        # anything else arriving that way is ignored.
        self._datagram_handlers = {protocol.Heartbeat: self._on_heartbeat}
        self.port = port
        self.log = get_logger("Manager", port)
        self.reactor = Reactor(self.log)
        # Signals are caught from the start to the very end, so that one
        # arriving early or during clean-up still ends in a clean exit.
        with stop_on_signals(self.reactor, self._on_shutdown), \
                tempfile.TemporaryDirectory(prefix="mapreduce-shared-",
                                            dir=shared_dir) as tmp:
            self.shared_dir = tmp
            self._serve(host, port)

    def _serve(self, host, port):
        """Open the listeners, run the loop, and close everything after."""
        tcp = udp = None
        try:
            tcp = MessageServer(self.reactor, host, port, self._on_message)
            self.port = tcp.port
            # Now the port is known (it may have been 0): name the log by
            # it; the servers log through the reactor's logger too.
            self.log = self.reactor.log = get_logger("Manager", self.port)
            udp = DatagramServer(self.reactor, host, self.port,
                                 self._on_datagram)
            self.log.info("Listening on %s:%s, shared directory %s",
                          host, self.port, self.shared_dir)
            self.reactor.run()
        finally:
            for server in (udp, tcp):
                if server is not None:
                    server.close()
            self.reactor.close()

    # Messages.

    def _on_message(self, data, reply):
        """Pass a received message to its handler, unless shutting down."""
        if not self._shutting_down:
            protocol.dispatch(data, self._handlers, self.log,
                              peer=reply.peer)

    def _on_datagram(self, data, peer):
        """Pass a received heartbeat to its handler; ignore anything else."""
        if not self._shutting_down:
            protocol.dispatch(data, self._datagram_handlers, self.log,
                              peer=peer)

    def _send(self, worker, msg, on_sent=None, on_error=None):
        """Send `msg` to `worker`; a failure marks the Worker dead."""
        def failed(exc):
            self._mark_dead(worker, f"could not send {msg.message_type}: "
                                    f"{exc}", lost_task_first=True)
            if on_error is not None:
                on_error()
        self.log.debug("Sending %r to %r", msg, worker)
        send_message(self.reactor, (worker.host, worker.port),
                     protocol.encode(msg), timeout=self.send_timeout,
                     on_sent=on_sent, on_error=failed)

    # Workers.

    def _on_register(self, msg):
        """Record a Worker (again), acknowledge, then hand out work."""
        now = self.reactor.time()
        worker = self.registry.get(msg.worker_host, msg.worker_port)
        if worker is None:
            worker = self.registry.add(msg.worker_host, msg.worker_port, now)
            self.log.info("Registered %r", worker)
        else:
            self.log.info("Registered %r again (it was %s)", worker,
                          worker.state)
            self._take_back_task(worker)
            worker.last_seen = now
        worker.state = JOINING
        self._watch(worker)

        def acknowledged():
            if worker.state == JOINING:
                worker.state = READY
                self._schedule()
        self._send(worker, protocol.RegisterAck(), on_sent=acknowledged)

    def _on_heartbeat(self, msg):
        """Note that a registered, live Worker is still there."""
        worker = self.registry.get(msg.worker_host, msg.worker_port)
        if worker is None or worker.state == DEAD:
            return
        worker.last_seen = self.reactor.time()

    def _watch(self, worker):
        """Make sure a deadline will check that `worker` keeps beating."""
        if worker.liveness_timer is None:
            worker.liveness_timer = self.reactor.call_at(
                worker.last_seen + self.heartbeat_timeout,
                self._check_alive, worker)

    def _check_alive(self, worker):
        """At a Worker's deadline: mark it dead or move the deadline on."""
        worker.liveness_timer = None
        if worker.state == DEAD:
            return
        silent = self.reactor.time() - worker.last_seen
        if silent >= self.heartbeat_timeout:
            self._mark_dead(worker, f"no heartbeat for {silent:.1f}s")
        else:
            self._watch(worker)

    def _mark_dead(self, worker, reason, lost_task_first=False):
        """Mark `worker` dead and put its task, if any, back in the queue.

        A task the Worker never received (`lost_task_first`) goes to the
        front; a task taken from a Worker that died goes to the end.
        """
        if worker.state == DEAD:
            return
        worker.state = DEAD
        if worker.liveness_timer is not None:
            worker.liveness_timer.cancel()
            worker.liveness_timer = None
        self.log.warning("Marked %r dead: %s", worker, reason)
        self._take_back_task(worker, first=lost_task_first)
        self._schedule()

    def _take_back_task(self, worker, first=False):
        """Put the task `worker` holds back in its stage's queue."""
        task, worker.task = worker.task, None
        if task is None:
            return
        if task.job is self.job and task.job.stage.requeue(task, first):
            self.log.info("Took %r back from %r", task, worker)

    # Jobs.

    def _on_new_job(self, msg):
        """Queue a job, and start it if nothing else is running."""
        job = Job(next(self._job_ids), msg, self.shared_dir)
        self.log.info("Received %r", job)
        self.jobs.append(job)
        self._start_next_job()

    def _start_next_job(self):
        """Start the first queued job that can run, if none is running.

        Reduce tasks of a failed job that still run on live Workers end
        first: each would move a part file into an output directory that
        the next job may be about to create again.
        """
        if self.job is not None or self._leftover_reducers():
            return
        while self.job is None and self.jobs:
            job = self.jobs.popleft()
            problem = job_problem(job, self.shared_dir)
            if problem is None:
                try:
                    self._prepare(job)
                except OSError as exc:
                    problem = f"could not prepare its directories: {exc}"
                    shutil.rmtree(job.job_dir, ignore_errors=True)
            if problem is not None:
                self.log.error("Rejected %r: %s", job, problem)
                continue
            self.job = job
            self.log.info("Started %r", job)
            self._advance()

    def _prepare(self, job):
        """Empty the output directory, make the job directory, plan maps."""
        if os.path.isdir(job.output_directory):
            shutil.rmtree(job.output_directory)
        os.makedirs(job.output_directory)
        os.makedirs(job.job_dir)
        job.stage = Stage("map", job.map_tasks())

    def _advance(self):
        """Move the running job on: to its reduce stage, or to its end."""
        job = self.job
        if job.stage.done and job.stage.name == "map":
            try:
                job.stage = Stage("reduce", job.reduce_tasks())
            except OSError as exc:
                self._fail_job(f"could not list the map output: {exc}")
                return
            self.log.info("Job %d: map stage done, starting reduce stage",
                          job.job_id)
        if job.stage.done:
            shutil.rmtree(job.job_dir, ignore_errors=True)
            self.log.info("Finished %r", job)
            self.job = None
            self._start_next_job()
            return
        self._schedule()

    def _fail_job(self, reason):
        """Give up the running job: no partial output stays behind."""
        job, self.job = self.job, None
        shutil.rmtree(job.job_dir, ignore_errors=True)
        shutil.rmtree(job.output_directory, ignore_errors=True)
        self.log.error("Job %d failed: %s; removed its output directory %s",
                       job.job_id, reason, job.output_directory)
        leftovers = self._leftover_reducers()
        if leftovers and self.jobs:
            self.log.info("Waiting for %d reduce task(s) of job %d to end "
                          "before the next job starts", len(leftovers),
                          job.job_id)
        self._start_next_job()

    def _leftover_reducers(self):
        """Return the live Workers running a reduce task of a failed job."""
        return [worker for worker in self.registry.alive()
                if worker.task is not None and worker.task.kind == "reduce"
                and worker.task.job is not self.job]

    # Tasks.

    def _schedule(self):
        """Hand queued tasks of the running job to ready Workers.

        With no job running, a queued job may be waiting for a Worker to
        end its task (see `_start_next_job`): try to start it.
        """
        if self._shutting_down:
            return
        if self.job is None:
            self._start_next_job()
            return
        pending = self.job.stage.pending
        while pending:
            ready = self.registry.ready()
            if not ready:
                return
            task = pending.popleft()
            fresh = [w for w in ready if w.key not in task.failed_on]
            self._assign(task, (fresh or ready)[0])

    def _assign(self, task, worker):
        """Give `task` to `worker` and send it the task's message."""
        worker.state = BUSY
        worker.task = task
        self.log.info("Assigned %r to %r", task, worker)
        self._send(worker, task.message())

    def _worker_done(self, msg):
        """Free the Worker that sent `msg` and return the task it held.

        Returns None, after logging why, when the report does not match
        what the Manager assigned: unknown or dead Worker, no task, or a
        different task.
        """
        worker = self.registry.get(msg.worker_host, msg.worker_port)
        if worker is None or worker.state == DEAD:
            self.log.warning("Ignored %s of task %d from %s:%d: unknown or "
                             "dead Worker", msg.message_type, msg.task_id,
                             msg.worker_host, msg.worker_port)
            return None
        task = worker.task
        if task is None or task.task_id != msg.task_id:
            self.log.warning("Ignored %s of task %d from %r: it holds %r",
                             msg.message_type, msg.task_id, worker, task)
            return None
        worker.task = None
        worker.state = READY
        return task, worker

    def _on_finished(self, msg):
        """Record a finished task and move the job on."""
        done = self._worker_done(msg)
        if done is None:
            return
        task, worker = done
        self.log.info("%r finished %r", worker, task)
        if task.job is self.job and self.job.stage.finish(task):
            self._advance()
        else:
            self._schedule()

    def _on_task_failed(self, msg):
        """Retry a failed task elsewhere, or fail the job after the last."""
        done = self._worker_done(msg)
        if done is None:
            return
        task, worker = done
        task.failures += 1
        task.failed_on.add(worker.key)
        self.log.warning("%r failed %r (attempt %d of %d): %s", worker,
                         task, task.failures, self.max_attempts, msg.error)
        if task.job is not self.job:
            self._schedule()
        elif task.failures >= self.max_attempts:
            executable = task.message().executable
            self._fail_job(f"{task!r} with executable {executable!r} failed "
                           f"{task.failures} times; last error: {msg.error}")
        else:
            self.job.stage.requeue(task, first=True)
            self._schedule()

    # Shutdown.

    def _on_shutdown(self, _msg=None):
        """Tell every live Worker to shut down, then stop the loop."""
        if self._shutting_down:
            return
        self._shutting_down = True
        self.log.info("Shutting down")
        waiting = self.registry.alive()
        if not waiting:
            self.reactor.stop()
            return

        def sent_to(worker):
            waiting.remove(worker)
            if not waiting:
                self.reactor.stop()
        for worker in list(waiting):
            send_message(self.reactor, (worker.host, worker.port),
                         protocol.encode(protocol.Shutdown()),
                         timeout=self.send_timeout,
                         on_sent=lambda w=worker: sent_to(w),
                         on_error=lambda exc, w=worker: sent_to(w))
