"""What a streaming task adds to its programs: environment and reports.

A task that carries the `streaming` record (see mapreduce.protocol) runs
its user programs (mapper, reducer, combiner, partitioner) the Hadoop
Streaming way: with the job's environment plus the variables the Worker
alone knows (`mapreduce_map_input_file`, `mapreduce_task_partition`,
...), and with the `reporter:` lines of their stderr taken out of the log
as counters and status. A task of the specification has no record: its
programs inherit the Worker's environment, and their stderr is logged as
it is.
"""

import os
import re
import threading

from mapreduce.protocol import NewMapTask, Streaming

COUNTER_PREFIX = b"reporter:counter:"
STATUS_PREFIX = b"reporter:status:"
# Hadoop's default limit on the counters of a job; past it, new counters
# are dropped (with one warning), which also bounds the `finished` message.
MAX_COUNTERS = 120
# Malformed reporter lines logged per task; the rest are only counted.
MAX_WARNINGS = 10
_AMOUNT = re.compile(r"[-+]?[0-9]+")
_LONG_RANGE = range(-(1 << 63), 1 << 63)


class Reporter:
    """The counters and status a task's programs report on stderr.

    `line(data)` takes one `reporter:` line (bytes, without its newline),
    from whichever thread reads the child's stderr; `counters()` and
    `status` are read once the children are done.
    """

    def __init__(self, log, task_name):
        """Report to logger `log`, naming the task `task_name`."""
        self.log = log
        self.task_name = task_name
        self.status = ""
        self._lock = threading.Lock()
        self._amounts = {}
        self._dropped = 0
        self._malformed = 0

    def line(self, data):
        """Take one `reporter:` line a program wrote on stderr."""
        if data.startswith(COUNTER_PREFIX):
            self._count(_text(data[len(COUNTER_PREFIX):]), data)
        elif data.startswith(STATUS_PREFIX):
            status = _text(data[len(STATUS_PREFIX):])
            self.log.info("%s status: %s", self.task_name, status)
            with self._lock:
                self.status = status
        else:
            self._warn(data, "neither reporter:counter: nor reporter:status:")

    def _count(self, text, data):
        """Add `group,counter,amount` (text) to its counter."""
        fields = text.split(",")
        if len(fields) != 3:
            self._warn(data, "not group,counter,amount")
            return
        group, name, amount = fields
        if not _AMOUNT.fullmatch(amount) or int(amount) not in _LONG_RANGE:
            self._warn(data, "the amount is not a 64-bit integer")
            return
        with self._lock:
            key = (group, name)
            if key not in self._amounts and len(self._amounts) >= MAX_COUNTERS:
                self._dropped += 1
                first = self._dropped == 1
            else:
                self._amounts[key] = self._amounts.get(key, 0) + int(amount)
                return
        if first:
            self.log.warning("%s: more than %d counters; counter %r in "
                             "group %r and later new ones are dropped",
                             self.task_name, MAX_COUNTERS, name, group)

    def _warn(self, data, why):
        """Log a malformed reporter line (only the first few per task)."""
        with self._lock:
            self._malformed += 1
            count = self._malformed
        if count <= MAX_WARNINGS:
            self.log.warning("%s: ignored a malformed reporter line (%s)%s: "
                             "%s", self.task_name, why,
                             "; further ones are not logged"
                             if count == MAX_WARNINGS else "",
                             data.decode("utf-8", "backslashreplace"))

    def counters(self):
        """Return the sums so far: group -> counter -> amount."""
        result = {}
        with self._lock:
            for (group, name), amount in self._amounts.items():
                result.setdefault(group, {})[name] = amount
        return result


def _text(data):
    """Return a reporter line's bytes as text, without a trailing CR."""
    return data.decode("utf-8", "replace").rstrip("\r")


def carried(task):
    """Return task message `task`'s `streaming` record, or None if absent.

    A record at its default is absent: it is what a message without one
    decodes to.
    """
    return None if task.streaming == Streaming() else task.streaming


class Programs:
    """How a task starts its user programs.

    For a task of the specification (no `streaming` record) `popen_args`
    adds nothing: the programs start exactly as they always have.
    Otherwise each program gets the task's environment, and its
    `reporter:` lines go to `reporter`.
    """

    def __init__(self, task, log):
        """Start the programs of `task` (a NewMapTask or NewReduceTask).

        Counters and status are logged to `log`.
        """
        self.streaming = carried(task)
        self.reporter = None
        self._task_variables = {}
        if self.streaming is not None:
            is_map = isinstance(task, NewMapTask)
            kind = "map" if is_map else "reduce"
            self.reporter = Reporter(log, f"{kind} task {task.task_id}")
            self._task_variables = {
                "mapreduce_task_ismap": "true" if is_map else "false",
                "mapreduce_task_partition": str(task.task_id),
            }

    def popen_args(self, input_path=None):
        """Return the extra arguments of ProcessControl.running.

        `input_path` is the input file a mapper reads, if any.
        """
        if self.streaming is None:
            return {}
        return {"env": self.environment(input_path),
                "on_report": self.reporter.line}

    def environment(self, input_path=None):
        """Return the environment of a streaming task's program.

        The Worker's own environment of the moment, then the task's
        variables, then the job's `environment` on top (as Hadoop puts
        `-cmdenv` last).
        """
        environment = {**os.environ, **self._task_variables}
        if input_path is not None:
            environment.update(input_file_variables(input_path))
        environment.update(self.streaming.environment)
        return environment

    def counters(self):
        """Return the counters reported so far ({} for a spec task)."""
        return self.reporter.counters() if self.reporter else {}

    @property
    def status(self):
        """Return the last status reported ("" if none)."""
        return self.reporter.status if self.reporter else ""


def input_file_variables(input_path):
    """Return Hadoop's variables for a mapper that reads `input_path`.

    The whole file is one split: it starts at 0, and its length is the
    file's size (compressed, for a compressed file). Both the current and
    the older names are set.
    """
    try:
        length = os.path.getsize(input_path)
    except (OSError, ValueError):
        length = 0  # Opening it will say what is wrong.
    input_path = os.fspath(input_path)
    variables = {}
    for prefix in ("mapreduce_map_input_", "map_input_"):
        variables[prefix + "file"] = input_path
        variables[prefix + "start"] = "0"
        variables[prefix + "length"] = str(length)
    return variables
