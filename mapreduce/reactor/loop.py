"""The Reactor: one selector loop with timers and a thread-safe wake-up.

Everything that can wake a process goes through one `Reactor`: readable and
writable file objects, deadlines (`call_later`), and callbacks posted from
other threads (`call_soon_threadsafe`). The loop sleeps in `select()` until
the next deadline, so an idle process uses no CPU.
"""

import collections
import heapq
import itertools
import logging
import os
import selectors
import threading
import typing
from time import monotonic

_EVENT_READ = selectors.EVENT_READ
_EVENT_WRITE = selectors.EVENT_WRITE


class Handle:
    """A callback scheduled on the loop; `cancel()` stops it from running.

    A timer's Handle knows whether it is still `scheduled` (in its Timers'
    heap), so that the heap's count of cancelled timers is exact.
    """

    __slots__ = ("when", "callback", "args", "cancelled", "scheduled",
                 "_timers")

    def __init__(self, when, callback, args, timers=None):
        """Remember what to call, with which arguments, and when."""
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self.scheduled = False
        self._timers = timers

    def cancel(self):
        """Make sure the callback never runs; safe to call more than once."""
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = None
        self.args = ()
        if self.scheduled:
            self._timers.cancelled_one()

    def __repr__(self):
        """Show the callback and, for a timer, when it is due."""
        state = "cancelled" if self.cancelled else repr(self.callback)
        return f"Handle(when={self.when!r}, callback={state})"


class TimerCounts(typing.NamedTuple):
    """How many timers wait in the heap: live, and cancelled not yet gone."""

    scheduled: int
    cancelled: int


class Timers:
    """The loop's deadlines: a heap of Handles in (when, sequence) order.

    Cancelled timers stay in the heap until they come to the top or until
    they are more than half of it, when they are all dropped at once;
    `cancelled` counts exactly those still in the heap.
    """

    COMPACT_AFTER = 64

    def __init__(self, clock=monotonic):
        """Start with no timers, on `clock` (seconds, monotonic)."""
        self.clock = clock
        self._heap = []
        self._sequence = itertools.count()
        self.cancelled = 0

    def counts(self):
        """Return the TimerCounts of the heap."""
        return TimerCounts(len(self._heap) - self.cancelled, self.cancelled)

    def add(self, when, callback, args):
        """Schedule `callback(*args)` at loop time `when`; return a Handle."""
        handle = Handle(when, callback, args, self)
        handle.scheduled = True
        heapq.heappush(self._heap, (when, next(self._sequence), handle))
        return handle

    def cancelled_one(self):
        """Count a scheduled timer just cancelled; drop them when many."""
        self.cancelled += 1
        if (self.cancelled > self.COMPACT_AFTER
                and self.cancelled * 2 > len(self._heap)):
            kept = []
            for entry in self._heap:
                if entry[2].cancelled:
                    entry[2].scheduled = False
                else:
                    kept.append(entry)
            heapq.heapify(kept)
            self._heap = kept
            self.cancelled = 0

    def next_deadline(self):
        """Return when the first live timer is due, or None if none is."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            self._pop()
        return heap[0][0] if heap else None

    def pop_due(self, now, ready):
        """Move the live timers due at `now` to the deque `ready`."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            handle = self._pop()
            if not handle.cancelled:
                ready.append(handle)

    def clear(self):
        """Forget every timer."""
        for entry in self._heap:
            entry[2].scheduled = False
        self._heap.clear()
        self.cancelled = 0

    def _pop(self):
        """Take the first timer off the heap and return its Handle."""
        handle = heapq.heappop(self._heap)[2]
        handle.scheduled = False
        if handle.cancelled:
            self.cancelled -= 1
        return handle


class Waker:
    """A self-pipe: any thread can wake the loop sleeping in `select()`.

    `loop_thread` is the identity of the thread that runs the loop (None
    before `run()`), so that code can tell whether it runs there.
    """

    def __init__(self):
        """Open the pipe, non-blocking at both ends."""
        self.lock = threading.Lock()
        self.closed = False
        self.loop_thread = None
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def wake(self):
        """Make the read end readable; harmless once closed."""
        with self.lock:
            if not self.closed:
                try:
                    os.write(self.write_fd, b"\0")
                except BlockingIOError:
                    pass  # The pipe is full: the loop is awake already.

    def drain(self):
        """Empty the pipe; loop thread only."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self):
        """Close the pipe; return False if it was closed already."""
        with self.lock:
            if self.closed:
                return False
            self.closed = True
        os.close(self.read_fd)
        os.close(self.write_fd)
        return True


class Guard:
    """A `with` block that logs an exception of its body and goes on.

    The loop must outlive any one callback's bug: an `Exception` raised in
    the block is logged with its traceback, as "Error in `kind` `what`",
    and stops there; `failed` tells the caller it happened. Anything else
    (KeyboardInterrupt, SystemExit) goes on up.
    """

    __slots__ = ("log", "kind", "what", "failed")

    def __init__(self, log, kind="callback", what=None):
        """Log through `log`, naming the guarded code by `kind` and `what`."""
        self.log = log
        self.kind = kind
        self.what = what
        self.failed = False

    def __enter__(self):
        """Start a block that has not failed yet."""
        self.failed = False
        return self

    def __exit__(self, exc_type, exc, traceback):
        """Log an Exception and stop it; let anything else go on."""
        if exc_type is None or not issubclass(exc_type, Exception):
            return False
        self.failed = True
        self.log.error("Error in %s %r", self.kind, self.what,
                       exc_info=(exc_type, exc, traceback))
        return True


class Watch:
    """The files a loop watches: a selector, with two slots per file.

    Each file's selector data is its (reader, writer) pair of callbacks,
    each `(callback, args)` or None.
    """

    def __init__(self):
        """Watch nothing yet."""
        self.selector = selectors.DefaultSelector()
        # The selector's own lookup of a file it does not watch raises a
        # KeyError that formats the file's repr: cheaper to know here.
        self._watched = set()

    def put(self, fileobj, slot, callback):
        """Put `callback` in slot 0 (read) or 1 (write) of `fileobj`.

        Return whether the slot held a callback. A file with both slots
        empty is no longer watched.
        """
        key = (self.selector.get_key(fileobj) if fileobj in self._watched
               else None)
        data = list(key.data) if key else [None, None]
        had = data[slot] is not None
        data[slot] = callback
        events = ((_EVENT_READ if data[0] else 0)
                  | (_EVENT_WRITE if data[1] else 0))
        if key is None:
            if events:
                self.selector.register(fileobj, events, tuple(data))
                self._watched.add(fileobj)
        elif events:
            self.selector.modify(fileobj, events, tuple(data))
        else:
            self.selector.unregister(fileobj)
            self._watched.discard(fileobj)
        return had


class Reactor:
    """A single-threaded event loop over `selectors.DefaultSelector`.

    Only the thread that runs `run()` may touch the loop's state; other
    threads talk to it through `call_soon_threadsafe` alone.
    """

    # What wraps every message's bytes at the network's edge (see
    # reactor.net), set by the reactor's owner; None: the bytes go as
    # they are.
    envelope = None
    # A concurrent.futures pool, set by the reactor's owner, where host
    # names are looked up so that the loop never waits on the resolver
    # (see reactor.net); None: looked up on the loop.
    resolver = None

    def __init__(self, logger=None, clock=monotonic):
        """Create the selector and the self-pipe that wakes it up.

        `clock` gives the loop's time in seconds (tests pass a fake one).
        """
        self.log = logger or logging.getLogger(__name__)
        self._watch = Watch()
        self._timers = Timers(clock)
        self._ready = collections.deque()
        self._stopping = False
        self._guard = Guard(self.log)
        self._waker = Waker()
        self.add_reader(self._waker.read_fd, self._waker.drain)

    # Time and timers.

    def time(self):
        """Return the loop's clock: seconds on a monotonic clock."""
        return self._timers.clock()

    def call_later(self, delay, callback, *args):
        """Run `callback(*args)` after `delay` seconds; return its Handle."""
        return self.call_at(self.time() + max(0.0, delay), callback, *args)

    def call_at(self, when, callback, *args):
        """Run `callback(*args)` at loop time `when`; return its Handle."""
        return self._timers.add(when, callback, args)

    def call_soon(self, callback, *args):
        """Run `callback(*args)` on the next turn of the loop."""
        handle = Handle(None, callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback, *args):
        """From any thread: run `callback(*args)` on the loop, waking it."""
        handle = self.call_soon(callback, *args)
        self._waker.wake()
        return handle

    def in_loop_thread(self):
        """Tell whether the caller runs in the thread that runs the loop."""
        return threading.get_ident() == self._waker.loop_thread

    def timer_counts(self):
        """Return the TimerCounts: timers scheduled, and cancelled ones kept.

        Loop thread only; for tests and measurements.
        """
        return self._timers.counts()

    # Readers and writers.

    def add_reader(self, fileobj, callback, *args):
        """Call `callback(*args)` whenever `fileobj` is readable."""
        self._set_interest(fileobj, 0, (callback, args))

    def add_writer(self, fileobj, callback, *args):
        """Call `callback(*args)` whenever `fileobj` is writable."""
        self._set_interest(fileobj, 1, (callback, args))

    def remove_reader(self, fileobj):
        """Stop watching `fileobj` for reading; return whether it was."""
        return self._set_interest(fileobj, 0, None)

    def remove_writer(self, fileobj):
        """Stop watching `fileobj` for writing; return whether it was."""
        return self._set_interest(fileobj, 1, None)

    def _set_interest(self, fileobj, slot, callback):
        """Put `callback` in the reader (0) or writer (1) slot of `fileobj`."""
        return self._watch.put(fileobj, slot, callback)

    # Futures from a concurrent.futures pool.

    def run_in_pool(self, pool, on_done, function, *args):
        """Submit `function(*args)` to `pool`; run `on_done(future)` here.

        `on_done` runs on the loop thread once the future has finished,
        whether it returned, raised or was cancelled.
        """
        future = pool.submit(function, *args)
        future.add_done_callback(
            lambda done: self.call_soon_threadsafe(on_done, done))
        return future

    # Running.

    def run(self):
        """Run until `stop()` is called."""
        self._stopping = False
        self._waker.loop_thread = threading.get_ident()
        while not self._stopping:
            self._run_once()

    def stop(self):
        """Make `run()` return after the current turn; loop thread only."""
        self._stopping = True

    def close(self):
        """Release the selector and the self-pipe; the loop must be done."""
        if not self._waker.close():
            return
        self._watch.selector.close()
        self._timers.clear()
        self._ready.clear()

    def _timeout(self):
        """Seconds until something is due, or None to sleep until woken."""
        if self._ready:
            return 0
        deadline = self._timers.next_deadline()
        if deadline is None:
            return None
        return max(0.0, deadline - self.time())

    def _run_once(self):
        """Wait for events or the next deadline, then run what is due."""
        for key, mask in self._watch.selector.select(self._timeout()):
            if mask & _EVENT_READ:
                self._dispatch(key.fd, 0)
            if mask & _EVENT_WRITE:
                self._dispatch(key.fd, 1)
        self._timers.pop_due(self.time(), self._ready)
        self._run_ready(len(self._ready))

    def _run_ready(self, count):
        """Run the first `count` callbacks of the ready queue, in order.

        One guarded block runs them all; when a callback fails, the guard
        logs it and a new block goes on with the next one. (A block per
        callback would cost more than the callbacks themselves.)
        """
        ready = self._ready
        guard = self._guard
        guard.log = self.log
        while count:
            with guard:
                while count:
                    count -= 1
                    handle = ready.popleft()
                    if not handle.cancelled:
                        guard.what = handle.callback
                        handle.callback(*handle.args)
        guard.what = None  # Keep nothing alive that the loop is done with.

    def _dispatch(self, fd, slot):
        """Run the current reader or writer callback of `fd`, if any.

        Looked up afresh because an earlier callback of the same turn may
        have removed or replaced it.
        """
        key = self._watch.selector.get_map().get(fd)
        if key is not None and key.data[slot] is not None:
            callback, args = key.data[slot]
            self._call(callback, args)

    def _call(self, callback, args):
        """Run one callback; a failing callback is logged, never fatal."""
        guard = self._guard
        guard.log = self.log
        guard.what = callback
        with guard:
            callback(*args)
        guard.what = None
