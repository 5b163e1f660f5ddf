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
from time import monotonic

_EVENT_READ = selectors.EVENT_READ
_EVENT_WRITE = selectors.EVENT_WRITE


class Handle:
    """A callback scheduled on the loop; `cancel()` stops it from running."""

    __slots__ = ("when", "callback", "args", "cancelled", "_reactor")

    def __init__(self, when, callback, args, reactor=None):
        """Remember what to call, with which arguments, and when."""
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self._reactor = reactor

    def cancel(self):
        """Make sure the callback never runs; safe to call more than once."""
        if not self.cancelled:
            self.cancelled = True
            self.callback = None
            self.args = ()
            if self._reactor is not None:
                self._reactor.timer_cancelled()

    def __repr__(self):
        """Show the callback and, for a timer, when it is due."""
        state = "cancelled" if self.cancelled else repr(self.callback)
        return f"Handle(when={self.when!r}, callback={state})"


class Reactor:
    """A single-threaded event loop over `selectors.DefaultSelector`.

    Only the thread that runs `run()` may touch the loop's state; other
    threads talk to it through `call_soon_threadsafe` alone.
    """

    def __init__(self, logger=None, clock=monotonic):
        """Create the selector and the self-pipe that wakes it up.

        `clock` gives the loop's time in seconds (tests pass a fake one).
        """
        self.log = logger or logging.getLogger(__name__)
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._timers = []
        self._cancelled_timers = 0
        self._sequence = itertools.count()
        self._ready = collections.deque()
        self._stopping = False
        self._closed = False
        self._wake_lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.add_reader(self._wake_read, self._drain_wakeups)

    # Time and timers.

    def time(self):
        """Return the loop's clock: seconds on a monotonic clock."""
        return self._clock()

    def call_later(self, delay, callback, *args):
        """Run `callback(*args)` after `delay` seconds; return its Handle."""
        return self.call_at(self.time() + max(0.0, delay), callback, *args)

    def call_at(self, when, callback, *args):
        """Run `callback(*args)` at loop time `when`; return its Handle."""
        handle = Handle(when, callback, args, self)
        heapq.heappush(self._timers, (when, next(self._sequence), handle))
        return handle

    def call_soon(self, callback, *args):
        """Run `callback(*args)` on the next turn of the loop."""
        handle = Handle(None, callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback, *args):
        """From any thread: run `callback(*args)` on the loop, waking it."""
        handle = self.call_soon(callback, *args)
        with self._wake_lock:
            if not self._closed:
                try:
                    os.write(self._wake_write, b"\0")
                except BlockingIOError:
                    pass  # The pipe is full: the loop is awake already.
        return handle

    def timer_cancelled(self):
        """Count a cancelled timer; drop them all once they are many."""
        self._cancelled_timers += 1
        if (self._cancelled_timers > 64
                and self._cancelled_timers * 2 > len(self._timers)):
            self._timers = [entry for entry in self._timers
                            if not entry[2].cancelled]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

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
        try:
            key = self._selector.get_key(fileobj)
        except KeyError:
            key = None
        data = list(key.data) if key else [None, None]
        had = data[slot] is not None
        data[slot] = callback
        events = ((_EVENT_READ if data[0] else 0)
                  | (_EVENT_WRITE if data[1] else 0))
        if key is None:
            if events:
                self._selector.register(fileobj, events, tuple(data))
        elif events:
            self._selector.modify(fileobj, events, tuple(data))
        else:
            self._selector.unregister(fileobj)
        return had

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
        while not self._stopping:
            self._run_once()

    def stop(self):
        """Make `run()` return after the current turn; loop thread only."""
        self._stopping = True

    def close(self):
        """Release the selector and the self-pipe; the loop must be done."""
        with self._wake_lock:
            if self._closed:
                return
            self._closed = True
        self._selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
        self._timers.clear()
        self._ready.clear()

    def _timeout(self):
        """Seconds until something is due, or None to sleep until woken."""
        if self._ready:
            return 0
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
            self._cancelled_timers = max(0, self._cancelled_timers - 1)
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - self.time())

    def _run_once(self):
        """Wait for events or the next deadline, then run what is due."""
        for key, mask in self._selector.select(self._timeout()):
            if mask & _EVENT_READ:
                self._dispatch(key.fd, 0)
            if mask & _EVENT_WRITE:
                self._dispatch(key.fd, 1)
        now = self.time()
        while self._timers and self._timers[0][0] <= now:
            handle = heapq.heappop(self._timers)[2]
            if handle.cancelled:
                self._cancelled_timers = max(0, self._cancelled_timers - 1)
            else:
                self._ready.append(handle)
        for _ in range(len(self._ready)):
            handle = self._ready.popleft()
            if not handle.cancelled:
                self._call(handle.callback, handle.args)

    def _dispatch(self, fd, slot):
        """Run the current reader or writer callback of `fd`, if any.

        Looked up afresh because an earlier callback of the same turn may
        have removed or replaced it.
        """
        key = self._selector.get_map().get(fd)
        if key is not None and key.data[slot] is not None:
            callback, args = key.data[slot]
            self._call(callback, args)

    def _call(self, callback, args):
        """Run one callback; a failing callback is logged, never fatal."""
        try:
            callback(*args)
        except Exception:  # pylint: disable=broad-exception-caught
            # The loop must outlive any one callback's bug.
            self.log.exception("Error in callback %r", callback)

    def _drain_wakeups(self):
        """Empty the self-pipe; the posted callbacks are already queued."""
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass
