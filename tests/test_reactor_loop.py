"""Tests of the Reactor loop: timers, readers, wake-ups, pools, idling."""

import concurrent.futures
import logging
import pathlib
import socket
import threading
import time

import pytest

from mapreduce.reactor import Reactor

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0  # Seconds to wait for something that should happen at once.


def run_for(reactor, seconds):
    """Run `reactor` in this thread until `seconds` have passed."""
    reactor.call_later(seconds, reactor.stop)
    reactor.run()


def test_call_later_runs_in_deadline_order(reactor):
    """Timers run in the order of their deadlines, not of their creation."""
    ran = []
    for delay in (0.05, 0.01, 0.04, 0.0, 0.02, 0.03):
        reactor.call_later(delay, ran.append, delay)
    run_for(reactor, 0.1)
    assert ran == [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]


def test_call_later_waits_for_its_deadline(reactor):
    """A timer does not run before its delay has passed."""
    ran = []
    start = reactor.time()
    reactor.call_later(0.1, lambda: ran.append(reactor.time() - start))
    run_for(reactor, 0.2)
    assert len(ran) == 1
    assert ran[0] >= 0.1


def test_call_at_ties_keep_insertion_order(reactor):
    """Timers due at the same moment run in the order they were added."""
    ran = []
    when = reactor.time() + 0.02
    for number in range(50):
        reactor.call_at(when, ran.append, number)
    run_for(reactor, 0.05)
    assert ran == list(range(50))


def test_call_soon_runs_in_order_before_timers(reactor):
    """Callbacks posted with call_soon run first-in first-out."""
    ran = []
    reactor.call_later(0, ran.append, "timer")
    for number in range(5):
        reactor.call_soon(ran.append, number)
    run_for(reactor, 0.05)
    assert ran == [0, 1, 2, 3, 4, "timer"]


def test_cancelled_timer_never_runs(reactor, caplog):
    """A cancelled timer does not run; cancelling twice is harmless."""
    ran = []
    handle = reactor.call_later(0.01, ran.append, "cancelled")
    reactor.call_later(0.02, ran.append, "kept")
    handle.cancel()
    handle.cancel()
    assert handle.cancelled
    run_for(reactor, 0.05)
    assert ran == ["kept"]
    assert not caplog.records


def test_cancelled_call_soon_never_runs(reactor, caplog):
    """A Handle from call_soon can be cancelled too."""
    ran = []
    reactor.call_soon(ran.append, "cancelled").cancel()
    reactor.call_soon(ran.append, "kept")
    run_for(reactor, 0.02)
    assert ran == ["kept"]
    assert not caplog.records


def test_cancelling_many_timers(reactor, caplog):
    """Out of many timers only those never cancelled run, and in order."""
    ran = []
    now = reactor.time()
    handles = [reactor.call_at(now + 0.001 * (number % 50), ran.append,
                               number)
               for number in range(2000)]
    kept = set(range(0, 2000, 97))
    for number, handle in enumerate(handles):
        if number not in kept:
            handle.cancel()
    run_for(reactor, 0.1)
    assert ran == sorted(kept, key=lambda number: (number % 50, number))
    assert not caplog.records


def test_cancelled_timers_do_not_pile_up(reactor):
    """Timers cancelled long before their deadline are dropped from memory."""
    handles = [reactor.call_later(3600 + number, print)
               for number in range(1000)]
    for handle in handles[1:]:
        handle.cancel()
    assert reactor.timer_counts().scheduled == 1
    assert reactor.timer_counts().cancelled < 200


def test_cancelled_timer_count_is_exact(reactor):
    """The count of cancelled timers kept is exact at every step.

    Timers are cancelled before they are due, after they ran, twice, from
    call_soon, and by the hundred (which drops them all from the heap).
    """
    ran = []
    now = reactor.time()
    soon = [reactor.call_at(now + 0.001 * (number % 7), ran.append, number)
            for number in range(20)]
    late = [reactor.call_at(now + 3600 + number, ran.append, number)
            for number in range(10)]
    assert reactor.timer_counts() == (30, 0)
    soon[0].cancel()
    soon[0].cancel()
    late[0].cancel()
    reactor.call_soon(ran.append, "soon").cancel()
    assert reactor.timer_counts() == (28, 2)
    run_for(reactor, 0.05)
    # The stopping timer and the 19 due ones ran; soon[0] left the heap.
    assert len(ran) == 19
    assert reactor.timer_counts() == (9, 1)
    for handle in soon:
        handle.cancel()
    assert reactor.timer_counts() == (9, 1)
    for handle in late[1:5]:
        handle.cancel()
    assert reactor.timer_counts() == (5, 5)
    many = [reactor.call_later(7200, print) for _ in range(100)]
    assert reactor.timer_counts() == (105, 5)
    counts = []
    for handle in many:
        handle.cancel()
        counts.append(reactor.timer_counts().cancelled)
    # At 65 cancelled of 105 (over 64, and over half) all were dropped.
    assert counts == list(range(6, 65)) + list(range(0, 41))
    assert reactor.timer_counts() == (5, 40)
    for handle in late:
        handle.cancel()
    assert reactor.timer_counts() == (0, 45)


def test_cancel_from_a_callback_of_the_same_turn(reactor, caplog):
    """A timer cancelled by another timer due at the same time never runs."""
    ran = []
    when = reactor.time() + 0.01
    handles = {}

    def first():
        """Run, and cancel the second timer."""
        ran.append("first")
        handles["second"].cancel()

    reactor.call_at(when, first)
    handles["second"] = reactor.call_at(when, ran.append, "second")
    run_for(reactor, 0.05)
    assert ran == ["first"]
    assert not caplog.records


def test_timer_added_by_a_timer_runs(reactor):
    """A callback may schedule more timers, and they run in turn."""
    ran = []

    def tick(count):
        """Record a tick and schedule the next one."""
        ran.append(count)
        if count < 5:
            reactor.call_later(0, tick, count + 1)

    reactor.call_later(0, tick, 0)
    run_for(reactor, 0.1)
    assert ran == [0, 1, 2, 3, 4, 5]


def test_handle_repr_shows_state(reactor):
    """A Handle's repr tells whether it was cancelled."""
    handle = reactor.call_later(10, print)
    assert "print" in repr(handle)
    handle.cancel()
    assert "cancelled" in repr(handle)


def test_run_can_be_restarted(reactor):
    """After stop(), run() may be called again and goes on."""
    ran = []
    reactor.call_soon(ran.append, 1)
    reactor.call_soon(reactor.stop)
    reactor.run()
    reactor.call_soon(ran.append, 2)
    reactor.call_soon(reactor.stop)
    reactor.run()
    assert ran == [1, 2]


def test_readers_and_writers_on_one_socket(reactor):
    """A socket may have a reader and a writer; each can be removed alone."""
    left, right = socket.socketpair()
    events = []
    removed = []

    def on_writable():
        """Stop watching for writes, then make `left` readable."""
        events.append("writable")
        removed.append(reactor.remove_writer(left))
        right.send(b"ping")

    def on_readable():
        """Read, stop watching and stop the loop."""
        events.append(left.recv(10))
        removed.append(reactor.remove_reader(left))
        reactor.stop()

    try:
        reactor.add_reader(left, on_readable)
        reactor.add_writer(left, on_writable)
        reactor.call_later(WAIT, reactor.stop)
        reactor.run()
        assert events == ["writable", b"ping"]
        assert removed == [True, True]
        assert reactor.remove_reader(left) is False
        assert reactor.remove_writer(left) is False
    finally:
        left.close()
        right.close()


def test_add_reader_replaces_the_callback(reactor):
    """Adding a reader again replaces the previous callback."""
    left, right = socket.socketpair()
    ran = []

    def on_readable(name):
        """Record which callback ran and stop watching."""
        ran.append(name)
        reactor.remove_reader(left)

    try:
        reactor.add_reader(left, on_readable, "old")
        reactor.add_reader(left, on_readable, "new")
        right.send(b"x")
        run_for(reactor, 0.05)
        assert ran == ["new"]
    finally:
        left.close()
        right.close()


def test_reader_removed_earlier_in_the_turn_is_not_called(reactor):
    """A reader removed by another callback of the same turn does not run."""
    pairs = [socket.socketpair(), socket.socketpair()]
    ran = []

    def on_readable(mine, other):
        """Record the call and stop watching both sockets."""
        ran.append(mine)
        reactor.remove_reader(pairs[mine][0])
        reactor.remove_reader(pairs[other][0])

    try:
        for mine, (left, right) in enumerate(pairs):
            reactor.add_reader(left, on_readable, mine, 1 - mine)
            right.send(b"x")
        run_for(reactor, 0.05)
        assert len(ran) == 1
    finally:
        for left, right in pairs:
            left.close()
            right.close()


def test_failing_callbacks_are_logged_and_the_loop_goes_on(reactor, caplog):
    """Callbacks that raise are logged; later callbacks still run."""
    left, right = socket.socketpair()
    ran = []

    def failing_reader():
        """Stop watching, then fail."""
        reactor.remove_reader(left)
        raise RuntimeError("reader failed")

    def failing_timer():
        """Fail."""
        raise ValueError("timer failed")

    def failing_soon():
        """Fail."""
        raise KeyError("soon failed")

    try:
        reactor.add_reader(left, failing_reader)
        right.send(b"x")
        reactor.call_soon(failing_soon)
        reactor.call_soon(ran.append, "soon")
        reactor.call_later(0.01, failing_timer)
        reactor.call_later(0.02, ran.append, "timer")
        with caplog.at_level(logging.ERROR):
            run_for(reactor, 0.05)
    finally:
        left.close()
        right.close()
    assert ran == ["soon", "timer"]
    errors = sorted(type(record.exc_info[1]).__name__
                    for record in caplog.records
                    if record.levelno == logging.ERROR)
    assert errors == ["KeyError", "RuntimeError", "ValueError"]
    assert all("Error in callback" in record.getMessage()
               for record in caplog.records)


def test_failures_in_one_turn_neither_skip_nor_reorder(reactor, caplog):
    """Callbacks after failing ones of the same turn run, in order."""
    ran = []

    def fail(number):
        """Record the call, then fail."""
        ran.append(number)
        raise RuntimeError(f"failure {number}")

    for number in range(7):
        reactor.call_soon(fail if number % 3 else ran.append, number)
    with caplog.at_level(logging.ERROR):
        run_for(reactor, 0.01)
    assert ran == list(range(7))
    assert [str(record.exc_info[1]) for record in caplog.records] == [
        f"failure {number}" for number in (1, 2, 4, 5)]
    assert all("fail" in record.getMessage() for record in caplog.records)


def test_keyboard_interrupt_leaves_the_loop(reactor):
    """Only Exceptions are caught: KeyboardInterrupt ends run()."""
    def interrupt():
        """Act like Ctrl-C."""
        raise KeyboardInterrupt

    reactor.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_for(reactor, 1)


def test_threadsafe_call_wakes_a_sleeping_loop(loop):
    """call_soon_threadsafe wakes a loop asleep with no deadline at once."""
    latencies = []

    def woken(posted, done):
        """Record how long after `posted` the loop ran this."""
        latencies.append(time.monotonic() - posted)
        done.set()

    for _ in range(5):
        loop.sync()
        # Let the loop fall back asleep in select() with no deadline.
        time.sleep(0.05)
        done = threading.Event()
        loop.reactor.call_soon_threadsafe(woken, time.monotonic(), done)
        assert done.wait(WAIT), "the loop was not woken up"
    assert max(latencies) < 0.5


def test_threadsafe_calls_from_many_threads_all_run(loop):
    """Many threads posting callbacks at once: every callback runs once."""
    counts = []
    done = threading.Event()
    total = 4 * 5000

    def count():
        """Count one call; signal when all have run."""
        counts.append(1)
        if len(counts) == total:
            done.set()

    def post():
        """Post many callbacks from this thread."""
        for _ in range(total // 4):
            loop.reactor.call_soon_threadsafe(count)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert done.wait(WAIT)
    loop.sync()
    assert len(counts) == total


def test_threadsafe_call_after_close_is_harmless():
    """Posting to a closed Reactor does not raise; closing twice is fine."""
    reactor = Reactor()
    reactor.close()
    reactor.call_soon_threadsafe(print, "never")
    reactor.close()


def context_switches(thread):
    """Return how many times `thread` has gone to sleep in the kernel."""
    status = pathlib.Path(f"/proc/self/task/{thread.native_id}/status")
    for line in status.read_text(encoding="ascii").splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no context switch count in {status}")


def test_idle_loop_uses_almost_no_cpu():
    """A loop with only a far-away timer sleeps instead of spinning."""
    reactor = Reactor()
    reactor.call_later(3600, print, "far away")
    reactor.call_later(0.2, print, "cancelled").cancel()
    thread = threading.Thread(target=reactor.run)
    thread.start()
    try:
        started = threading.Event()
        reactor.call_soon_threadsafe(started.set)
        assert started.wait(WAIT)
        wall_start = time.monotonic()
        cpu_start = time.process_time()
        switches_start = context_switches(thread)
        # Measuring idleness needs a fixed stretch of wall time.
        time.sleep(2.0)
        switches = context_switches(thread) - switches_start
        cpu = time.process_time() - cpu_start
        wall = time.monotonic() - wall_start
    finally:
        reactor.call_soon_threadsafe(reactor.stop)
        thread.join(WAIT)
        reactor.close()
    assert not thread.is_alive()
    assert wall >= 2.0
    assert cpu < 0.1, f"an idle loop used {cpu:.3f}s of CPU in {wall:.1f}s"
    # Polling, even every few milliseconds, would wake it hundreds of times.
    assert switches < 20, f"an idle loop woke up {switches} times"


def test_run_in_pool_reports_on_the_loop_thread(loop):
    """on_done runs on the loop thread with the finished future."""
    outcomes = []
    done = threading.Event()

    def on_done(future):
        """Record where and with what the callback ran."""
        outcomes.append((threading.get_ident(), future))
        if len(outcomes) == 2:
            done.set()

    def square(number):
        """Return the square of `number` and the worker thread's id."""
        return number * number, threading.get_ident()

    def fail():
        """Raise, as a task may."""
        raise ValueError("task failed")

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = loop.call(loop.reactor.run_in_pool, pool, on_done, square, 7)
        second = loop.call(loop.reactor.run_in_pool, pool, on_done, fail)
        assert done.wait(WAIT)
    loop_thread = loop.thread.ident
    assert [ident for ident, _ in outcomes] == [loop_thread, loop_thread]
    assert {id(future) for _, future in outcomes} == {id(first), id(second)}
    assert all(future.done() for _, future in outcomes)
    value, worker_thread = first.result()
    assert value == 49
    assert worker_thread != loop_thread
    assert isinstance(second.exception(), ValueError)


def test_run_in_pool_reports_cancelled_futures(loop):
    """A future cancelled before it ran still reaches on_done."""
    finished = []
    done = threading.Event()
    release = threading.Event()

    def on_done(future):
        """Record the future; signal when both are in."""
        finished.append(future)
        if len(finished) == 2:
            done.set()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            blocker = loop.call(loop.reactor.run_in_pool, pool, on_done,
                                release.wait, WAIT)
            waiting = loop.call(loop.reactor.run_in_pool, pool, on_done,
                                print, "never")
            assert waiting.cancel()
        finally:
            release.set()
        assert done.wait(WAIT)
    assert blocker.result() is True
    assert waiting in finished
    assert waiting.cancelled()
