"""How the client commands show a job: a progress line, and how it ended.

Every function takes a JobSummary (a dict, see the README's status
answers) and returns text; `ProgressView` decides when to show it.
"""

import time

from mapreduce import protocol

BAR_WIDTH = 24
# Without a terminal, a progress line at most this often, unless the
# stage or state changes.
PLAIN_INTERVAL = 5.0


def _count(counts, total_default=None):
    """Return 'done/total', with '?' for a total not known yet."""
    total = counts["total"] if counts["total"] is not None else total_default
    return f"{counts['done']}/{'?' if total is None else total}"


def _seconds(value):
    """Return seconds as '12.3s', or '-' when unknown."""
    return "-" if value is None else f"{value:.1f}s"


def fraction_done(summary):
    """Return how much of the job is done, from 0 to 1."""
    map_total = summary["map"]["total"] or 0
    total = map_total + summary["num_reducers"]
    if not total:
        return 0.0
    done = summary["map"]["done"] + summary["reduce"]["done"]
    return min(1.0, done / total)


def progress_line(summary):
    """Return one line: job, state, stage, tasks done of total, elapsed."""
    stage = f" ({summary['stage']} stage)" if summary["stage"] else ""
    reduce = ("no reduce (map-only)" if summary["num_reducers"] == 0 else
              f"reduce {_count(summary['reduce'], summary['num_reducers'])}")
    return (f"job {summary['job_id']} {summary['state']}{stage}: "
            f"map {_count(summary['map'])}, {reduce}, "
            f"elapsed {_seconds(summary['elapsed'])}")


def progress_bar(summary):
    """Return the progress line with a bar in front, for a terminal."""
    filled = round(fraction_done(summary) * BAR_WIDTH)
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] " + \
        progress_line(summary)


def success_lines(summary):
    """Return the summary of a finished job, as lines."""
    parts = summary["part_files"]
    shown = ", ".join(parts[:5]) + (", ..." if len(parts) > 5 else "")
    return [
        f"job {summary['job_id']} finished in "
        f"{_seconds(summary['elapsed'])}",
        f"output directory     {summary['output_directory']}",
        f"part files           {len(parts)}: {shown}",
    ] + counter_lines(summary)


def counters_inline(counters):
    """Return counters (group -> name -> N) on one line, or ''.

    As `group.name=N, ...`, sorted by group, then name.
    """
    return ", ".join(f"{group}.{name}={amount}"
                     for group, names in sorted(counters.items())
                     for name, amount in sorted(names.items()))


def counter_lines(summary):
    """Return a job's counters as lines, by group; none without counters.

    `counters             2`, then each group and under it each
    `name=amount`, sorted by name. (Older Managers send no counters.)
    """
    counters = summary.get("counters") or {}
    if not counters:
        return []
    lines = [f"counters             "
             f"{sum(len(names) for names in counters.values())}"]
    for group, names in sorted(counters.items()):
        lines.append(f"  {group}")
        lines.extend(f"    {name}={amount}"
                     for name, amount in sorted(names.items()))
    return lines


def failure_text(summary):
    """Return why a job did not finish: its state, reason and stderr."""
    state = summary["state"]
    when = (f" after {_seconds(summary['elapsed'])}"
            if summary["elapsed"] is not None else "")
    reason = summary["reason"]
    if summary["stderr_tail"]:
        # Shown below as lines, not again at the end of the reason.
        reason = (reason or "").partition(protocol.STDERR_MARKER)[0]
    text = f"job {summary['job_id']} {state}{when}: {reason}"
    if summary["stderr_tail"]:
        tail = "\n".join("  " + line for line in
                         summary["stderr_tail"].splitlines())
        text += f"\nstderr of the failing executable (last lines):\n{tail}"
    return text


class ProgressView:
    """Shows a job's progress: one redrawn line on a terminal, else lines.

    `write(text)` writes to the output; `terminal` tells whether it is one.
    """

    def __init__(self, write, terminal, clock=time.monotonic):
        """Show nothing yet."""
        self.write = write
        self.terminal = terminal
        self.clock = clock
        self._last = None  # (time, stage and state) of the last line.

    def show(self, summary):
        """Show the progress of `summary`, if it is time to."""
        if self.terminal:
            self.write("\r" + progress_bar(summary) + "\033[K")
            return
        now = self.clock()
        phase = (summary["state"], summary["stage"])
        if (self._last is None or self._last[1] != phase
                or now - self._last[0] >= PLAIN_INTERVAL):
            self._last = (now, phase)
            self.write(progress_line(summary) + "\n")

    def close(self):
        """End the redrawn line on a terminal."""
        if self.terminal:
            self.write("\n")
