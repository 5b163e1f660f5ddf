"""`mapreduce-worker`: run a Worker until the Manager shuts it down."""

import resource

import click

from mapreduce.logs import LEVELS, configure
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
@click.option("--host", default="localhost", show_default=True,
              help="Address to listen on; the Manager must reach it.")
@click.option("--port", default=6001, show_default=True, type=int,
              help="TCP port to listen on.")
@click.option("--manager-host", "manager_host", default="localhost",
              show_default=True, help="The Manager's host.")
@click.option("--manager-port", "manager_port", default=6000,
              show_default=True, type=int, help="The Manager's port.")
@click.option("--logfile", type=click.Path(dir_okay=False),
              help="Write the log here instead of to stderr.")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(LEVELS, case_sensitive=False))
def main(**options):
    """Run a MapReduce Worker until the Manager shuts it down."""
    configure(options["logfile"], options["loglevel"])
    _allow_many_open_files()
    host, port = options["host"], options["port"]
    try:
        Worker(host, port, options["manager_host"], options["manager_port"])
    except OSError as exc:
        raise click.ClickException(
            f"cannot run the Worker on {host}:{port}: {exc}") from exc


if __name__ == "__main__":
    main.main()
