"""Command-line options that more than one command declares."""

import click


def hidden_timings(**timings):
    """Return a decorator that adds one hidden option per timing.

    `hidden_timings(heartbeat_interval=2.0)` adds `--heartbeat-interval`,
    a float that defaults to 2.0, passed as `heartbeat_interval`. The
    options are left out of `--help`: they are for tests and benchmarks
    that need shorter timings than a real cluster's.
    """
    def decorate(command):
        """Add the options to `command`, in the order given."""
        for name, default in reversed(timings.items()):
            command = click.option(
                "--" + name.replace("_", "-"), name, hidden=True,
                default=default, type=type(default))(command)
        return command
    return decorate
