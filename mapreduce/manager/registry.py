"""The Manager's record of Workers: who they are, their state, their task."""

READY = "ready"
BUSY = "busy"
DEAD = "dead"
JOINING = "joining"  # Registered; the register_ack is still on its way.


class RemoteWorker:
    """What the Manager knows of one Worker process."""

    def __init__(self, host, port, now):
        """Record a Worker that has just registered."""
        self.host = host
        self.port = port
        self.state = JOINING
        self.task = None
        self.last_seen = now
        self.liveness_timer = None

    @property
    def key(self):
        """Return the (host, port) pair that identifies this Worker."""
        return (self.host, self.port)

    @property
    def alive(self):
        """Tell whether the Worker is not marked dead."""
        return self.state != DEAD

    def __repr__(self):
        """Show the Worker's address, as in `RemoteWorker(host=..., ...)`."""
        return f"RemoteWorker(host={self.host!r}, port={self.port})"


class WorkerRegistry:
    """Every Worker that ever registered, in registration order."""

    def __init__(self):
        """Start with no Workers."""
        self._workers = {}

    def get(self, host, port):
        """Return the Worker at host:port, or None if it never registered."""
        return self._workers.get((host, port))

    def add(self, host, port, now):
        """Record a new Worker, last in registration order, and return it."""
        worker = RemoteWorker(host, port, now)
        self._workers[worker.key] = worker
        return worker

    def workers(self):
        """Return every Worker, dead ones too, in registration order."""
        return list(self._workers.values())

    def ready(self):
        """Return the Workers that can take a task, in registration order."""
        return [w for w in self._workers.values() if w.state == READY]

    def alive(self):
        """Return the Workers not marked dead, in registration order."""
        return [w for w in self._workers.values() if w.alive]

    def __len__(self):
        """Return how many Workers ever registered."""
        return len(self._workers)
