"""The Manager process: build it, start it, stop it; or run it until shutdown.

`ManagerServer` is a Manager as an object: build it (nothing happens),
`start()` it (it listens, and its loop runs in a thread of its own) and
`stop()` it (a clean shutdown, the thread joined); or `run()` it in the
calling thread. `Manager(host, port, ...)` is the specification's blocking
API on top: it runs until a shutdown message, SIGINT or SIGTERM.

The server owns the listeners and the shared directory and answers the
clients' queries (status, job following); the Scheduler owns the
Workers, the job queue and the tasks; the History records what happens.
"""

import concurrent.futures
import dataclasses
import tempfile
import threading
import time

from mapreduce import defaults, filenames, protocol, sweep
from mapreduce.logs import get_logger
from mapreduce.manager import dashboard
from mapreduce.manager.events import History
from mapreduce.manager.followers import Followers
from mapreduce.manager.scheduler import Scheduler
from mapreduce.manager.status import ManagerInfo, job_detail, status_snapshot
from mapreduce.reactor import (DatagramServer, HttpServer, MessageServer,
                               Reactor)
from mapreduce.service import Service
from mapreduce.signing import MANAGER_NAME, worker_name


@dataclasses.dataclass
class ManagerOptions:
    """How a Manager runs: where its files go, and its timings."""

    shared_dir: object = None  # Parent of the shared directory; None: tmp.
    heartbeat_timeout: float = defaults.HEARTBEAT_TIMEOUT
    rejoin_after: float = defaults.REJOIN_AFTER
    max_attempts: int = defaults.MAX_ATTEMPTS
    send_timeout: float = defaults.SEND_TIMEOUT
    poll_timeout: float = defaults.POLL_TIMEOUT
    # Port of the dashboard (0: a free one); None: no dashboard.
    web_port: object = None


class ManagerServer(Service):
    """A Manager that code can build, start and stop."""

    name = "manager"
    exposure = ("anyone who can reach this port can submit jobs, which run "
                "any program on the Workers, and shut the cluster down")
    signed_name = MANAGER_NAME

    def __init__(self, host=defaults.MANAGER_HOST, port=defaults.MANAGER_PORT,
                 options=None, secret=None):
        """Build a Manager for TCP and UDP `host:port`; nothing runs yet.

        `options` are ManagerOptions; with bytes `secret`, every message
        is signed and checked (see mapreduce.signing).
        """
        super().__init__(Reactor(get_logger("Manager", port)))
        self.options = options or ManagerOptions()
        self.info = ManagerInfo(host, port, None, time.time())
        self.sign_with(secret, worker_name)
        self.scheduler = Scheduler(self.reactor, History(self.reactor.log),
                                   self.options)
        self.followers = Followers(self.reactor, self._answer_job,
                                   self.options.poll_timeout)
        self.scheduler.history.on_change = self.followers.job_changed
        self._handlers = {
            protocol.StatusRequest: self._on_status_request,
            protocol.JobRequest: self._on_job_request,
            protocol.NewManagerJob: self._on_new_job,
            protocol.Shutdown: self._on_shutdown,
        }
        for kind in (protocol.Register, protocol.Heartbeat,
                     protocol.Finished, protocol.TaskFailed):
            self._handlers[kind] = self._to_scheduler

    @property
    def history(self):
        """Return the record of what happened (events, jobs, progress)."""
        return self.scheduler.history

    @property
    def port(self):
        """Return the port the Manager listens on (known once open)."""
        return self.info.port

    @property
    def host(self):
        """Return the address the Manager listens on."""
        return self.info.host

    # Life cycle.

    def listen(self, closing):
        """Make the shared directory; listen for TCP, UDP and the page.

        The shared directories that dead Managers left in the same place
        are swept in a thread of their own, while the Manager runs.
        """
        owned = sweep.OwnedDirectory(filenames.SHARED_DIR_PREFIX,
                                     self.options.shared_dir)
        closing.callback(self._remove_shared, owned)
        shared = owned.name
        tcp = MessageServer(self.reactor, self.info.host, self.info.port,
                            self._on_message)
        closing.callback(tcp.close)
        self.info.port = tcp.port
        # Now the port is known (it may have been 0): name the log by it;
        # the servers and the History log through this logger.
        self.reactor.log = self.history.log = get_logger("Manager",
                                                         tcp.port)
        udp = DatagramServer(self.reactor, self.info.host, tcp.port,
                             self._on_datagram)
        closing.callback(udp.close)
        self.info.shared_dir = self.scheduler.shared_dir = shared
        self.history.record("manager_started", host=self.info.host,
                            port=tcp.port, shared_dir=shared)
        # Workers name their hosts: a name is looked up off the loop.
        self.reactor.resolver = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix=f"manager-{tcp.port}-resolve")
        closing.callback(self.reactor.resolver.shutdown,
                         cancel_futures=True)
        sweeper = threading.Thread(
            target=sweep.sweep, name=f"manager-{tcp.port}-sweep",
            args=(tempfile.gettempdir() if self.options.shared_dir is None
                  else self.options.shared_dir,
                  filenames.SHARED_DIR_PREFIX, self.log))
        sweeper.start()
        closing.callback(sweeper.join)
        if self.options.web_port is not None:
            self._open_dashboard(closing)

    def _remove_shared(self, owned):
        """Remove the shared directory at the end; a failure is a warning."""
        try:
            owned.cleanup()
        except OSError as exc:
            self.log.warning("Could not remove the shared directory %s: %s",
                             owned.name, exc)

    def _open_dashboard(self, closing):
        """Serve the dashboard on the web port; on failure, go on without.

        The Manager must run whatever happens to its page: a port that
        cannot be had (or page files that cannot be read) is a warning.
        """
        host, port = self.info.host, self.options.web_port
        try:
            web = HttpServer(self.reactor, host, port,
                             dashboard.handler_for(self))
        except OSError as exc:
            self.log.warning("No dashboard: cannot serve it on %s:%s (%s); "
                             "the Manager runs without it", host, port,
                             exc.strerror or exc)
            return
        closing.callback(web.close)
        self.info.web_port = web.port
        self.log.info("Dashboard on %s", dashboard.url(host, web.port))

    def shut_down(self):
        """Abandon the jobs, stop the Workers, then the loop; loop thread."""
        self.scheduler.shut_down(self._stopped)

    def _stopped(self):
        """Answer every client still waiting, then stop the loop."""
        self.followers.answer_all()
        self.reactor.stop()

    # Messages.

    def _on_message(self, data, reply):
        """Pass one received message to its handler."""
        protocol.dispatch(data, self._handlers, self.log, reply,
                          peer=reply.peer)

    def _on_datagram(self, data, peer):
        """Pass a received heartbeat on; ignore anything else."""
        if not self.scheduler.stopping:
            protocol.dispatch(data, {protocol.Heartbeat: self._to_scheduler},
                              self.log, None, peer=peer)

    def _to_scheduler(self, msg, _reply):
        """Hand a Worker's message to the Scheduler, unless stopping.

        A signed Manager takes only signed messages: their Workers are
        ours, and get the `assignment` extension.
        """
        if not self.scheduler.stopping:
            self.scheduler.handle(msg, signed=self.signed)

    def _on_new_job(self, msg, reply):
        """Queue a job and answer with its id on the same connection.

        A client of the specification has closed without reading: the
        answer then fails quietly (logged at debug level by the reply).
        """
        if self.scheduler.stopping:
            self.log.warning("Ignored a job: the Manager is shutting down")
            reply(protocol.encode(protocol.RequestRefused(
                error="the Manager is shutting down")))
            return
        job = self.scheduler.on_new_job(msg)
        reply(protocol.encode(protocol.JobAccepted(job_id=job.job_id)))

    def _on_shutdown(self, msg, reply):
        """Shut down; a signed request is confirmed with its own message.

        The specification's `shutdown` is never answered. A signed one is
        (an extension: the client asked by signing), so that a client can
        tell a shutdown done from one refused for a wrong secret.
        """
        if self.signed:
            reply(protocol.encode(msg))
        self.shut_down()

    def _on_status_request(self, _msg, reply):
        """Answer with the status snapshot."""
        reply(protocol.encode(protocol.StatusReply(status=self.status())))

    def _on_job_request(self, msg, reply):
        """Answer with a job's state now, or once it changes (long poll)."""
        record = self.history.job(msg.job_id)
        if record is None:
            reply(protocol.encode(protocol.RequestRefused(
                error=f"no job {msg.job_id}: not submitted, or forgotten")))
        elif self.scheduler.stopping:
            self._answer_job(msg.job_id, reply)
        else:
            self.followers.follow(record, msg.after, reply)

    def _answer_job(self, job_id, reply):
        """Answer a `job_request` with the job's current summary."""
        record = self.history.job(job_id)
        reply(protocol.encode(protocol.JobReply(
            version=record.version, job=record.view(self.history.clock()))))

    # What the status answers and the dashboard show; loop thread only.

    def status(self):
        """Return the status snapshot (the object of `/api/status`)."""
        workers = self.scheduler.registry.workers()
        return status_snapshot(self.info, self.history, workers,
                               self.reactor.time())

    def job(self, job_id):
        """Return a job's detail (`/api/jobs/<id>`), or None if unknown."""
        return job_detail(self.history, job_id)


class Manager(ManagerServer):
    """The specification's Manager: the constructor runs it until shutdown."""

    def __init__(self, host, port, shared_dir=None, secret=None, **settings):
        """Listen on TCP and UDP `host:port` and run until shut down.

        The shared directory is made inside `shared_dir` (default: the
        system temp dir) and removed at the end. With bytes `secret`,
        every message is signed and checked. `settings` are the other
        ManagerOptions (heartbeat_timeout, max_attempts, ...).
        """
        super().__init__(host, port, ManagerOptions(shared_dir=shared_dir,
                                                    **settings), secret)
        self.run_blocking()
