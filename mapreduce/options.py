"""Command-line options that more than one command declares."""

import click

from mapreduce import auth


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


def _load_secret(_ctx, _param, path):
    """Return the secret in file `path` (None for none); one-line errors."""
    if not path:
        return None
    try:
        return auth.load_secret(path)
    except auth.SecretError as exc:
        raise click.ClickException(str(exc)) from exc


def secret_file(command):
    """Add `--secret-file PATH` (or MAPREDUCE_SECRET_FILE), passed as `secret`.

    The command gets the secret's bytes, or None without one. A file that
    cannot be used is a one-line error before anything starts.
    """
    return click.option(
        "--secret-file", "secret", envvar=auth.SECRET_FILE_VARIABLE,
        show_envvar=True, callback=_load_secret, metavar="PATH",
        help="The cluster's shared secret: sign every message with it and "
             "refuse every message not signed with it. The same file on "
             "every Manager, Worker and client; make one with "
             f"{auth.MAKE_SECRET_HINT}.")(command)
