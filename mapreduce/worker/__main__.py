"""`mapreduce-worker`: run a Worker until the Manager shuts it down."""

import resource

import click

from mapreduce import defaults
from mapreduce.logs import LEVELS, configure
from mapreduce.options import hidden_timings, secret_file
from mapreduce.worker import Worker


def _allow_many_open_files():
    """Raise the open-file limit to its maximum: reduce tasks open many."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # Keep the limit we have; a task that needs more fails.


@click.command(context_settings={"help_option_names": ["--help"]})
@click.option("--host", default=defaults.WORKER_HOST, show_default=True,
              help="Address to listen on; the Manager must reach it.")
@click.option("--port", default=defaults.WORKER_PORT, show_default=True,
              type=int, help="TCP port to listen on.")
@click.option("--manager-host", "manager_host",
              default=defaults.MANAGER_HOST, show_default=True,
              help="The Manager's host.")
@click.option("--manager-port", "manager_port",
              default=defaults.MANAGER_PORT, show_default=True, type=int,
              help="The Manager's port.")
@click.option("--logfile", type=click.Path(dir_okay=False),
              help="Write the log here instead of to stderr.")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(LEVELS, case_sensitive=False))
@hidden_timings(heartbeat_interval=defaults.HEARTBEAT_INTERVAL,
                retry_interval=defaults.RETRY_INTERVAL,
                send_timeout=defaults.SEND_TIMEOUT)
@secret_file
def main(logfile, loglevel, **settings):
    """Run a MapReduce Worker until the Manager shuts it down."""
    configure(logfile, loglevel)
    _allow_many_open_files()
    address = (settings.pop("host"), settings.pop("port"))
    manager = (settings.pop("manager_host"), settings.pop("manager_port"))
    try:
        Worker(*address, *manager, **settings)
    except OSError as exc:
        raise click.ClickException(
            f"cannot run the Worker on {address[0]}:{address[1]}: "
            f"{exc}") from exc


if __name__ == "__main__":
    main.main()
