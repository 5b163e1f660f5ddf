"""The Manager's scheduling: Workers, the job queue and task assignment.

The Scheduler is a handler on the reactor: every message and deadline runs
on the loop thread, so the registry, the job queue and the task assignment
need no locks. Every change of state is reported to the History, which
logs it and keeps it for the status answers.
"""

import collections
import itertools
import os
import shutil

from mapreduce import protocol
from mapreduce.manager.events import failure_fields
from mapreduce.manager.hadoopenv import cluster_stamp
from mapreduce.manager.job import Job, Stage
from mapreduce.manager.registry import (
    BUSY, DEAD, JOINING, READY, WorkerRegistry,
)
from mapreduce.manager.safety import job_problem
from mapreduce.reactor import send_message


# The Scheduler's method for each message from a Worker.
_HANDLERS = {
    protocol.Register: "on_register",
    protocol.Heartbeat: "on_heartbeat",
    protocol.Finished: "on_finished",
    protocol.TaskFailed: "on_task_failed",
}


class JobQueue:
    """The jobs waiting to run (FIFO), the running one, and the next id."""

    def __init__(self):
        """Start with no jobs; the first job gets id 0."""
        self.waiting = collections.deque()
        self.running = None
        self._ids = itertools.count()
        self.stamp = cluster_stamp()  # In Hadoop's job ids.

    def add(self, request, shared_dir):
        """Queue a job for a `new_manager_job` request and return it."""
        job = Job(next(self._ids), request, shared_dir, self.stamp)
        self.waiting.append(job)
        return job


class Scheduler:
    """Hands the running job's tasks to Workers and watches them live."""

    def __init__(self, reactor, history, options):
        """Schedule on `reactor`, reporting to `history`.

        `options` gives the timings (ManagerOptions). Intermediate files
        go to `shared_dir`, to be set before the first message.
        """
        self.reactor = reactor
        self.history = history
        self.options = options
        self.shared_dir = None
        self.registry = WorkerRegistry()
        self.queue = JobQueue()
        self.stopping = False

    @property
    def log(self):
        """Return the Manager's logger."""
        return self.reactor.log

    @property
    def job(self):
        """Return the running job, or None."""
        return self.queue.running

    def handle(self, msg):
        """Handle a message from a Worker."""
        getattr(self, _HANDLERS[type(msg)])(msg)

    def _send(self, worker, msg, on_sent=None):
        """Send `msg` to `worker`; a failure marks the Worker dead."""
        def failed(exc):
            self._mark_dead(worker, f"could not send {msg.message_type}: "
                                    f"{exc}", lost_task_first=True)
        self.log.debug("Sending %r to %r", msg, worker)
        send_message(self.reactor, (worker.host, worker.port),
                     protocol.encode(msg), timeout=self.options.send_timeout,
                     on_sent=on_sent, on_error=failed)

    # Workers.

    def on_register(self, msg):
        """Record a Worker (again), acknowledge, then hand out work."""
        now = self.reactor.time()
        worker = self.registry.get(msg.worker_host, msg.worker_port)
        if worker is None:
            worker = self.registry.add(msg.worker_host, msg.worker_port, now)
            self.history.record("worker_registered", worker=worker)
        else:
            self.history.record("worker_back", worker=worker,
                                was=worker.state)
            self._take_back_task(worker)
            worker.last_seen = now
        worker.state = JOINING
        self._watch(worker)

        def acknowledged():
            if worker.state == JOINING:
                worker.state = READY
                self.schedule()
        self._send(worker, protocol.RegisterAck(), on_sent=acknowledged)

    def on_heartbeat(self, msg):
        """Note that a registered, live Worker is still there."""
        worker = self.registry.get(msg.worker_host, msg.worker_port)
        if worker is None or worker.state == DEAD:
            return
        worker.last_seen = self.reactor.time()

    def _watch(self, worker):
        """Make sure a deadline will check that `worker` keeps beating."""
        if worker.liveness_timer is None:
            worker.liveness_timer = self.reactor.call_at(
                worker.last_seen + self.options.heartbeat_timeout,
                self._check_alive, worker)

    def _check_alive(self, worker):
        """At a Worker's deadline: mark it dead or move the deadline on."""
        worker.liveness_timer = None
        if worker.state == DEAD:
            return
        silent = self.reactor.time() - worker.last_seen
        if silent >= self.options.heartbeat_timeout:
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
        self.history.record("worker_dead", worker=worker, reason=reason)
        self._take_back_task(worker, first=lost_task_first)
        self.schedule()

    def _take_back_task(self, worker, first=False):
        """Put the task `worker` holds back in its stage's queue."""
        task, worker.task = worker.task, None
        if task is None:
            return
        if task.job is self.job and task.job.stage.requeue(task, first):
            self.history.record("task_taken_back", task=task, worker=worker)

    # Jobs.

    def on_new_job(self, msg):
        """Queue a job, start it if nothing else is running; return it."""
        job = self.queue.add(msg, self.shared_dir)
        self.history.record("job_queued", job=job)
        self._start_next_job()
        return job

    def _start_next_job(self):
        """Start the first queued job that can run, if none is running.

        Reduce tasks of a failed job that still run on live Workers end
        first: each would move a part file into an output directory that
        the next job may be about to create again.
        """
        if self.job is not None or self._leftover_reducers():
            return
        while self.job is None and self.queue.waiting:
            job = self.queue.waiting.popleft()
            problem = job_problem(job, self.shared_dir)
            if problem is None:
                try:
                    self._prepare(job)
                except OSError as exc:
                    problem = f"could not prepare its directories: {exc}"
            if problem is not None:
                self.history.record("job_rejected", job=job, reason=problem)
                continue
            self.queue.running = job
            self.history.record("job_started", job=job,
                                total=len(job.stage.unfinished))
            self._advance()

    @staticmethod
    def _prepare(job):
        """Plan the maps, empty the output directory, make the job directory.

        The input is listed first: a job whose input cannot be listed
        leaves its output directory as it was. The job directory is made
        last, so a failure leaves none behind.
        """
        tasks = job.map_tasks()
        if os.path.isdir(job.output_directory):
            shutil.rmtree(job.output_directory)
        os.makedirs(job.output_directory)
        os.makedirs(job.job_dir)
        job.stage = Stage("map", tasks)

    def _advance(self):
        """Move the running job on: to its reduce stage, or to its end.

        A map-only job ends with its map stage.
        """
        job = self.job
        if job.stage.done and job.stage.name == "map" and not job.map_only:
            try:
                job.stage = Stage("reduce", job.reduce_tasks())
            except OSError as exc:
                self._fail_job(f"could not list the map output: {exc}")
                return
            self.history.record("job_stage", job=job,
                                total=len(job.stage.unfinished))
        if job.stage.done:
            shutil.rmtree(job.job_dir, ignore_errors=True)
            self.queue.running = None
            self.history.record("job_finished", job=job,
                                part_files=_part_files(job))
            self._start_next_job()
            return
        self.schedule()

    def _fail_job(self, reason, error=""):
        """Give up the running job: no partial output stays behind.

        `error` is the last task error, whose stderr tail the job's
        record keeps.
        """
        job = self.job
        self.queue.running = None
        shutil.rmtree(job.job_dir, ignore_errors=True)
        shutil.rmtree(job.output_directory, ignore_errors=True)
        self.history.record("job_failed", job=job, reason=reason,
                            **failure_fields(error))
        leftovers = self._leftover_reducers()
        if leftovers and self.queue.waiting:
            self.history.record("job_held", job=job, count=len(leftovers))
        self._start_next_job()

    def _leftover_reducers(self):
        """Return the live Workers running a reduce task of a failed job."""
        return [worker for worker in self.registry.alive()
                if worker.task is not None and worker.task.kind == "reduce"
                and worker.task.job is not self.job]

    # Tasks.

    def schedule(self):
        """Hand queued tasks of the running job to ready Workers.

        With no job running, a queued job may be waiting for a Worker to
        end its task (see `_start_next_job`): try to start it.
        """
        if self.stopping:
            return
        if self.job is None:
            self._start_next_job()
            return
        pending = self.job.stage.pending
        while pending:
            ready = self.registry.ready()
            if not ready:
                self._tell_if_waiting()
                return
            task = pending.popleft()
            fresh = [w for w in ready if w.key not in task.failed_on]
            self._assign(task, (fresh or ready)[0])

    def _tell_if_waiting(self):
        """Say once when the running job's tasks wait for a live Worker."""
        if self.registry.alive():
            return
        record = self.history.job(self.job.job_id)
        if record is not None and not record.waiting_told:
            reason = ("no live Worker to run its tasks"
                      if len(self.registry) else
                      "no Worker has registered yet")
            self.history.record("job_waiting", job=self.job, reason=reason)

    def _assign(self, task, worker):
        """Give `task` to `worker` and send it the task's message."""
        worker.state = BUSY
        worker.task = task
        task.assigned += 1
        self.history.record("task_assigned", task=task, worker=worker)
        self._send(worker, task.message())

    def _worker_done(self, msg):
        """Free the Worker that sent `msg` and return the task it held.

        Returns None, after logging why, when the report does not match
        what the Manager assigned: unknown or dead Worker, no task, or a
        different task.
        """
        worker = self.registry.get(msg.worker_host, msg.worker_port)
        if worker is None or worker.state == DEAD:
            self.log.warning("Ignored %s of task %d from %s: unknown or "
                             "dead Worker", msg.message_type, msg.task_id,
                             _address(msg.worker_host, msg.worker_port))
            return None
        task = worker.task
        if task is None or task.task_id != msg.task_id:
            self.log.warning("Ignored %s of task %d from %r: it holds %r",
                             msg.message_type, msg.task_id, worker, task)
            return None
        worker.task = None
        worker.state = READY
        return task, worker

    def on_finished(self, msg):
        """Record a finished task and move the job on."""
        done = self._worker_done(msg)
        if done is None:
            return
        task, worker = done
        counted = task.job is self.job and self.job.stage.finish(task)
        self.history.record("task_finished", task=task, worker=worker,
                            counted=counted, counters=msg.counters)
        if counted:
            self._advance()
        else:
            self.schedule()

    def on_task_failed(self, msg):
        """Retry a failed task elsewhere, or fail the job after the last."""
        done = self._worker_done(msg)
        if done is None:
            return
        task, worker = done
        task.failures += 1
        task.failed_on.add(worker.key)
        self.history.record("task_failed", task=task, worker=worker,
                            attempt=task.failures,
                            attempts=self.options.max_attempts,
                            error=msg.error)
        if task.job is not self.job:
            self.schedule()
        elif task.failures >= self.options.max_attempts:
            executable = task.message().executable
            self._fail_job(f"{task!r} with executable {executable!r} failed "
                           f"{task.failures} times; last error: {msg.error}",
                           msg.error)
        else:
            self.job.stage.requeue(task, first=True)
            self.schedule()

    # Shutdown.

    def shut_down(self, done):
        """Abandon every job, tell live Workers to stop, then run `done()`.

        The running job's output directory is removed, as for a failed
        job: a directory of part files is always a complete result.
        """
        if self.stopping:
            return
        self.stopping = True
        self.history.record("manager_stopping")
        job, self.queue.running = self.job, None
        if job is not None:
            shutil.rmtree(job.job_dir, ignore_errors=True)
            shutil.rmtree(job.output_directory, ignore_errors=True)
            self.history.record(
                "job_abandoned", job=job, was="running",
                reason=f"the Manager shut down; removed its output "
                       f"directory {job.output_directory}")
        while self.queue.waiting:
            self.history.record("job_abandoned",
                                job=self.queue.waiting.popleft(),
                                was="queued", reason="the Manager shut down")
        self._stop_workers(done)

    def _stop_workers(self, done):
        """Send `shutdown` to every live Worker; run `done()` after all."""
        waiting = self.registry.alive()
        if not waiting:
            done()
            return

        def sent_to(worker):
            waiting.remove(worker)
            if not waiting:
                done()
        for worker in list(waiting):
            send_message(self.reactor, (worker.host, worker.port),
                         protocol.encode(protocol.Shutdown()),
                         timeout=self.options.send_timeout,
                         on_sent=lambda w=worker: sent_to(w),
                         on_error=lambda exc, w=worker: sent_to(w))


def _part_files(job):
    """Return the names of the part files in a finished job's output."""
    try:
        names = os.listdir(job.output_directory)
    except OSError:
        return []
    return sorted(name for name in names if name.startswith("part-"))


def _address(host, port):
    """Return `host:port` for a log line, the host escaped unless printable.

    The host comes from a message: a forged one must not add lines to the
    log or characters a log file cannot hold.
    """
    shown = host if host.isprintable() else repr(host)
    return f"{shown}:{port}"
